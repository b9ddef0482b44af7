/**
 * Every file under fluent-bit/ parses (classic files with test/helpers/fluent-bit-conf.ts, YAML
 * with the `yaml` package), each classic file and its YAML twin say the same thing, and the facts
 * the pipeline depends on hold: the Devo output (RFC 3164 over TLS with a client certificate,
 * devo_tag as the syslog TAG, a hostname, no silent truncation of any record the sidecar can
 * send, unlimited retries, a bounded backlog) and the forward input (filesystem buffering, a
 * buffer limit above the sidecar's frame limit). With FLUENT_BIT_BIN set, each file also passes
 * `fluent-bit --dry-run`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLUENT_BIT_BUFFER_MAX_SIZE, forwardOutputSchema } from '../../plugin/config/schema.ts';
import { TAP_DEFAULT_TAGS } from '../../plugin/sources/tap/config.ts';
import { POD_DEFAULT_TAGS } from '../../plugin/sources/pod/config.ts';
import {
  comparable,
  loadModel,
  modelVariables,
  parseClassic,
  parseYamlConf,
  tagMatches,
  variablesIn,
  type FluentBitModel,
  type Props,
} from '../helpers/fluent-bit-conf.ts';

const DIR = fileURLToPath(new URL('../../fluent-bit/', import.meta.url));
const TLS_DIR = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
const DEPLOYMENT_DOC = fileURLToPath(new URL('../../docs/deployment.md', import.meta.url));
const FILES = readdirSync(DIR).filter((f) => /\.(conf|ya?ml)$/.test(f)).sort();
const TWINS = FILES.filter((f) => f.endsWith('.conf') && FILES.includes(f.replace(/\.conf$/, '.yaml'))).map((f) => f.replace(/\.conf$/, ''));
/** Files that are a whole configuration (a service section), not a block to include. */
const MAIN = FILES.filter((f) => f !== 'parsers.conf' && Object.keys(loadModel(path.join(DIR, f)).service).length > 0);
const ALL_TAGS = [...Object.values(TAP_DEFAULT_TAGS), ...Object.values(POD_DEFAULT_TAGS)];

const model = (f: string): FluentBitModel => loadModel(path.join(DIR, f));
const one = (list: Props[], name: string, where: string): Props => {
  const found = list.filter((p) => p.name === name);
  assert.equal(found.length, 1, `${where}: exactly one "${name}" (found ${found.length})`);
  return found[0]!;
};
/** A value that is exactly one `${VAR}`: it differs per site. */
const fromEnv = (v: string | undefined): boolean => v !== undefined && /^\$\{[A-Z][A-Z0-9_]*\}$/.test(v);

test('fluent-bit/ holds the input, the Devo output, complete configs and examples in both formats', () => {
  for (const f of ['forward-input', 'devo-output', 'fluent-bit', 'stdout.example', 'splunk-hec.example', 'http.example', 'elasticsearch.example']) {
    assert.ok(TWINS.includes(f), `${f}.conf and ${f}.yaml`);
  }
  assert.ok(FILES.includes('parsers.conf'));
  const loners = FILES.filter((f) => f !== 'parsers.conf' && !TWINS.includes(f.replace(/\.(conf|ya?ml)$/, '')));
  assert.deepEqual(loners, [], 'every configuration has a classic and a YAML variant');
});

for (const f of FILES) {
  test(`${f} parses`, () => {
    const text = readFileSync(path.join(DIR, f), 'utf8');
    if (f.endsWith('.conf')) parseClassic(text, f);
    else parseYamlConf(text, f);
    const m = model(f);
    for (const p of [...m.inputs, ...m.filters, ...m.outputs, ...m.parsers]) assert.ok(p.name, `${f}: every plugin and parser has a name`);
    for (const p of [...m.filters, ...m.outputs]) assert.ok(p.match ?? p.match_regex, `${f}: ${p.name} has a Match`);
  });
}

for (const base of TWINS) {
  test(`${base}.conf and ${base}.yaml say the same thing`, () => {
    assert.deepEqual(comparable(model(`${base}.yaml`)), comparable(model(`${base}.conf`)));
  });
}

