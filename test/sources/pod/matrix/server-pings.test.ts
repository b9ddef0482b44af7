/** The PoD behaviour matrix (./run.ts) for the server profile `server-pings`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('server-pings');
