// `vl capfilt blip` writes the same bytes as `blip capfilt` did before the model contract: the golden
// outputs committed in @vl/blip (harness and rationale: packages/blip/src/capfilt/__tests__/golden.ts).
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, it } from 'vitest';

/** The harness's surface (imported by path at run time: it is @vl/blip's test code, outside this rootDir). */
interface GoldenHarness {
  setupGolden(): Promise<() => void>;
  runCapfilt(command: string[], out: string): Map<string, Buffer>;
  expectGolden(files: Map<string, Buffer>): void;
  outDir(name: string): string;
}

const HARNESS = new URL('../../../blip/src/capfilt/__tests__/golden.ts', import.meta.url).href;
const VL_BIN = fileURLToPath(new URL('../../bin/vl.js', import.meta.url));
let h: GoldenHarness;
let cleanup = () => {};
beforeAll(async () => {
  h = (await import(HARNESS)) as GoldenHarness;
  cleanup = await h.setupGolden();
}, 60_000);
afterAll(() => cleanup());

it('vl capfilt blip writes the golden outputs byte for byte on the demo data', () => {
  h.expectGolden(h.runCapfilt([VL_BIN, 'capfilt', 'blip'], h.outDir('vl')));
}, 120_000);
