// Fixture parity on the wasm backend (core's patched matMul kernels).
import { paritySuite } from './parity-suite.js';

paritySuite('wasm');
