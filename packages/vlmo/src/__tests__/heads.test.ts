// The VQA and NLVR2 fine-tuning heads as VLMo.__init__ builds them (keys `vqa_classifier.{0,1,3}.*`,
// `nlvr2_classifier.*`, a 3-row token_type_embeddings whose row 2 starts as row 1), the classifier
// against a hand computation (Linear → LayerNorm eps 1e-5 → exact GELU → Linear), NLVR2 as two fusions
// with token types 1 and 2, the two losses by hand, and `--init` widening a 2-row token-type table.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveVlmo } from '../checkpoint.js';
import { parseVlmoConfig, vlmoConfigFromJson, vlmoConfigToJson, vlmoPreset } from '../config.js';
import { vlmoNlvr2Loss, vlmoVqaLoss } from '../finetune.js';
import { Vlmo } from '../model.js';
import { vlmoStageConfig } from '../stages.js';
import { loadVlmoInit } from '../train.js';

const tmp = mkdtempSync(join(tmpdir(), 'vlmo-heads-'));
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The tiny preset with extra loss names (and the VQA answer count). */
function withTasks(lossNames: Record<string, number>, extra: Record<string, unknown> = {}) {
  const base = vlmoPreset('tiny');
  const { bertConfig: _b, ...rest } = base;
  return parseVlmoConfig({
    ...rest,
    vlmoConfig: { ...base.vlmoConfig, lossNames: { ...base.vlmoConfig.lossNames, ...lossNames }, ...extra },
  });
}

const shapes = (m: Vlmo, prefix: string) =>
  Object.fromEntries([...m.stateDict()].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t.shape]));

/** erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7). */
function erf(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}

