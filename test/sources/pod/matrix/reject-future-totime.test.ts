/** The PoD behaviour matrix (./run.ts) for the server profile `reject-future-totime`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('reject-future-totime');
