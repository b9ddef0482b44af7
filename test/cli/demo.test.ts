import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCliAsync } from '../helpers/cli.ts';

test('demo shows TAP and POD records within seconds and stops cleanly after --duration', async () => {
  const r = await runCliAsync(['demo', '--duration', '8']);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const records = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { tag: string; time: string; record: Record<string, unknown> });
  const tags = new Set(records.map((x) => x.tag));
  for (const t of ['mail.proofpoint.tapsiem_v2.messagesdelivered', 'mail.proofpoint.pod.maillog', 'mail.proofpoint.pod.message']) {
    assert.ok(tags.has(t), `no ${t} record in ${records.length} records (tags: ${[...tags].join(', ')})`);
  }
  for (const x of records.slice(0, 50)) {
    assert.equal(x.record.devo_tag, x.tag);
    assert.doesNotThrow(() => JSON.parse(x.record.message as string), 'message is the vendor JSON');
  }
  assert.match(r.stderr, /TAP pull \d+/, 'per-cycle statistics are printed');
  assert.match(r.stderr, /Sidecar stopped; every acknowledged batch is committed/);
});