for (const f of ['devo-output.conf', 'devo-output.yaml', 'fluent-bit.conf', 'fluent-bit.yaml']) {
  test(`${f}: the Devo output is syslog RFC 3164 over TLS with devo_tag as TAG, no truncation, no retry limit`, () => {
    const m = model(f);
    const input = one(model(f.replace('devo-output', 'forward-input').replace('fluent-bit.', 'forward-input.')).inputs, 'forward', f);
    const out = one(m.outputs, 'syslog', f);
    assert.equal(out.mode, 'tls');
    assert.equal(out.tls, 'on');
    assert.equal(out['tls.verify'], 'on', 'the relay certificate is verified');
    for (const k of ['tls.ca_file', 'tls.crt_file', 'tls.key_file']) assert.ok(fromEnv(out[k]), `${k} from the environment: ${out[k]}`);
    assert.ok(fromEnv(out.host), 'host from the environment');
    assert.ok(fromEnv(out.port), 'port from the environment (443 for Devo, another in tests)');
    assert.equal(out.syslog_format, 'rfc3164', 'Devo parses BSD syslog; rfc5424 adds a BOM');
    assert.equal(out.syslog_appname_key, 'devo_tag', 'the TAG is the record field the sidecar fills with the Devo table');
    assert.equal(out.syslog_message_key, 'message');
    assert.ok(fromEnv(out.syslog_hostname_preset), 'a hostname preset, or Devo reads the tag as the hostname');
    // The largest record that can reach this output is bounded by the forward input's
    // buffer_max_size (a larger frame is refused) and, on the sidecar's side, by max_frame_bytes.
    const maxsize = Number(out.syslog_maxsize);
    const bufferMax = Number(input.buffer_max_size);
    const frameLimit = forwardOutputSchema.shape.max_frame_bytes.unwrap().maxValue ?? FLUENT_BIT_BUFFER_MAX_SIZE;
    assert.ok(Number.isInteger(maxsize), `syslog_maxsize is a byte count: ${out.syslog_maxsize}`);
    assert.ok(maxsize >= 1024 * 1024, 'at least 1 MiB');
    assert.ok(maxsize >= frameLimit + 1024, `above the largest frame the sidecar may send (${frameLimit}) plus a syslog header`);
    assert.ok(maxsize >= bufferMax + 1024, `above the forward input's buffer_max_size (${bufferMax}) plus a syslog header`);
    assert.ok(['no_limits', 'off'].includes(out.retry_limit ?? ''), `retries without limit: ${out.retry_limit}`);
    assert.ok(out['storage.total_limit_size'], 'a bounded filesystem backlog');
    for (const tag of ALL_TAGS) assert.ok(tagMatches(out.match!, tag), `Match ${out.match} takes ${tag}`);
  });
}

for (const f of ['forward-input.conf', 'forward-input.yaml']) {
  test(`${f}: filesystem buffering and a buffer above the sidecar's frame limit`, () => {
    const input = one(model(f).inputs, 'forward', f);
    assert.equal(input['storage.type'], 'filesystem', "Fluent Bit's ack means 'in my buffer': keep that buffer on disk");
    assert.ok(fromEnv(input.listen) && fromEnv(input.port), 'listen address and port from the environment');
    const bufferMax = Number(input.buffer_max_size);
    assert.equal(bufferMax, FLUENT_BIT_BUFFER_MAX_SIZE, 'the limit the sidecar schema assumes');
    const defaults = forwardOutputSchema.parse({ type: 'forward' });
    assert.ok(defaults.max_frame_bytes < bufferMax, 'the sidecar default frame limit fits');
  });
}

for (const f of MAIN) {
  test(`${f}: a complete configuration with the forward input on filesystem storage`, () => {
    const m = model(f);
    const input = one(m.inputs, 'forward', f);
    assert.equal(input['storage.type'], 'filesystem');
    assert.ok(fromEnv(m.service['storage.path']), 'storage.path (needed by filesystem storage) from the environment');
    assert.equal(m.service['storage.sync'], 'normal');
    for (const out of m.outputs) {
      for (const tag of ALL_TAGS) assert.ok(tagMatches(out.match!, tag), `${out.name}: Match ${out.match} takes ${tag}`);
      if (out.name === 'stdout') continue;
      assert.ok(['no_limits', 'off'].includes(out.retry_limit ?? ''), `${out.name}: retries without limit`);
      assert.ok(out['storage.total_limit_size'], `${out.name}: a bounded backlog`);
      if (out.tls === 'on') assert.equal(out['tls.verify'], 'on', `${out.name}: TLS verifies the server`);
    }
    if (m.outputs.some((o) => o.name === 'syslog')) {
      assert.ok(m.service['storage.backlog.mem_limit'], 'backlog memory stated');
    }
  });
}

for (const f of FILES.filter((f) => /^(splunk-hec|http|elasticsearch)\.example\./.test(f))) {
  test(`${f}: the parser filter turns message into fields and keeps the sidecar's fields`, () => {
    const m = model(f);
    const filter = one(m.filters, 'parser', f);
    assert.equal(filter.key_name, 'message');
    assert.equal(filter.reserve_data, 'on', 'devo_tag, source, service, input_id and pulling_id stay');
    assert.notEqual(filter.preserve_key, 'on', 'the JSON text is replaced by its fields');
    for (const tag of ALL_TAGS) assert.ok(tagMatches(filter.match!, tag));
    const parser = one(m.parsers, filter.parser!, f);
    assert.equal(parser.format, 'json');
    assert.equal(parser.time_key, undefined, "the record keeps the sidecar's event time");
  });
}

