// Stagewise pretraining from the command line on a tiny synthetic dataset (one batch of 8, repeated):
// `vlmo train --stage 1`, then 2 and 3 each `--init` from the previous stage. Every loss is finite and
// goes down; stage 2 leaves the frozen weights, the image rows of the shared tables and hence every
// image-only output bit-identical while the L-FFN moves; then `eval` (Recall@K both ways, re-ranking,
// ITM accuracy/AUC, all in range) and `match` on the stage-3 model. wasm, for speed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import { writeSynthDataset } from '@vl/core/node';
import { captureLines } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadVlmo } from '../checkpoint.js';
import { runCli } from '../cli.js';
import type { VlmoEvalReport } from '../evaluate.js';
import { VLMO_STAGES } from '../stages.js';

const tmp = mkdtempSync(join(tmpdir(), 'vlmo-train-'));
const data = join(tmp, 'data');
const run = (s: number) => join(tmp, `stage${s}`);

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
  // 8 training images: with --batch-size 8 every step sees the same batch.
  await writeSynthDataset({ out: data, images: 20, seed: 2, imageSize: 32, captionsPerImage: 1, splits: [0.4, 0.1, 0.5] });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function train(stage: number, extra: string[] = []): Promise<string> {
  const c = captureLines();
  const args = ['train', '--stage', String(stage), '--data', data, '--out', run(stage), '--batch-size', '8', '--max-steps', '8'];
  const code = await runCli([...args, '--lr', '3e-3', '--seed', '1', '--quiet', '--backend', 'wasm', ...extra], c.io);
  expect(code, c.lines.join('\n')).toBe(0);
  return c.lines.join('\n');
}

interface Step {
  loss: number;
  losses: Record<string, number>;
}
const steps = (s: number): Step[] =>
  readFileSync(join(run(s), 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Step);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Every loss finite; the named ones (and the total) lower over the last 3 steps than over the first 3. */
function expectDecreasing(s: number, names: string[]): void {
  const r = steps(s);
  expect(r).toHaveLength(8);
  for (const x of r) for (const v of [x.loss, ...Object.values(x.losses)]) expect(Number.isFinite(v)).toBe(true);
  for (const name of [...names, 'total']) {
    const of = (x: Step) => (name === 'total' ? x.loss : x.losses[name]!);
    const first = mean(r.slice(0, 3).map(of));
    const last = mean(r.slice(-3).map(of));
    expect(last, `stage ${s} ${name}: ${first} → ${last}`).toBeLessThan(first);
  }
}

async function weights(dir: string): Promise<Map<string, Float32Array | Int32Array>> {
  const m = await loadVlmo(join(dir, 'model'));
  const out = new Map([...m.stateDict()].map(([k, t]) => [k, t.dataSync().slice() as Float32Array | Int32Array]));
  m.dispose();
  return out;
}
const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));

