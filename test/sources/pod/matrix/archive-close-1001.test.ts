/** The PoD behaviour matrix (./run.ts) for the server profile `archive-close-1001`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('archive-close-1001');
