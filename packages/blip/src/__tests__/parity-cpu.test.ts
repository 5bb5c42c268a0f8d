// Fixture parity on the pure-JS cpu backend.
import { paritySuite } from './parity-suite.js';

paritySuite('cpu');
