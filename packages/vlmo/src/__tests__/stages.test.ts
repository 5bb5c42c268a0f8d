// The three stage configs and their forwards on the tiny preset: which heads and experts each stage
// builds, BEiT's masked patch embedding (masked rows are exactly mask_token), block masking sized for the
// grid, finite losses under the names the CLI switches, and `--init` loading (new keys fresh, shape
// mismatches listed, nothing half-loaded).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, PatchCodebookTokenizer, Rng } from '@vl/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveVlmo } from '../checkpoint.js';
import { vlmoConfigFromJson, vlmoConfigToJson, vlmoPreset } from '../config.js';
import { Vlmo } from '../model.js';
import { type VlmoPretrainBatch, VlmoPretrainer, vlmoMaskingGenerator } from '../pretraining.js';
import { VLMO_STAGES, vlmoStageConfig } from '../stages.js';
import { loadVlmoInit } from '../train.js';

const tmp = mkdtempSync(join(tmpdir(), 'vlmo-stages-'));
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tiny = vlmoPreset('tiny');
const keysOf = (m: Vlmo) => [...m.stateDict().keys()];

function batch(b: number, seed: number): VlmoPretrainBatch {
  const rng = new Rng(seed);
  const L = 9;
  const ids = new Int32Array(b * L);
  const mask = new Int32Array(b * L);
  for (let r = 0; r < b; r++) {
    const len = 5 + (r % 4);
    for (let j = 0; j < len; j++) {
      ids[r * L + j] = j === 0 ? 2 : j === len - 1 ? 3 : 5 + rng.int(90);
      mask[r * L + j] = 1;
    }
  }
  return {
    pixels: Float32Array.from({ length: b * 3 * 32 * 32 }, () => Math.tanh(rng.normal())),
    imageSize: 32,
    batchSize: b,
    inputIds: ids,
    attentionMask: mask,
    seqLength: L,
  };
}

describe('stage configs', () => {
  it('stage 1 builds the MIM head and no VL-FFN or text heads; stage 2 the MLM head without VL-FFN; stage 3 everything', () => {
    const s1 = new Vlmo(vlmoStageConfig(tiny, 1, { visualVocabSize: 16 }));
    const k1 = keysOf(s1);
    expect(k1).toEqual(expect.arrayContaining(['transformer.mask_token', 'transformer.lm_head.weight', 'transformer.lm_head.bias']));
    expect(s1.transformer.lmHead?.weight.shape).toEqual([16, 32]);
    expect(k1.some((k) => /mlp_vl|mlm_score|itm_score|itc_|logit_/.test(k))).toBe(false);
    const s2 = new Vlmo(vlmoStageConfig(tiny, 2));
    const k2 = keysOf(s2);
    expect(k2.some((k) => /mlp_vl|mask_token|lm_head|itm_score|itc_/.test(k))).toBe(false);
    expect(k2).toContain('mlm_score.decoder.weight');
    const s3 = new Vlmo(vlmoStageConfig(tiny, 3));
    expect(keysOf(s3).filter((k) => k.endsWith('mlp_vl.fc1.weight'))).toEqual([
      'transformer.blocks.2.mlp_vl.fc1.weight',
      'transformer.blocks.3.mlp_vl.fc1.weight',
    ]);
    expect(keysOf(s3).some((k) => /mask_token|lm_head/.test(k))).toBe(false);
    // A stage config writes and reads back through config.json (loss_names.mim, visual_vocab_size).
    const json = vlmoConfigToJson(s1.config) as { vlmo_config: { loss_names: Record<string, number>; visual_vocab_size: number } };
    expect(json.vlmo_config.loss_names).toMatchObject({ mim: 1, itc: 0, itm: 0, mlm: 0, textmlm: 0 });
    expect(json.vlmo_config.visual_vocab_size).toBe(16);
    expect(vlmoConfigFromJson(json).vlmoConfig.visualVocabSize).toBe(16);
    for (const m of [s1, s2, s3]) m.dispose();
  });

  it('freezes by name: stage 2 holds attention, V-FFN, patch embedding and final norm; nothing of the text side', () => {
    const m = new Vlmo(vlmoStageConfig(tiny, 2));
    const frozen = m.freeze([...VLMO_STAGES[2].freeze]);
    expect(frozen).toEqual(expect.arrayContaining(['transformer.blocks.0.attn.qkv.weight', 'transformer.blocks.3.mlp_imag.fc2.bias']));
    expect(frozen).toEqual(
      expect.arrayContaining(['transformer.patch_embed.proj.weight', 'transformer.cls_token', 'transformer.norm.weight']),
    );
    expect(frozen.some((k) => /mlp_text|norm2_text|text_embeddings|mlm_score|relative_position|token_type/.test(k))).toBe(false);
    // 4 layers × (norm1 2 + attn 5 + gammas 2 + mlp_imag 4 + norm2_imag 2) + patch 2 + cls 1 + norm 2.
    expect(frozen).toHaveLength(4 * 15 + 5);
    m.dispose();
  });
});

