/** `check --online`: lands with the operator-experience work (issue 5). */
import type { Config } from '../config/schema.ts';

export async function checkOnline(_config: Config, out: NodeJS.WritableStream): Promise<boolean> {
  out.write('check --online is not available yet: only the offline validation ran.\n');
  return false;
}
