// ALBEF gradient parity on the wasm backend (grads-suite.ts).
import { albefGradientSuite } from './grads-suite.js';

albefGradientSuite('wasm');