describe('masked image modelling (stage 1)', () => {
  it('replaces masked patch embeddings by mask_token exactly, and gives logits over the visual vocabulary per patch', () => {
    const m = new Vlmo(vlmoStageConfig(tiny, 1, { visualVocabSize: 16 }), new Rng(1));
    const px = tf.tensor4d(batch(2, 3).pixels, [2, 3, 32, 32]);
    const mask = tf.tensor2d([[1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1], new Array(16).fill(0)], [2, 16]);
    const plain = m.transformer.visualEmbed(px).arraySync() as number[][][];
    const masked = m.transformer.visualEmbed(px, mask).arraySync() as number[][][];
    const token = Array.from(m.transformer.maskToken!.dataSync());
    const rows = mask.arraySync() as number[][];
    for (let b = 0; b < 2; b++) {
      expect(masked[b]![0]).toEqual(plain[b]![0]); // class token
      for (let p = 0; p < 16; p++) expect(masked[b]![p + 1]).toEqual(rows[b]![p] ? token : plain[b]![p + 1]);
    }
    expect(m.eval().mimLogits(px, mask).shape).toEqual([2, 16, 16]);
    expect(() => m.transformer.visualEmbed(px, tf.zeros([2, 15]))).toThrow(/patch mask must be \[2, 16\]/);
    const s3 = new Vlmo(vlmoStageConfig(tiny, 3));
    expect(() => s3.mimLogits(px, mask)).toThrow(/loss_names.mim/);
    tf.dispose([px, mask]);
    m.dispose();
    s3.dispose();
  });

  it('masks about 40% of the grid in blocks (BEiT: 75 of 196 patches, blocks of at least 16)', () => {
    const g = vlmoMaskingGenerator(4);
    expect([g.numMaskingPatches, g.minNumPatches]).toEqual([6, 2]);
    const beit = vlmoMaskingGenerator(14);
    expect([beit.numMaskingPatches, beit.minNumPatches]).toEqual([78, 16]);
    const counts = Array.from({ length: 20 }, (_, s) => g.generate(new Rng(s)).reduce((a, v) => a + v, 0));
    for (const c of counts) expect(c >= 2 && c <= 6).toBe(true);
  });
});

describe('the stage forwards', () => {
  it('each returns finite losses under its objective names, and switches objectives off by weight 0', () => {
    const tok = new PatchCodebookTokenizer({ patchSize: 8, vocabSize: 16, rng: new Rng(0) });
    const cases = [
      [1, ['mim'], { visualVocabSize: 16 }],
      [2, ['textmlm'], {}],
      [3, ['itc', 'itm', 'mlm'], {}],
    ] as const;
    for (const [stage, names, opts] of cases) {
      const model = new Vlmo(vlmoStageConfig(tiny, stage, opts), new Rng(2));
      const p = new VlmoPretrainer(model, { stage, visualTokenizer: tok });
      const before = tf.memory().numTensors;
      const out = p.forward(batch(4, 7), new Rng(3));
      expect(Object.keys(out.losses).sort()).toEqual([...names].sort());
      for (const v of Object.values(out.losses)) expect(Number.isFinite(v.dataSync()[0]!)).toBe(true);
      tf.dispose([out.loss, ...Object.values(out.losses)]);
      expect(tf.memory().numTensors).toBe(before);
      model.dispose();
    }
    const model = new Vlmo(vlmoStageConfig(tiny, 3), new Rng(2));
    const off = new VlmoPretrainer(model, { stage: 3, objectives: { itc: { weight: 0 }, mlm: { weight: 0 } } }).forward(
      batch(4, 7),
      new Rng(3),
    );
    expect(Object.keys(off.losses)).toEqual(['itm']);
    tf.dispose([off.loss, ...Object.values(off.losses)]);
    expect(() => new VlmoPretrainer(model, { stage: 1, visualTokenizer: tok })).toThrow(/loss_names.mim/);
    model.dispose();
    tok.dispose();
  });
});

