// `blip capfilt` writes the committed golden outputs byte for byte (harness and rationale: golden.ts).
import { afterAll, beforeAll, it } from 'vitest';
import { BLIP_BIN, expectGolden, outDir, runCapfilt, setupGolden } from './golden.js';

let cleanup = () => {};
beforeAll(async () => {
  cleanup = await setupGolden();
}, 60_000);
afterAll(() => cleanup());

it('blip capfilt writes the golden outputs byte for byte on the demo data', () => {
  expectGolden(runCapfilt([BLIP_BIN, 'capfilt'], outDir('blip')));
}, 120_000);
