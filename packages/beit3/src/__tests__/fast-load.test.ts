// loadBeit3's and loadBeit3Mdm's fast path (safetensors data read straight into the variables, no random init, the wasm heap grown
// once) against the path it replaced (the whole file read into JS arrays, a model with drawn weights, then
// loadStateDict), on cpu and wasm: the same bits in every tensor, no tensor left behind, and a damaged file still
// a typed error that names it.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, isDeferredHostTensor, isVlError, Module, Rng } from '@vl/core';
import { readCheckpoint } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fromOfficialStateDict, loadBeit3, readBeit3Config } from '../checkpoint.js';
import { beit3Preset } from '../config.js';
import { type Beit3MdmConfig, Beit3ForMaskedDataModeling } from '../mdm.js';
import { loadBeit3Mdm, saveBeit3Mdm } from '../mdm-train.js';
import { type Beit3Model, buildBeit3 } from '../model.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/beit3-official/', import.meta.url));

/** Every tensor of the state dict as raw bits (float32 NaN payloads and -0 included). */
function stateBits(m: Module): Map<string, number[]> {
  return new Map(
    [...m.stateDict()].map(([k, t]) => {
      const d = t.dataSync();
      return [k, d instanceof Float32Array ? [...new Uint32Array(d.buffer, d.byteOffset, d.length)] : [...d]];
    }),
  );
}

/**
 * Runs `load`, watching its loadStateDict: how many values came still in their file (deferred, read straight into
 * memory), and how many parameters kept their memory (on wasm host data is written in place; elsewhere assign
 * gives each parameter new data).
 */
async function watchLoad<M extends Module>(
  load: () => Promise<M>,
): Promise<{ model: M; deferred: number; inPlace: number; parameters: number }> {
  const seen = { deferred: 0, inPlace: 0, parameters: 0 };
  const original = Module.prototype.loadStateDict;
  const spy = vi.spyOn(Module.prototype, 'loadStateDict').mockImplementation(function (this: Module, ...args) {
    const [dict] = args;
    seen.deferred += [...(dict instanceof Map ? dict.values() : Object.values(dict))].filter(isDeferredHostTensor).length;
    const ids = this.namedParameters().map(([, p]) => p.dataId);
    const report = original.apply(this, args);
    const after = this.namedParameters().map(([, p]) => p.dataId);
    seen.parameters += ids.length;
    seen.inPlace += ids.filter((id, i) => id === after[i]).length;
    return report;
  });
  try {
    return { model: await load(), ...seen };
  } finally {
    spy.mockRestore();
  }
}

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
        const before = tf.memory().numTensors;
        const { model: fast, deferred, inPlace, parameters } = await watchLoad(() => loadBeit3(dir));
        // Every tensor (all F32) stayed in the file until loaded.
        expect(deferred).toBe(parameters);
        expect(inPlace).toBe(backend === 'wasm' ? parameters : 0);
        const owned = tf.memory().numTensors - before;
        const previous = await loadThePreviousWay(dir);
        const pth = await loadBeit3(join(dir, 'pytorch_model.pth'));
        // The load made only the model's own tensors (the same count as the previous path's model).
        expect(tf.memory().numTensors - before).toBe(3 * owned);
        const bits = stateBits(fast);
        expect(bits.size).toBeGreaterThan(50);
        expect(bits).toEqual(stateBits(previous));
        expect(bits).toEqual(stateBits(pth));
        for (const m of [fast, previous, pth]) m.dispose();
        expect(tf.memory().numTensors).toBe(before);
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
      const bytes = readFileSync(join(src, 'model.safetensors'));
      const corrupt = Buffer.from(bytes);
      corrupt.writeUInt32LE(0xffffff, 0); // a header length past the end of the file
      for (const [label, content] of [
        ['truncated', bytes.subarray(0, bytes.length - 100)],
        ['corrupt', corrupt],
      ] as const) {
        const dir = join(tmp, `${backend}-${label}`);
        mkdirSync(dir, { recursive: true });
        copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
        const file = join(dir, 'model.safetensors');
        writeFileSync(file, content);
        const before = tf.memory().numTensors;
        const error = await loadBeit3(dir).then(
          () => null,
          (e: unknown) => e,
        );
        expect(isVlError(error) && error.code === 'SAFETENSORS_INVALID' && error.subject === file, String(error)).toBe(true);
        expect(tf.memory().numTensors).toBe(before);
      }
    });
  });
}