test('every variable the configurations use is documented in docs/deployment.md', () => {
  const doc = readFileSync(DEPLOYMENT_DOC, 'utf8');
  const used = new Set(FILES.flatMap((f) => modelVariables(model(f))));
  assert.ok(used.size > 5);
  for (const v of used) assert.ok(doc.includes(v), `${v} is explained in docs/deployment.md`);
  // ... and in the header comment of each file that uses it directly or through an include.
  for (const f of FILES) {
    const own = variablesIn(readFileSync(path.join(DIR, f), 'utf8').split('\n').filter((l) => !l.trim().startsWith('#')).join('\n'));
    const header = readFileSync(path.join(DIR, f), 'utf8').split('\n').filter((l) => l.trim().startsWith('#')).join('\n');
    for (const v of own) assert.ok(header.includes(v), `${f} names ${v} in its header`);
  }
});

// --- fluent-bit --dry-run -------------------------------------------------------------------

const BIN = process.env.FLUENT_BIT_BIN;

/** Placeholder values for every variable, with real certificate files so TLS setup succeeds. */
function dryRunEnv(storage: string): Record<string, string> {
  return {
    FORWARD_LISTEN: '127.0.0.1',
    FORWARD_PORT: '24299',
    FLUENT_BIT_STORAGE_PATH: storage,
    FLUENT_BIT_HTTP_LISTEN: '127.0.0.1',
    FLUENT_BIT_BACKLOG_LIMIT: '1G',
    DEVO_HOST: '127.0.0.1',
    DEVO_PORT: '443',
    DEVO_HOSTNAME: 'proofpoint-sidecar-test',
    DEVO_TLS_CA_FILE: path.join(TLS_DIR, 'ca.crt'),
    DEVO_TLS_CRT_FILE: path.join(TLS_DIR, 'client.crt'),
    DEVO_TLS_KEY_FILE: path.join(TLS_DIR, 'client.key'),
    SPLUNK_HEC_HOST: '127.0.0.1',
    SPLUNK_HEC_PORT: '8088',
    SPLUNK_HEC_TOKEN: '00000000-0000-0000-0000-000000000000',
    SPLUNK_INDEX: 'proofpoint',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '8080',
    HTTP_URI: '/ingest',
    HTTP_TOKEN: 'placeholder',
    ES_HOST: '127.0.0.1',
    ES_PORT: '9200',
    ES_USER: 'elastic',
    ES_PASSWORD: 'placeholder',
  };
}

/** A block to include gets a minimal main file around it (storage, a dummy input, a null output). */
function wrapper(dir: string, f: string, storage: string): string {
  const abs = path.join(DIR, f);
  const m = model(f);
  if (f.endsWith('.yaml')) {
    const main = path.join(dir, `wrap-${f}`);
    const lines = ['service:', `  storage.path: ${JSON.stringify(storage)}`, 'includes:', `  - ${JSON.stringify(abs)}`, 'pipeline:'];
    if (m.inputs.length === 0) lines.push('  inputs:', '    - name: dummy', '      tag: mail.proofpoint.test');
    if (m.outputs.length === 0) lines.push('  outputs:', '    - name: null', "      match: '*'");
    writeFileSync(main, lines.join('\n') + '\n');
    return main;
  }
  const main = path.join(dir, `wrap-${f}`);
  const lines = ['[SERVICE]', `    storage.path ${storage}`];
  if (f === 'parsers.conf') lines.push(`    Parsers_File ${abs}`);
  if (m.inputs.length === 0) lines.push('[INPUT]', '    Name dummy', '    Tag  mail.proofpoint.test');
  if (m.outputs.length === 0) lines.push('[OUTPUT]', '    Name  null', '    Match *');
  if (f !== 'parsers.conf') lines.push(`@INCLUDE ${abs}`);
  writeFileSync(main, lines.join('\n') + '\n');
  return main;
}

for (const f of FILES) {
  if (!BIN) {
    test(`${f}: fluent-bit --dry-run`, { skip: 'FLUENT_BIT_BIN not set: no Fluent Bit binary to dry-run this configuration with' }, () => {});
    continue;
  }
  test(`${f}: fluent-bit --dry-run accepts it`, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fluent-bit-dry-'));
    try {
      const storage = path.join(dir, 'storage');
      const main = MAIN.includes(f) ? path.join(DIR, f) : wrapper(dir, f, storage);
      const r = spawnSync(BIN, ['--dry-run', '-c', main], {
        env: { ...process.env, ...dryRunEnv(storage) },
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(r.status, 0, `fluent-bit --dry-run -c ${main} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
