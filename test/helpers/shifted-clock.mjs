/**
 * Preloaded (`node --import`) into a sidecar child process a test runs: Date.now() runs ahead of
 * the system clock by the milliseconds written in the file named by SIDECAR_TEST_CLOCK_FILE,
 * re-read every 20 ms. A test moves a real process's clock the way OffsetClock
 * (test/sources/pod/harness.ts) moves its own: hours pass at once, timers stay real. The product
 * reads time only through plugin/util/clock.ts, which asks Date.now().
 */
import { readFileSync } from 'node:fs';

const file = process.env.SIDECAR_TEST_CLOCK_FILE;
if (file) {
  const realNow = Date.now;
  let offset = 0;
  const read = () => {
    try {
      offset = Number(readFileSync(file, 'utf8')) || 0;
    } catch {
      // Not written yet: no offset.
    }
  };
  read();
  setInterval(read, 20).unref();
  Date.now = () => realNow() + offset;
}
