/**
 * Credentials never reach a log line or an error, in any form: registered values as they are and
 * encoded, the Basic base64 of principal:secret, header values echoed by a server or a proxy, on
 * the log line as finally written (JSON-escaped, pretty-printed). Vendor text is cut short.
 */
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { clearSecrets, registerCredentialPair, registerSecret, scrub, scrubLogLine, vendorText } from '../../plugin/telemetry/secrets.ts';
import { createLogger } from '../../plugin/telemetry/logger.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';
import { until } from '../helpers/wait.ts';

const { tapPrincipal, tapSecret, tapQuotedSecret, podApiKey } = TEST_SECRETS;
const basic = (user: string, pass: string) => Buffer.from(`${user}:${pass}`, 'utf8').toString('base64');
const once = (s: string) => JSON.stringify(s).slice(1, -1);

/** Every form of `secret` a leak could take; none may survive a scrub. */
function leakedForms(secret: string): string[] {
  return [secret, once(secret), once(once(secret)), encodeURIComponent(secret), Buffer.from(secret).toString('base64')];
}

function assertNoLeak(text: string, secrets: string[], what: string): void {
  for (const s of secrets) for (const f of leakedForms(s)) assert.ok(!text.includes(f), `${what}: leaks ${JSON.stringify(f.slice(0, 6))}…: ${text}`);
}

function captureLogger(pretty = false) {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger({ pretty, level: 'debug', destination });
  return { logger, lines };
}

beforeEach(() => clearSecrets());

test('a registered credential is masked as is, URL-encoded, form-encoded, JSON-escaped once and twice, HTML-escaped and base64-encoded', () => {
  registerSecret(tapQuotedSecret);
  const texts = [
    `raw ${tapQuotedSecret} end`,
    `url ${encodeURIComponent(tapQuotedSecret)}`,
    `form ${new URLSearchParams({ p: tapQuotedSecret }).toString()}`,
    `json ${JSON.stringify({ p: tapQuotedSecret })}`,
    `json in json ${JSON.stringify({ body: JSON.stringify({ p: tapQuotedSecret }) })}`,
    `html <b>${tapQuotedSecret.replace('"', '&quot;')}</b>`,
    `base64 ${Buffer.from(tapQuotedSecret).toString('base64')}`,
  ];
  for (const t of texts) {
    const out = scrub(t);
    assert.match(out, /\*\*\*/, t);
    assertNoLeak(out, [tapQuotedSecret], t);
    assert.ok(!out.includes('Qu0te'), `${t} -> ${out}`);
  }
});

test('the HTTP Basic base64 of a registered principal:secret pair is masked', () => {
  registerCredentialPair(tapPrincipal, tapSecret);
  const b64 = basic(tapPrincipal, tapSecret);
  assert.equal(scrub(`you sent ${b64}.`), 'you sent ***.');
  assert.equal(scrub(`json {"sent":"${b64.replaceAll('/', '\\/')}"}`), 'json {"sent":"***"}');
  assert.equal(scrub(`url ${encodeURIComponent(b64)}`), 'url ***');
  assert.equal(scrub(`secret alone ${tapSecret}`), 'secret alone ***');
});

test('Authorization, Proxy-Authorization, Cookie and Set-Cookie values are masked in text even when never registered', () => {
  const token = basic('someone', 'never-registered-9');
  const cases: Array<[string, string]> = [
    [`HTTP/1.1 401\r\nAuthorization: Basic ${token}\r\nHost: tap`, 'HTTP/1.1 401\r\nAuthorization: Basic ***\r\nHost: tap'],
    [`{"headers":{"authorization":"Bearer abc.def-123","host":"x"}}`, '{"headers":{"authorization":"Bearer ***","host":"x"}}'],
    [JSON.stringify({ msg: JSON.stringify({ authorization: 'Token q"x\\y', keep: 1 }) }), JSON.stringify({ msg: JSON.stringify({ authorization: 'Token ***', keep: 1 }) })],
    [`{ 'proxy-authorization': 'Basic ${token}', via: 'squid' }`, `{ 'proxy-authorization': 'Basic ***', via: 'squid' }`],
    [`proxy-authorization=Basic ${token}&next=1`, 'proxy-authorization=Basic ***&next=1'],
    ['Cookie: session=abc123; csrf=zz\nSet-Cookie: sid=s3cr3t; Path=/; HttpOnly\nX: y', 'Cookie: ***\nSet-Cookie: ***\nX: y'],
    ['X-Authorization: opaque-value-77', 'X-Authorization: ***'],
  ];
  for (const [text, masked] of cases) assert.equal(scrub(text), masked, text);
  for (const prose of ['not authorized: check the principal', 'authorization failed', 'cookies are not used', 'Authorization:  ']) {
    assert.equal(scrub(prose), prose);
  }
});

