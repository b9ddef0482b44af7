/** The PoD behaviour matrix (./run.ts) for the server profile `archive-never-close`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('archive-never-close');
