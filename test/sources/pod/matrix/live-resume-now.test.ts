/** The PoD behaviour matrix (./run.ts) for the server profile `live-resume-now`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('live-resume-now');