describe('VQA and NLVR2 heads', () => {
  it('have the official keys and shapes; NLVR2 widens token_type_embeddings with row 2 = row 1', () => {
    const vqa = new Vlmo(withTasks({ vqa: 1 }, { vqav2LabelSize: 10 }), new Rng(1));
    expect(shapes(vqa, 'vqa_classifier.')).toEqual({
      '0.weight': [64, 32],
      '0.bias': [64],
      '1.weight': [64],
      '1.bias': [64],
      '3.weight': [10, 64],
      '3.bias': [10],
    });
    expect(vqa.token_type_embeddings.weight.shape).toEqual([2, 32]);
    const json = vlmoConfigToJson(vqa.config) as { vlmo_config: Record<string, unknown> };
    expect(json.vlmo_config.vqav2_label_size).toBe(10);
    expect(vlmoConfigFromJson(json).vlmoConfig.lossNames.vqa).toBe(1);
    expect(new Vlmo(withTasks({ vqa: 1 })).vqa_classifier?.fc2.weight.shape).toEqual([3129, 64]);
    const nlvr2 = new Vlmo(withTasks({ nlvr2: 1 }), new Rng(1));
    expect(shapes(nlvr2, 'nlvr2_classifier.')).toMatchObject({ '0.weight': [64, 64], '1.weight': [64], '3.weight': [2, 64] });
    const types = nlvr2.token_type_embeddings.weight.arraySync() as number[][];
    expect(types).toHaveLength(3);
    expect(types[2]).toEqual(types[1]);
    expect(types[0]).not.toEqual(types[1]);
    expect(() =>
      vqa.nlvr2Logits(tf.zeros([1, 3, 32, 32]), tf.zeros([1, 3, 32, 32]), tf.ones([1, 3], 'int32'), tf.ones([1, 3], 'int32')),
    ).toThrow(/loss_names.nlvr2/);
    vqa.dispose();
    nlvr2.dispose();
  });

  it('the classifier is Linear → LayerNorm(eps 1e-5) → exact GELU → Linear (checked by hand where eps matters)', () => {
    const m = new Vlmo(withTasks({ vqa: 1 }, { vqav2LabelSize: 5 }), new Rng(2));
    const head = m.vqa_classifier!;
    // Tiny first-layer weights: the hidden variance is ~1e-7, so eps 1e-5 vs 1e-12 changes the output.
    head.fc1.weight.assign(tf.mul(head.fc1.weight, 1e-3));
    head.fc1.bias!.assign(tf.randomNormal([64], 0, 1e-4, 'float32', 3));
    head.norm.weight.assign(tf.randomNormal([64], 1, 0.1, 'float32', 4));
    head.norm.bias!.assign(tf.randomNormal([64], 0, 0.1, 'float32', 5));
    const rng = new Rng(6);
    const x = Array.from({ length: 32 }, () => rng.normal());
    const W1 = head.fc1.weight.arraySync() as number[][];
    const b1 = Array.from(head.fc1.bias!.dataSync());
    const g = Array.from(head.norm.weight.dataSync());
    const beta = Array.from(head.norm.bias!.dataSync());
    const W2 = head.fc2.weight.arraySync() as number[][];
    const b2 = Array.from(head.fc2.bias!.dataSync());
    const byHand = (eps: number) => {
      const h = W1.map((row, i) => row.reduce((s, w, j) => s + w * x[j]!, b1[i]!));
      const mu = h.reduce((a, v) => a + v, 0) / h.length;
      const v = h.reduce((a, y) => a + (y - mu) ** 2, 0) / h.length;
      const n = h.map((y, i) => ((y - mu) / Math.sqrt(v + eps)) * g[i]! + beta[i]!);
      const a = n.map((y) => 0.5 * y * (1 + erf(y / Math.SQRT2)));
      return W2.map((row, i) => row.reduce((s, w, j) => s + w * a[j]!, b2[i]!));
    };
    const ours = Array.from(tf.tidy(() => m.vqaLogits(tf.tensor2d([x]))).dataSync());
    const expected = byHand(1e-5);
    ours.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
    const wrongEps = byHand(1e-12);
    expect(Math.max(...ours.map((v, i) => Math.abs(v - wrongEps[i]!)))).toBeGreaterThan(1e-2);
    m.dispose();
  });

  it('NLVR2 fuses the text with each image (token types 1 and 2) and classifies the two pooled outputs', () => {
    const m = new Vlmo(withTasks({ nlvr2: 1 }), new Rng(3)).eval();
    // Make the second image's token type differ from the first's, so the test sees which row each uses
    // (a random vector: a uniform shift of every feature would vanish in the LayerNorms).
    const shift = tf.concat([tf.zeros([2, 32]), tf.randomNormal([1, 32], 0, 0.5, 'float32', 6)], 0);
    m.token_type_embeddings.weight.assign(tf.add(m.token_type_embeddings.weight, shift));
    const p1 = tf.randomUniform([2, 3, 32, 32], -1, 1, 'float32', 7);
    const p2 = tf.randomUniform([2, 3, 32, 32], -1, 1, 'float32', 8);
    const ids = tf.tensor2d([2, 10, 11, 3, 2, 12, 3, 0], [2, 4], 'int32');
    const mask = tf.tensor2d([1, 1, 1, 1, 1, 1, 1, 0], [2, 4], 'int32');
    const logits = m.nlvr2Logits(p1, p2, ids, mask);
    expect(logits.shape).toEqual([2, 2]);
    const byParts = tf.tidy(() =>
      m.nlvr2_classifier!.forward(
        tf.concat([m.fuse(p1, ids, mask, { tokenTypeIdx: 1 }).clsFeats, m.fuse(p2, ids, mask, { tokenTypeIdx: 2 }).clsFeats], 1),
      ),
    );
    expect(Array.from(logits.dataSync())).toEqual(Array.from(byParts.dataSync()));
    const wrongType = tf.tidy(() =>
      m.nlvr2_classifier!.forward(
        tf.concat([m.fuse(p1, ids, mask, { tokenTypeIdx: 1 }).clsFeats, m.fuse(p2, ids, mask, { tokenTypeIdx: 1 }).clsFeats], 1),
      ),
    );
    expect(Array.from(wrongType.dataSync())).not.toEqual(Array.from(logits.dataSync()));
    tf.dispose([p1, p2, ids, mask, logits, byParts, wrongType]);
    m.dispose();
  });

  it('the VQA loss is mean BCE-with-logits × answers and the NLVR2 loss cross-entropy, by hand', () => {
    const logits = [
      [2, -1, 0.5],
      [-3, 0, 1],
    ];
    const targets = [
      [1, 0, 0.3],
      [0, 0.6, 1],
    ];
    let sum = 0;
    logits.forEach((row, i) =>
      row.forEach((x, j) => {
        const t = targets[i]![j]!;
        const p = 1 / (1 + Math.exp(-x));
        sum += -(t * Math.log(p) + (1 - t) * Math.log(1 - p));
      }),
    );
    expect(vlmoVqaLoss(tf.tensor2d(logits), tf.tensor2d(targets)).dataSync()[0]).toBeCloseTo((sum / 6) * 3, 5);
    const ce = (row: number[], y: number) => Math.log(row.reduce((a, v) => a + Math.exp(v), 0)) - row[y]!;
    const nl = [
      [0.2, -0.4],
      [1.5, 0.5],
    ];
    expect(vlmoNlvr2Loss(tf.tensor2d(nl), [1, 0]).dataSync()[0]).toBeCloseTo((ce(nl[0]!, 1) + ce(nl[1]!, 0)) / 2, 5);
    expect(() => vlmoVqaLoss(tf.zeros([2, 3]), tf.zeros([2, 4]))).toThrow(/\[B, answers\]/);
  });

  it('--init from a pretrained (2-row) checkpoint widens the token types for NLVR2, row 2 = row 1', async () => {
    const pre = new Vlmo(vlmoStageConfig(vlmoPreset('tiny'), 3), new Rng(4));
    await saveVlmo(pre, join(tmp, 'pre'));
    const ft = new Vlmo(withTasks({ nlvr2: 1 }), new Rng(9));
    const report = await loadVlmoInit(ft, join(tmp, 'pre'));
    expect(report.notes).toEqual(['token_type_embeddings widened to 3 rows for NLVR2 (row 2 = row 1)']);
    expect(report.fresh.every((k) => k.startsWith('nlvr2_classifier.'))).toBe(true);
    const rows = pre.token_type_embeddings.weight.arraySync() as number[][];
    expect(ft.token_type_embeddings.weight.arraySync()).toEqual([rows[0], rows[1], rows[1]]);
    pre.dispose();
    ft.dispose();
  });
});
