/** The PoD behaviour matrix (./run.ts) for the server profile `archive-drop`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('archive-drop');
