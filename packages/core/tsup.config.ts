import { vlTsupConfig } from '../../tsup.shared';

// Two entries: `@vl/core` (browser-safe) and `@vl/core/node` (files, sharp, dataset readers). Code
// splitting (both formats) puts what they share in one chunk, so there is one VlError class, one
// Module class and one set of registered kernels however a program mixes the two entries.
export default vlTsupConfig({ index: 'src/index.ts', node: 'src/node.ts' }, { splitting: true });
