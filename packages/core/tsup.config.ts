import { vlTsupConfig } from '../../tsup.shared';

// Three entries: `@vl/core` (browser-safe), `@vl/core/node` (files, sharp, dataset readers) and
// `@vl/core/cli` (the commander program over the model registry). Code splitting (both formats) puts
// what they share in one chunk, so there is one VlError class, one Module class, one registry and one
// set of registered kernels however a program mixes the entries.
export default vlTsupConfig({ index: 'src/index.ts', node: 'src/node.ts', cli: 'src/cli/index.ts' }, { splitting: true });
