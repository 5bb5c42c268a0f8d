// loadBeit3's and loadBeit3Mdm's fast path (safetensors data read straight into the variables, no random init, the wasm heap grown
// once) against the path it replaced (the whole file read into JS arrays, a model with drawn weights, then
// loadStateDict), on cpu and wasm: the same bits in every tensor, no tensor left behind, and a damaged file still
// a typed error that names it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { readCheckpoint } from '@vl/core/node';
import { expectDamagedSafetensorsRejected, expectFastLoadMatches, stateBits, watchLoad } from '@vl/testing/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromOfficialStateDict, loadBeit3, readBeit3Config } from '../checkpoint.js';
import { beit3Preset } from '../config.js';
import { type Beit3MdmConfig, Beit3ForMaskedDataModeling } from '../mdm.js';
import { loadBeit3Mdm, saveBeit3Mdm } from '../mdm-train.js';
import { type Beit3Model, buildBeit3 } from '../model.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/beit3-official/', import.meta.url));

/** The path before: every tensor read into JS, a model built with drawn weights, then a strict load. */
async function loadThePreviousWay(dir: string): Promise<Beit3Model> {
  const { tensors } = await readCheckpoint(join(dir, 'model.safetensors'));
  const model = buildBeit3(await readBeit3Config(dir));
  model.loadStateDict(fromOfficialStateDict(tensors));
  return model.eval();
}

const tmp = mkdtempSync(join(tmpdir(), 'beit3-fast-load-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`loadBeit3 and loadBeit3Mdm on ${backend}`, () => {
    beforeAll(async () => {
      await initRuntime({ backend });
    });

    for (const task of ['retrieval', 'captioning', 'vqa', 'classification', 'nlvr2']) {
      const name = `beit3-${task}-seed0`;
      it(`${name}: the same bits as the previous path and as the .pth; no tensor left behind`, async () => {
        const dir = join(FIXTURES, name);
        // Every tensor (all F32) stays in the file until loaded.
        await expectFastLoadMatches(
          { load: () => loadBeit3(dir), previous: () => loadThePreviousWay(dir), pth: () => loadBeit3(join(dir, 'pytorch_model.pth')) },
          backend,
        );
      });
    }

    it('an MDM folder: the same bits as the saved model and as the previous path; no tensor left behind', async () => {
      const config: Beit3MdmConfig = { ...beit3Preset('tiny'), mdm: { visualVocabSize: 8 } };
      const saved = new Beit3ForMaskedDataModeling(config, new Rng(1));
      const dir = join(tmp, `${backend}-mdm`);
      await saveBeit3Mdm(saved, dir);
      const before = tf.memory().numTensors;
      const { model: fast, deferred, parameters } = await watchLoad(() => loadBeit3Mdm(dir));
      expect(deferred).toBe(parameters);
      const { tensors } = await readCheckpoint(join(dir, 'model.safetensors'));
      const previous = new Beit3ForMaskedDataModeling(config, new Rng(2));
      previous.loadStateDict(tensors);
      const bits = stateBits(fast);
      expect(bits).toEqual(stateBits(saved));
      expect(bits).toEqual(stateBits(previous));
      fast.dispose();
      previous.dispose();
      expect(tf.memory().numTensors).toBe(before);
      saved.dispose();
    });

    it('a truncated or corrupt model.safetensors is SAFETENSORS_INVALID naming the file; nothing is left allocated', async () => {
      const src = join(FIXTURES, 'beit3-retrieval-seed0');
      await expectDamagedSafetensorsRejected(loadBeit3, src, join(tmp, backend));
    });
  });
}
