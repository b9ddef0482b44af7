/** The PoD behaviour matrix (./run.ts) for the server profile `archive-close-early`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('archive-close-early');
