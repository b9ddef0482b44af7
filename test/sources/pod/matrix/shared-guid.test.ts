/** The PoD behaviour matrix (./run.ts) for the server profile `shared-guid`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('shared-guid');
