// BLIP gradient parity on the wasm backend (grads-suite.ts).
import { blipGradientSuite } from './grads-suite.js';

blipGradientSuite('wasm');
