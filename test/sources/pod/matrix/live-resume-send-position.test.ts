/** The PoD behaviour matrix (./run.ts) for the server profile `live-resume-send-position`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('live-resume-send-position');
