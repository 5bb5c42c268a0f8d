// loadVlmo's fast path (safetensors data read straight into the variables, no random init, the wasm heap grown
// once) against the path it replaced (the whole file read into JS arrays, a model with drawn weights, then
// loadStateDict), on cpu and wasm: the same bits in every tensor, no tensor left behind, and a damaged file still
// a typed error that names it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { readCheckpoint } from '@vl/core/node';
import { expectDamagedSafetensorsRejected, expectFastLoadMatches } from '@vl/testing/models';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fromOfficialStateDict, loadVlmo, readVlmoConfig, VLMO_LEGACY_KEYS } from '../checkpoint.js';
import { Vlmo } from '../model.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/vlmo-official/', import.meta.url));

/** The path before: every tensor read into JS, a model built with drawn weights, then a strict load. */
async function loadThePreviousWay(dir: string): Promise<Vlmo> {
  const { tensors } = await readCheckpoint(join(dir, 'model.safetensors'), { filter: (k) => !VLMO_LEGACY_KEYS.includes(k) });
  const model = new Vlmo(await readVlmoConfig(dir));
  model.loadStateDict(fromOfficialStateDict(tensors));
  return model.eval();
}

const tmp = mkdtempSync(join(tmpdir(), 'vlmo-fast-load-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`loadVlmo on ${backend}`, () => {
    beforeAll(async () => {
      await initRuntime({ backend });
    });

    for (const name of ['vlmo-seed0', 'vlmo-plus-seed4']) {
      it(`${name}: the same bits as the previous path and as the .pth; no tensor left behind`, async () => {
        const dir = join(FIXTURES, name);
        // Every F32 tensor stays in the file until loaded (all but the I64 position_ids, decoded at once).
        await expectFastLoadMatches(
          { load: () => loadVlmo(dir), previous: () => loadThePreviousWay(dir), pth: () => loadVlmo(join(dir, 'pytorch_model.pth')) },
          backend,
        );
      });
    }

    it('a truncated or corrupt model.safetensors is SAFETENSORS_INVALID naming the file; nothing is left allocated', async () => {
      const src = join(FIXTURES, 'vlmo-seed0');
      await expectDamagedSafetensorsRejected(loadVlmo, src, join(tmp, backend));
    });
  });
}