test('a Basic or Bearer credential is masked anywhere in text; prose about them is not', () => {
  assert.equal(scrub(`proxy said: Basic ${basic('u', 'p-1')} is wrong`), 'proxy said: Basic *** is wrong');
  assert.equal(scrub('token Bearer eyJhbGciOiJIUzI1NiJ9.e30.x is expired'), 'token Bearer *** is expired');
  for (const prose of ['HTTP Basic authentication with the service principal', 'bearer tokens expire']) assert.equal(scrub(prose), prose);
});

test('a credential with " and \\ is masked in the JSON log line as written, and the line stays valid JSON', () => {
  registerCredentialPair(tapPrincipal, tapQuotedSecret);
  const { logger, lines } = captureLogger();
  const body = JSON.stringify({ error: 'unauthorized', you_sent: { password: tapQuotedSecret } });
  logger.warn({ server_text: body, password: tapQuotedSecret }, `refused: ${JSON.stringify(body)} for ${tapQuotedSecret}`);
  logger.error({ err: new Error(`echo ${tapQuotedSecret}`) }, 'failed');
  assert.equal(lines.length, 2);
  for (const line of lines) {
    assertNoLeak(line, [tapQuotedSecret], 'log line');
    assert.ok(!line.includes('Qu0te'), line);
    JSON.parse(line);
  }
  const first = JSON.parse(lines[0]!) as Record<string, string>;
  assert.equal(first.password, '***');
  assert.equal(first.msg, `refused: ${JSON.stringify(JSON.stringify({ error: 'unauthorized', you_sent: { password: '***' } }))} for ***`);
});

test('masking never leaves a log line that is not JSON, even when a secret ends inside an escape sequence', () => {
  registerSecret('ends-with\\');
  const line = JSON.stringify({ msg: 'ends-with"quote, and ends-with\\ here' }) + '\n';
  const out = scrubLogLine(line);
  assert.ok(out.endsWith('\n'));
  assert.deepEqual(JSON.parse(out), { msg: 'ends-with"quote, and *** here' });
});

test('pretty log output masks a credential with " and \\', async () => {
  registerSecret(tapQuotedSecret);
  const { logger, lines } = captureLogger(true);
  logger.warn({ body: `{"k":"${tapQuotedSecret}"}` }, `echo ${tapQuotedSecret} and Authorization: Basic ${basic('x', 'not-registered-1')}`);
  await until(() => lines.join('').includes('echo'), 'the pretty line');
  const text = lines.join('');
  assert.match(text, /echo \*\*\* and Authorization: Basic \*\*\*/);
  assertNoLeak(text, [tapQuotedSecret], 'pretty output');
  assert.ok(!text.includes('Qu0te'), text);
});

test('vendor text is scrubbed, then cut to 512 characters with "… (N more characters)"; a secret across the cut leaves no part behind', () => {
  registerSecret(podApiKey);
  const long = `${'a'.repeat(505)}${podApiKey}${'b'.repeat(1000)}`;
  const out = vendorText(long);
  assert.ok(!out.includes(podApiKey.slice(0, 6)), out.slice(500));
  assert.equal(out, `${'a'.repeat(505)}***${'b'.repeat(4)}… (${3 + 1000 + 505 - 512} more characters)`);
  assert.equal(vendorText(out), out, 'applying it twice changes nothing');
  assert.equal(vendorText('  two\r\n lines \t'), 'two lines');
  const page = `<html>${'p'.repeat(3_000_000)}</html>`;
  assert.equal(vendorText(page), `<html>${'p'.repeat(506)}… (${page.length - 512} more characters)`);
});

