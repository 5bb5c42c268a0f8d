// loadCoca's and loadClip's fast path (safetensors data read straight into the variables, no random init, the wasm heap grown
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
import { fromOfficialStateDict, loadClip, loadCoca, readOpenClipConfig } from '../checkpoint.js';
import { Clip, CoCa } from '../model.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/coca-openclip/', import.meta.url));

/** The path before: every tensor read into JS, a model built with drawn weights, then a strict load. */
async function loadThePreviousWay(dir: string, kind: 'coca' | 'clip'): Promise<CoCa | Clip> {
  const { tensors } = await readCheckpoint(join(dir, 'model.safetensors'));
  const config = await readOpenClipConfig(dir);
  const model = kind === 'coca' ? new CoCa(config) : new Clip(config);
  model.loadStateDict(fromOfficialStateDict(tensors));
  return model.eval();
}

const LOADERS = { coca: loadCoca, clip: loadClip } as const;

const tmp = mkdtempSync(join(tmpdir(), 'coca-fast-load-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`loadCoca and loadClip on ${backend}`, () => {
    beforeAll(async () => {
      await initRuntime({ backend });
    });

    for (const kind of ['coca', 'clip'] as const) {
      const name = `${kind}-seed0`;
      it(`${name}: the same bits as the previous path and as the .pth; no tensor left behind`, async () => {
        const dir = join(FIXTURES, name);
        // Every tensor (all F32) stays in the file until loaded.
        await expectFastLoadMatches(
          {
            load: () => LOADERS[kind](dir),
            previous: () => loadThePreviousWay(dir, kind),
            pth: () => LOADERS[kind](join(dir, 'pytorch_model.pth')),
          },
          backend,
        );
      });
    }

    it('a truncated or corrupt model.safetensors is SAFETENSORS_INVALID naming the file; nothing is left allocated', async () => {
      const src = join(FIXTURES, 'coca-seed0');
      await expectDamagedSafetensorsRejected(loadCoca, src, join(tmp, backend));
    });
  });
}
