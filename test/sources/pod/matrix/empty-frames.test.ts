/** The PoD behaviour matrix (./run.ts) for the server profile `empty-frames`: steady, output stall, SIGKILL. */
import { matrixTests } from './run.ts';

matrixTests('empty-frames');