/** A server (or a proxy in front of it) that answers every request with its Authorization header. */
async function echoServer(answer: (req: IncomingMessage) => { status: number; body: string }): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const { status, body } = answer(req);
    res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('a TAP server echoing the Authorization header in 401 and 400 bodies: neither the base64 nor the secret reaches the log line or the error', async () => {
  const { loadConfigObject } = await import('../../plugin/config/load.ts');
  const { createTapSource } = await import('../../plugin/sources/tap/create.ts');
  const { TapClient, TAP_PATHS } = await import('../../plugin/sources/tap/client.ts');
  const { Pipeline } = await import('../../plugin/pipeline/pipeline.ts');
  const { StateStore } = await import('../../plugin/state/store.ts');
  const { MemorySink } = await import('../helpers/memory-sink.ts');
  const { tmpDir } = await import('../helpers/tmp.ts');
  const { FakeClock } = await import('../helpers/fake-clock.ts');

  const decoded = (req: IncomingMessage) => Buffer.from(String(req.headers.authorization).replace(/^Basic /, ''), 'base64').toString('utf8');
  const { server, url } = await echoServer((req) =>
    decoded(req).endsWith(tapSecret)
      ? { status: 401, body: `Unauthorized.\nAuthorization: ${req.headers.authorization}\nYou sent ${decoded(req)}` }
      : {
          status: 400,
          body: JSON.stringify({ error: 'bad request', request: { headers: req.headers }, principal_secret: decoded(req), pad: 'x'.repeat(2000) }),
        },
  );
  const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
  const clock = new FakeClock(T0);
  const start = new Date(T0 - 3 * 3600_000).toISOString();
  const input = (id: string, password: string) => ({
    enabled: true,
    id,
    credentials: { username: tapPrincipal, password },
    override_url_base: url,
    services: { clicksBlocked: { start_time_in_utc: start } },
  });
  const { config } = loadConfigObject({
    output: { type: 'stdout' },
    inputs: { proofpoint_tap: input('tap-401', tapSecret) },
  });
  const quoted = loadConfigObject({ output: { type: 'stdout' }, inputs: { proofpoint_tap: input('tap-400', tapQuotedSecret) } }).config;
  const secrets = [tapSecret, tapQuotedSecret, basic(tapPrincipal, tapSecret), basic(tapPrincipal, tapQuotedSecret)];

  const { logger, lines } = captureLogger();
  const store = await StateStore.open(tmpDir(), { clock, logger });
  const sources = [createTapSource(config.inputs.proofpoint_tap!, { clock }), createTapSource(quoted.inputs.proofpoint_tap!, { clock })];
  const p = new Pipeline({ store, sink: new MemorySink(), sources, clock, logger });
  try {
    await p.start();
    await until(() => p.health.get('tap-401', 'clicksBlocked')?.status === 'failed', 'the 401 input to stop');
    await until(() => lines.some((l) => l.includes('HTTP 400')), 'the 400 to be logged');
    const refused = lines.find((l) => l.includes('refused the credentials'));
    assert.ok(refused, 'the 401 is logged');
    assert.match(refused, /Authorization: Basic \*\*\*/);
    const bad = lines.find((l) => l.includes('HTTP 400'))!;
    assert.match(bad, /more characters\)/, 'a long body is cut');
    assert.ok(JSON.parse(bad).msg.length < 1200, 'the quoted body is bounded');
    for (const l of lines) assertNoLeak(l, secrets, 'log line');
    assertNoLeak(p.health.get('tap-401', 'clicksBlocked')!.reason!, secrets, 'health reason');
  } finally {
    await p.stop(5000);
    await store.close();
  }

  for (const password of [tapSecret, tapQuotedSecret]) {
    const client = new TapClient({ baseUrl: url, username: tapPrincipal, password, threatStatus: [], threatType: [], timeoutMs: 5000, input: 'direct' });
    const err = (await client.fetchWindow(TAP_PATHS.all, { start: T0 - 2 * 3600_000, end: T0 - 3600_000 }, new AbortController().signal).catch((e: unknown) => e)) as Error & { body?: string };
    await client.close();
    assert.match(err.message, /HTTP 40[01]/);
    assertNoLeak(err.message, secrets, 'error message');
    if (err.body !== undefined) assertNoLeak(err.body, secrets, 'error body');
  }
  await new Promise((r) => server.close(r));
});

test('a PoD refusal echoing the Bearer api_key is masked in the error', async () => {
  const { handshakeError } = await import('../../plugin/sources/pod/errors.ts');
  registerSecret(podApiKey);
  for (const status of [401, 409, 400]) {
    const err = handshakeError('maillog', status, `refused, you sent Authorization: Bearer ${podApiKey}; ${'z'.repeat(900)}`) as unknown as Error & { body: string };
    assert.match(err.message, /Authorization: Bearer \*\*\*/);
    assert.match(err.message, /… \(\d+ more characters\)/);
    assertNoLeak(err.message + err.body, [podApiKey], `HTTP ${status}`);
  }
});