describe('vlmo train --stage 1|2|3', () => {
  it('stage 1 (MIM) runs from the CLI and its loss goes down', async () => {
    const text = await train(1);
    expect(text).toMatch(/stage 1 \(image-only masked image modelling.*\): 8 steps/);
    expect(text).toMatch(/frozen: 0 tensors/);
    expectDecreasing(1, ['mim']);
  }, 60_000);

  it('stage 2 (text-only MLM) from stage 1 keeps every frozen weight and every image-only output bit-identical', async () => {
    const text = await train(2, ['--init', run(1)]);
    expect(text).toMatch(/init from .*stage1.model: \d+ tensors loaded, 6 new .*, 3 not used by this stage/);
    expect(text).toMatch(/frozen: 65 tensors/);
    expectDecreasing(2, ['textmlm']);
    const [before, after] = [await weights(run(1)), await weights(run(2))];
    const probe = await loadVlmo(join(run(2), 'model'));
    const frozen = probe.freeze([...VLMO_STAGES[2].freeze]);
    probe.dispose();
    expect(frozen).toHaveLength(65);
    for (const k of frozen) expect(same(after.get(k)!, before.get(k)!), k).toBe(true);
    // Trained: the L-FFN, text embeddings, the text rows of the shared tables.
    for (const k of ['transformer.blocks.0.mlp_text.fc1.weight', 'text_embeddings.word_embeddings.weight']) {
      expect(same(after.get(k)!, before.get(k)!), k).toBe(false);
    }
    const cols = 4 * 4; // depth · heads
    const imageRows = 7 * 7 + 3; // (2g−1)² + 3 rows: what the image index reads
    const table = (w: Map<string, Float32Array | Int32Array>) => w.get('relative_position_bias_table')!;
    expect(same(table(after).slice(0, imageRows * cols), table(before).slice(0, imageRows * cols))).toBe(true);
    expect(same(table(after), table(before))).toBe(false);
    const types = (w: Map<string, Float32Array | Int32Array>, row: number) =>
      w.get('token_type_embeddings.weight')!.slice(row * 32, row * 32 + 32);
    expect(same(types(after, 1), types(before, 1))).toBe(true);
    expect(same(types(after, 0), types(before, 0))).toBe(false);
    // So the image-only route computes exactly what it did after stage 1.
    const [m1, m2] = [(await loadVlmo(join(run(1), 'model'))).eval(), (await loadVlmo(join(run(2), 'model'))).eval()];
    const px = tf.randomUniform([2, 3, 32, 32], -1, 1, 'float32', 5);
    const f1 = tf.tidy(() => m1.encodeImage(px, { vlffn: false }).feats.dataSync());
    const f2 = tf.tidy(() => m2.encodeImage(px, { vlffn: false }).feats.dataSync());
    expect(same(f1, f2)).toBe(true);
    tf.dispose(px);
    m1.dispose();
    m2.dispose();
  }, 60_000);

  it('stage 3 (ITC + ITM + MLM) from stage 2 trains every expert and its losses go down', async () => {
    const text = await train(3, ['--init', run(2)]);
    expect(text).toMatch(/init from .*: \d+ tensors loaded, 20 new \(freshly initialised\), 0 not used/);
    expect(text).toMatch(/losses, last 10% of steps: +itc [\d.]+, itm [\d.]+, mlm [\d.]+/);
    // On the tiny preset these 8 steps take ITC from above chance to about ln 8 and ITM towards its class
    // prior: the plateau docs/vlmo.md describes, not yet above-chance matching. Correct gradients are
    // stages.test.ts's, and the ITC / ITM / MLM loss values the parity tests'.
    expectDecreasing(3, ['itc', 'itm']);
    const [before, after] = [await weights(run(2)), await weights(run(3))];
    for (const k of [
      'transformer.blocks.0.attn.qkv.weight',
      'transformer.blocks.1.mlp_imag.fc1.weight',
      'transformer.blocks.2.mlp_text.fc1.weight',
    ]) {
      expect(same(after.get(k)!, before.get(k)!), k).toBe(false);
    }
  }, 120_000);

  it('--config changes the fresh model architecture (config.json fields) and is refused with --init or unknown keys', async () => {
    const file = join(tmp, 'arch.json');
    writeFileSync(file, JSON.stringify({ transformer_kwargs: { layer_scale_init_values: null }, vlmo_config: { drop_path_rate: 0 } }));
    const out = join(tmp, 'arch');
    const c = captureLines();
    const args = ['train', '--stage', '1', '--data', data, '--batch-size', '8', '--max-steps', '1', '--backend', 'wasm', '--quiet'];
    expect(await runCli([...args, '--out', out, '--config', file], c.io), c.lines.join('\n')).toBe(0);
    const saved = JSON.parse(readFileSync(join(out, 'model', 'config.json'), 'utf8')) as {
      transformer_kwargs: Record<string, unknown>;
      vlmo_config: Record<string, unknown>;
    };
    expect(saved.transformer_kwargs.layer_scale_init_values).toBeNull();
    expect(saved.vlmo_config.drop_path_rate).toBe(0);
    const m = await loadVlmo(join(out, 'model'));
    expect([...m.stateDict().keys()].some((k) => k.includes('gamma_'))).toBe(false);
    m.dispose();
    expect(await runCli([...args, '--out', join(tmp, 'arch2'), '--config', file, '--init', run(1)], c.io)).toBe(2);
    expect(c.lines.join('\n')).toMatch(/not to one started from --init/);
    writeFileSync(file, JSON.stringify({ transformer_kwarg: {} }));
    expect(await runCli([...args, '--out', join(tmp, 'arch3'), '--config', file], c.io)).toBe(2);
    expect(c.lines.join('\n')).toMatch(/--config has unknown keys transformer_kwarg/);
  }, 60_000);

  it('refuses a stage that does not exist, an objective the stage lacks, and a missing --init', async () => {
    const c = captureLines();
    const base = ['train', '--data', data, '--out', join(tmp, 'bad'), '--backend', 'wasm', '--quiet'];
    expect(await runCli([...base, '--stage', '4'], c.io)).toBe(2);
    expect(c.lines.join('\n')).toMatch(/stage must be 1, 2 or 3/);
    expect(await runCli([...base, '--stage', '2', '--itc', '0'], c.io)).toBe(2);
    expect(c.lines.join('\n')).toMatch(/stage 2 has no objective itc/);
    expect(await runCli([...base, '--stage', '2', '--init', join(tmp, 'nowhere')], c.io)).toBe(2);
  });
});

