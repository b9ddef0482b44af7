import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, contentKey } from '../../../plugin/sources/tap/identity.ts';

const message = {
  GUID: 'N9Q2II2Isp8zHx_j7_qzDLKf80Thg2eM',
  id: '8e1c5a3e-0000-4000-a000-000000000001',
  messageTime: '2026-11-23T10:00:00.000Z',
  recipient: ['a@example.com', 'b@example.com'],
  fromAddress: ['x@example.com'],
  completelyRewritten: true,
  messageParts: [
    { md5: 'aa', filename: 'text.html', sandboxStatus: null, disposition: 'inline' },
    { md5: 'bb', filename: 'x.pdf', sandboxStatus: 'CLEAN', disposition: 'attached' },
  ],
  threatsInfoMap: [
    { threatID: 't1', threatStatus: 'active', classification: 'MALWARE', campaignID: null, threatType: 'url' },
    { threatID: 't2', threatStatus: 'active', classification: 'phish', campaignID: null, threatType: 'attachment' },
  ],
  modulesRun: ['av', 'spam'],
  subject: null,
};

const variant = (patch: (m: any) => void) => {
  const m = structuredClone(message) as any;
  patch(m);
  return m;
};

test('the same event written differently has one key', () => {
  const same: Array<[string, unknown]> = [
    ['keys in another order', Object.fromEntries(Object.entries(message).reverse())],
    ['messageParts reordered', variant((m) => m.messageParts.reverse())],
    ['threatsInfoMap reordered', variant((m) => m.threatsInfoMap.reverse())],
    ['recipients reordered', variant((m) => m.recipient.reverse())],
    ['nested keys reordered', variant((m) => (m.threatsInfoMap[0] = Object.fromEntries(Object.entries(m.threatsInfoMap[0]).reverse())))],
    ['completelyRewritten as a string', variant((m) => (m.completelyRewritten = 'true'))],
    ['enum case', variant((m) => (m.threatsInfoMap[0].classification = 'malware'))],
    ['sandboxStatus case', variant((m) => (m.messageParts[1].sandboxStatus = 'clean'))],
    ['fromAddress as a string', variant((m) => (m.fromAddress = 'x@example.com'))],
  ];
  for (const [name, ev] of same) assert.equal(contentKey(ev), contentKey(message), name);
});

test('a real change is a new key', () => {
  const changed: Array<[string, unknown]> = [
    ['threat status changed', variant((m) => (m.threatsInfoMap[0].threatStatus = 'cleared'))],
    ['another recipient, same GUID and no id', variant((m) => ((m.recipient = ['c@example.com']), delete m.id))],
    ['one recipient less', variant((m) => m.recipient.pop())],
    ['campaign linked later', variant((m) => (m.threatsInfoMap[1].campaignID = 'c-1'))],
    ['a null filled in', variant((m) => (m.subject = 'hello'))],
    ['completelyRewritten "na"', variant((m) => (m.completelyRewritten = 'na'))],
    ['another id', variant((m) => (m.id = 'other'))],
  ];
  const keys = new Set([contentKey(message)]);
  for (const [name, ev] of changed) {
    const k = contentKey(ev);
    assert.ok(!keys.has(k), name);
    keys.add(k);
  }
});

test('clicks sharing a GUID have their own keys', () => {
  const click = { GUID: 'g', id: 'c1', clickTime: '2026-11-23T10:00:00.000Z', recipient: 'r@example.com', threatStatus: 'active' };
  assert.notEqual(contentKey(click), contentKey({ ...click, id: 'c2' }));
  assert.equal(contentKey(click), contentKey({ ...click, recipient: ['r@example.com'] }), 'recipient string or array');
});

test('canonical JSON sorts keys and leaves ordered arrays alone', () => {
  assert.equal(canonicalJson({ b: 1, a: [3, 1, 2], c: null }), '{"a":[3,1,2],"b":1,"c":null}');
  assert.equal(canonicalJson({ recipient: ['b', 'a'] }), '{"recipient":["a","b"]}');
  assert.equal(canonicalJson({ recipient: 'a' }), '{"recipient":["a"]}');
});
