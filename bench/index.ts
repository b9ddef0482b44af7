/**
 * `npm run bench`: every benchmark, one after the other, each printing its own figures. Not part
 * of `npm test`: speed and memory are measured here, never asserted in tests.
 *
 *   npm run bench                 all of them
 *   npm run bench -- forward pod  some of them
 */
const BENCHES: Record<string, () => Promise<unknown>> = {
  forward: async () => (await import('./forward.ts')).runForwardBench(),
  tap: async () => (await import('./tap.ts')).runTapBench(),
  pod: async () => (await import('./pod.ts')).runPodBench(),
  coordination: async () => (await import('./coordination.ts')).runCoordinationBench(),
  standby: async () => (await import('./standby.ts')).runStandbyBench(),
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length ? wanted : Object.keys(BENCHES);
for (const name of names) {
  const run = BENCHES[name];
  if (!run) {
    process.stderr.write(`unknown benchmark "${name}"; choose from ${Object.keys(BENCHES).join(', ')}\n`);
    process.exit(2);
  }
  process.stdout.write(`\n=== ${name} ===\n`);
  await run();
}