describe('vlmo eval and match', () => {
  it('reports Recall@1/5/10 both ways (dual encoder and ITM re-ranked) and ITM accuracy/AUC, all in range', async () => {
    const c = captureLines();
    const args = ['eval', '--checkpoint', run(3), '--data', join(data, 'test.jsonl'), '--rerank-k', '3', '--backend', 'wasm', '--quiet'];
    expect(await runCli([...args, '--json'], c.io), c.lines.join('\n')).toBe(0);
    const r = JSON.parse(c.lines.join('\n')) as VlmoEvalReport;
    expect([r.images, r.texts]).toEqual([10, 10]);
    const ret = r.retrieval!;
    for (const rec of [ret.itc, ret.reranked!]) {
      for (const dir of [rec.imageToText, rec.textToImage]) {
        expect(0 <= dir[1]! && dir[1]! <= dir[5]! && dir[5]! <= dir[10]!).toBe(true);
        expect(dir[10]).toBe(100); // 10 candidates: every match is within the top 10
      }
    }
    expect(ret.reranked!.k).toBe(3);
    // Re-ranking reorders the top 3 only: Recall@5 and @10 are the dual encoder's.
    expect(ret.reranked!.textToImage[5]).toBe(ret.itc.textToImage[5]);
    expect(ret.chance).toEqual({ imageToTextR1: 10, textToImageR1: 10 });
    const itm = r.itm!;
    expect(itm.pairs).toBe(30);
    for (const m of [itm.random, itm.hard]) {
      expect(m.accuracy >= 0 && m.accuracy <= 1).toBe(true);
      expect(m.auc >= 0 && m.auc <= 1).toBe(true);
    }
    const text = captureLines();
    expect(await runCli([...args, '--task', 'retrieval'], text.io)).toBe(0);
    expect(text.lines.join('\n')).toMatch(/dual encoder \(ITC\): image→text R@1 [\d.]+% R@5/);
    expect(text.lines.join('\n')).toMatch(/ITM re-ranked top-3: /);
    expect(text.lines.join('\n')).not.toMatch(/ITM \(/);
    // A stage-1 model has no ITC heads to rank with.
    const bad = captureLines();
    expect(await runCli(['eval', '--checkpoint', run(1), '--data', join(data, 'test.jsonl'), '--backend', 'wasm', '--quiet'], bad.io)).toBe(
      2,
    );
    expect(bad.lines.join('\n')).toMatch(/no ITC heads/);
  }, 60_000);

  it('match gives P(match) and the cosine for every image × text', async () => {
    const c = captureLines();
    const images = [join(data, 'images', 'test', '000010.png'), join(data, 'images', 'test', '000011.png')];
    const args = ['match', '--checkpoint', run(3), ...images, '--text', 'two red circles', '--text', 'a blue square', '--json'];
    expect(await runCli([...args, '--backend', 'wasm'], c.io), c.lines.join('\n')).toBe(0);
    const r = JSON.parse(c.lines.join('\n')) as { itm: number[][]; itc: number[][] };
    expect(r.itm).toHaveLength(2);
    for (const row of r.itm) for (const p of row) expect(p > 0 && p < 1).toBe(true);
    for (const row of r.itc) for (const s of row) expect(Math.abs(s) <= 1 + 1e-5).toBe(true);
  }, 60_000);
});
