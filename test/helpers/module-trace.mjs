/**
 * `node --import tsx --import ./module-trace.mjs ...`: appends the URL of every module the process
 * loads through the ES module loader to the file named by MODULE_TRACE_FILE, one per line (what a
 * process loaded, for tests of what it must not load).
 */
import { register } from 'node:module';

if (process.env.MODULE_TRACE_FILE) {
  register('./module-trace-hooks.mjs', import.meta.url, { data: { file: process.env.MODULE_TRACE_FILE } });
}