describe('gradients of the stage losses', () => {
  it('match central differences on the parameters each stage trains (same draws for every evaluation)', () => {
    const tok = new PatchCodebookTokenizer({ patchSize: 8, vocabSize: 16, rng: new Rng(0) });
    const cases = [
      [1, ['transformer.blocks.0.attn.qkv.weight', 'transformer.lm_head.weight']],
      [2, ['transformer.blocks.1.mlp_text.fc2.weight', 'relative_position_bias_table']],
      [3, ['transformer.blocks.2.mlp_vl.fc1.weight', 'transformer.blocks.0.attn.proj.weight']],
    ] as const;
    for (const [stage, names] of cases) {
      const model = new Vlmo(vlmoStageConfig(tiny, stage, { visualVocabSize: 16 }), new Rng(6)).eval();
      const p = new VlmoPretrainer(model, { stage, visualTokenizer: tok });
      const data = batch(3, 8);
      const loss = () => p.forward(data, new Rng(5)).loss;
      const params = new Map(model.namedParameters());
      const vars = names.map((n) => params.get(n)!);
      const { value, grads } = tf.variableGrads(loss, vars);
      value.dispose();
      for (const [i, v] of vars.entries()) {
        const g = grads[v.name]!.dataSync();
        let at = 0;
        for (let j = 1; j < g.length; j++) if (Math.abs(g[j]!) > Math.abs(g[at]!)) at = j;
        const orig = v.dataSync().slice();
        const eps = 1e-2;
        const lossAt = (delta: number) => {
          const moved = orig.slice();
          moved[at] = moved[at]! + delta;
          v.assign(tf.tensor(moved, v.shape));
          const l = loss();
          const x = l.dataSync()[0]!;
          l.dispose();
          return x;
        };
        const numeric = (lossAt(eps) - lossAt(-eps)) / (2 * eps);
        v.assign(tf.tensor(orig, v.shape));
        expect(Math.abs(numeric - g[at]!), `stage ${stage} ${names[i]}: analytic ${g[at]} numeric ${numeric}`).toBeLessThan(
          0.02 * Math.abs(g[at]!) + 1e-4,
        );
      }
      tf.dispose(Object.values(grads));
      model.dispose();
    }
    tok.dispose();
  });
});

describe('--init', () => {
  it('loads the keys both have, reports new and unused ones, and refuses other shapes listing them all', async () => {
    const s1 = new Vlmo(vlmoStageConfig(tiny, 1, { visualVocabSize: 16 }), new Rng(4));
    await saveVlmo(s1, join(tmp, 's1'));
    const s2 = new Vlmo(vlmoStageConfig(tiny, 2), new Rng(9));
    const report = await loadVlmoInit(s2, join(tmp, 's1'));
    expect(report.unused.sort()).toEqual(['transformer.lm_head.bias', 'transformer.lm_head.weight', 'transformer.mask_token']);
    expect(report.fresh.every((k) => k.startsWith('mlm_score.'))).toBe(true);
    expect(report.loaded).toBe(keysOf(s2).length - report.fresh.length);
    expect(s2.transformer.blocks.at(1).stateDict().get('attn.qkv.weight')!.dataSync()).toEqual(
      s1.transformer.blocks.at(1).stateDict().get('attn.qkv.weight')!.dataSync(),
    );
    const wide = new Vlmo(vlmoStageConfig(vlmoPreset('tiny', { maxTextLen: 16 }), 2), new Rng(9));
    const words = wide.text_embeddings.stateDict().get('word_embeddings.weight')!.dataSync().slice();
    await expect(loadVlmoInit(wide, join(tmp, 's1'))).rejects.toThrow(
      /relative_position_bias_table \[78,16\] ≠ \[86,16\].*position_embeddings/,
    );
    expect(wide.text_embeddings.stateDict().get('word_embeddings.weight')!.dataSync()).toEqual(words);
    for (const m of [s1, s2, wide]) m.dispose();
  });
});
