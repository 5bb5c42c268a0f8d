import { vlTsupConfig } from '../../tsup.shared';

export default vlTsupConfig({ index: 'src/index.ts', cli: 'src/cli.ts' });
