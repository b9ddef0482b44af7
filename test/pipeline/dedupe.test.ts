import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fingerprint, FINGERPRINT_CHARS, SourceDedupe, WindowSweeper, type CommittedKeys } from '../../plugin/pipeline/dedupe.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { silentLogger } from '../../plugin/telemetry/logger.ts';

/** A committed window in memory that records what it was asked. */
class Window implements CommittedKeys {
  readonly committed = new Set<string>();
  readonly asked: string[][] = [];
  async has(scope: string, keys: readonly string[]): Promise<boolean[]> {
    this.asked.push([...keys]);
    return keys.map((k) => this.committed.has(`${scope}::${k}`));
  }
}

test('committed, inherited (by fingerprint) and in-batch repeated keys are duplicates; an event without a key never is', async () => {
  const w = new Window();
  w.committed.add('i::s::c1');
  const d = new SourceDedupe(w, new Map([['s', new Set([fingerprint('h1')])]]));
  const b = await d.decide('i::s', 's', ['c1', 'h1', 'n1', 'n1', undefined, undefined]);
  assert.deepEqual(['c1', 'h1', 'n1', 'n1', undefined, undefined].map((k) => b.admit(k)), [false, false, true, false, true, true]);
  assert.deepEqual(b.keys, ['n1']);
  // Inherited keys hold for their service only.
  const other = await d.decide('i::t', 't', ['h1']);
  assert.equal(other.admit('h1'), true);
});

test('a key in flight is a duplicate without asking the committed window; once released, the window decides again', async () => {
  const w = new Window();
  const d = new SourceDedupe(w);
  d.hold('s', ['a']);
  const b = await d.decide('i::s', 's', ['a', 'b']);
  assert.deepEqual(w.asked, [['b']], 'in-flight keys are decided before the look-up');
  assert.equal(b.admit('a'), false);
  assert.equal(b.admit('b'), true);
  // The batch commits: its keys move to the window.
  w.committed.add('i::s::a');
  d.release('s', ['a']);
  assert.equal((await d.decide('i::s', 's', ['a'])).admit('a'), false);
  // Forgotten by the window (expired), a released key goes through.
  w.committed.clear();
  assert.equal((await d.decide('i::s', 's', ['a'])).admit('a'), true);
});

test('in-flight keys are per service', async () => {
  const d = new SourceDedupe(new Window());
  d.hold('s', ['a']);
  assert.equal((await d.decide('i::t', 't', ['a'])).admit('a'), true);
});

test('a fingerprint is the first 66 bits of the key\'s sha256, base64url (what replicas carry)', () => {
  const expect = createHash('sha256').update('tap::msg-1').digest('base64url').slice(0, 11);
  assert.equal(FINGERPRINT_CHARS, 11);
  assert.equal(fingerprint('tap::msg-1'), expect);
  assert.match(fingerprint('x'), /^[A-Za-z0-9_-]{11}$/);
});

test('the sweeper sweeps every registered scope on the injected clock, one interval after the last, and not after stop', async () => {
  const clock = new FakeClock();
  const swept: string[] = [];
  const sweeper = new WindowSweeper({
    window: {
      async sweep(scope, maxKeys) {
        swept.push(`${scope}/${maxKeys}`);
        return { expired: 0, evicted: 0 };
      },
    },
    clock,
    logger: silentLogger(),
    intervalMs: 60_000,
    maxKeys: 5,
    closed: () => false,
  });
  sweeper.add('a::s', 'a', 's');
  sweeper.add('b::s', 'b', 's');
  sweeper.start();
  await clock.advance(59_999);
  assert.deepEqual(swept, []);
  await clock.advance(1);
  await sweeper.running;
  assert.deepEqual(swept, ['a::s/5', 'b::s/5']);
  await clock.advance(60_000);
  await sweeper.running;
  assert.equal(swept.length, 4);
  sweeper.stop();
  await clock.advance(600_000);
  assert.equal(swept.length, 4);
  assert.equal(clock.pending, 0, 'no sweep timer is left');
});
