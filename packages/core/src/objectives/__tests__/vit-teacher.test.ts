// The ViT (CLIP vision tower) teacher of the k-means tokenizer: its features by hand for a tower without
// blocks (patch embedding, class token, positions, ln_pre, ln_post, the input re-normalisation), reading a
// CLIP folder (visual.* only), a tokenizer over it saved and loaded back with the same tokens, and the typed
// errors for a missing or mismatched teacher. The full tower against coca's VisionTower is in
// packages/coca/src/__tests__/clip-teacher.test.ts (core cannot import coca).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_NORMS, type ImageNorm } from '../../data/image.js';
import { stateDictToHost } from '../../nn/state-dict.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../node/safetensors-file.js';
import { writeSynthDataset } from '../../node/synth-writer.js';
import { loadVisualTokenizer, trainVisualTokenizer } from '../../node/visual-tokenizer.js';
import { loadClipVisionTeacher } from '../../node/vit-teacher-file.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { type VitTeacherConfig, VitPatchTeacher } from '../vit-teacher.js';

const tmp = mkdtempSync(join(tmpdir(), 'vl-vit-teacher-'));
const HALF: ImageNorm = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

function config(o: Partial<VitTeacherConfig> = {}): VitTeacherConfig {
  return {
    imageSize: 32,
    patchSize: 8,
    channels: 3,
    width: 16,
    layers: 2,
    heads: 2,
    mlpWidth: 32,
    activation: 'gelu',
    layerNormEps: 1e-5,
    towerNorm: { mean: [...IMAGE_NORMS.clip.mean], std: [...IMAGE_NORMS.clip.std] },
    inputNorm: { mean: [...HALF.mean], std: [...HALF.std] },
    ...o,
  };
}

/** Every parameter to seeded O(1) values (LayerNorm gains and biases included, so they are tested). */
function randomise(m: VitPatchTeacher, seed: number): void {
  const rng = new Rng(seed);
  for (const [, p] of m.namedParameters()) {
    p.assign(
      tf.tensor(
        Float32Array.from({ length: p.size }, () => rng.normal() * 0.5),
        p.shape,
      ),
    );
  }
}

/** A CLIP folder as `vl train clip` writes it: config.json + model.safetensors with visual.* and a text tower. */
async function writeClipFolder(dir: string, teacher: VitPatchTeacher, o: { attentionalPool?: boolean } = {}): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const c = teacher.config;
  const visionCfg = {
    image_size: c.imageSize,
    patch_size: c.patchSize,
    width: c.width,
    layers: c.layers,
    head_width: c.width / c.heads,
    mlp_ratio: c.mlpWidth / c.width,
    attentional_pool: o.attentionalPool ?? false,
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_cfg: { embed_dim: 8, vision_cfg: visionCfg, text_cfg: { width: 8 } } }));
  const host = await stateDictToHost(teacher);
  const tensors: Record<string, (typeof host)[string]> = {};
  for (const [k, v] of Object.entries(host)) tensors[`visual.${k}`] = v;
  // Not part of the teacher: the projection after CLS pooling and the text tower.
  tensors['visual.proj'] = { dtype: 'float32', fileDtype: 'F32', shape: [c.width, 8], data: new Float32Array(c.width * 8) };
  tensors['token_embedding.weight'] = { dtype: 'float32', fileDtype: 'F32', shape: [4, 8], data: new Float32Array(32) };
  await writeSafetensorsFile(join(dir, 'model.safetensors'), tensors);
}

const pixelsOf = (n: number, seed: number): tf.Tensor4D => {
  const rng = new Rng(seed);
  return tf.tensor4d(
    Float32Array.from({ length: n * 3 * 32 * 32 }, () => rng.uniform() * 2 - 1),
    [n, 3, 32, 32],
  );
};

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  await writeSynthDataset({ out: join(tmp, 'data'), images: 30, seed: 5, imageSize: 32, captionsPerImage: 1, splits: [0.6, 0.2, 0.2] });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('VitPatchTeacher', () => {
  it('computes ln_post(ln_pre(conv(renormalised x) + pos)) of each patch by hand when the tower has no blocks', () => {
    // 1 image, 3 channels, 4×4 px, patches of 2 → 4 patches, width 4.
    const c = config({ imageSize: 4, patchSize: 2, width: 4, heads: 1, layers: 0, mlpWidth: 8 });
    const t = new VitPatchTeacher(c, new Rng(1));
    randomise(t, 2);
    const sd = Object.fromEntries([...t.stateDict()].map(([k, v]) => [k, Array.from(v.dataSync())]));
    const rng = new Rng(3);
    const x = Float32Array.from({ length: 3 * 4 * 4 }, () => rng.uniform() * 2 - 1);
    const got = t.features(tf.tensor4d(x, [1, 3, 4, 4]));
    expect(got.shape).toEqual([4, 4]);
    const ln = (v: number[], w: number[], b: number[]) => {
      const m = v.reduce((s, z) => s + z, 0) / v.length;
      const varr = v.reduce((s, z) => s + (z - m) ** 2, 0) / v.length;
      return v.map((z, i) => ((z - m) / Math.sqrt(varr + 1e-5)) * w[i]! + b[i]!);
    };
    const expected: number[] = [];
    for (let gy = 0; gy < 2; gy++) {
      for (let gx = 0; gx < 2; gx++) {
        const n = gy * 2 + gx;
        const e: number[] = [];
        for (let o = 0; o < 4; o++) {
          let s = 0;
          for (let ch = 0; ch < 3; ch++) {
            for (let py = 0; py < 2; py++) {
              for (let px = 0; px < 2; px++) {
                const raw = x[ch * 16 + (gy * 2 + py) * 4 + gx * 2 + px]! * 0.5 + 0.5; // undo inputNorm
                const towerPixel = (raw - c.towerNorm.mean[ch]!) / c.towerNorm.std[ch]!;
                s += sd['conv1.weight']![((o * 3 + ch) * 2 + py) * 2 + px]! * towerPixel;
              }
            }
          }
          e.push(s + sd['positional_embedding']![(1 + n) * 4 + o]!);
        }
        expected.push(...ln(ln(e, sd['ln_pre.weight']!, sd['ln_pre.bias']!), sd['ln_post.weight']!, sd['ln_post.bias']!));
      }
    }
    const g = Array.from(got.dataSync());
    expected.forEach((v, i) => expect(g[i]).toBeCloseTo(v, 4));
    got.dispose();
    t.dispose();
  });

  it('reads the visual.* tensors of a CLIP folder (not proj, not the text tower) and refuses CoCa and empty folders', async () => {
    const src = new VitPatchTeacher(config(), new Rng(4));
    randomise(src, 5);
    const dir = join(tmp, 'clip');
    await writeClipFolder(join(dir, 'model'), src);
    const { teacher, source } = await loadClipVisionTeacher(dir, { inputNorm: HALF });
    expect(source.path).toBe(join(dir, 'model'));
    expect(teacher.config).toEqual(src.config);
    const px = pixelsOf(2, 6);
    const a = src.features(px);
    const b = teacher.features(px);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    const before = tf.memory().numTensors;
    teacher.features(px).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b, px]);
    teacher.dispose();

    await writeClipFolder(join(tmp, 'coca'), src, { attentionalPool: true });
    await expect(loadClipVisionTeacher(join(tmp, 'coca'), { inputNorm: HALF })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      subject: join(tmp, 'coca', 'config.json'),
    });
    mkdirSync(join(tmp, 'empty'));
    await expect(loadClipVisionTeacher(join(tmp, 'empty'), { inputNorm: HALF })).rejects.toMatchObject({
      code: 'CHECKPOINT_INVALID',
      subject: join(tmp, 'empty'),
    });
    src.dispose();
  });
});

describe('k-means tokenizer over a ViT teacher', () => {
  it('trains, saves the teacher inside the folder, loads back with identical token ids; missing or mismatched teacher = typed error', async () => {
    const src = new VitPatchTeacher(config(), new Rng(7));
    randomise(src, 8);
    const clip = join(tmp, 'clip2');
    await writeClipFolder(clip, src);
    src.dispose();
    const { teacher, source } = await loadClipVisionTeacher(clip, { inputNorm: HALF });
    const out = join(tmp, 'tok');
    const data = join(tmp, 'data');
    const trained = await trainVisualTokenizer({
      train: join(data, 'train.jsonl'),
      val: join(data, 'val.jsonl'),
      out,
      vocabSize: 12,
      imageSize: 32,
      patchSize: 8,
      norm: HALF,
      teacher: { module: teacher, file: { kind: 'vit', dim: 16, config: teacher.config, source: { kind: 'clip', ...source } } },
      seed: 1,
    });
    expect(trained.file.teacher).toMatchObject({ kind: 'vit', dim: 16, source: { kind: 'clip', path: clip } });
    expect(trained.file.usage.train.tokens).toBe(18 * 16);
    expect(trained.file.usage.train.dead).toBe(0);

    // The CLIP folder is not needed any more: the tokenizer folder embeds the tower.
    rmSync(clip, { recursive: true });
    const loaded = await loadVisualTokenizer(out);
    expect(loaded.tokenizer.teacher).toBeInstanceOf(VitPatchTeacher);
    const px = pixelsOf(3, 9);
    const a = trained.tokenizer.tokenize(px);
    const b = loaded.tokenizer.tokenize(px);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    // And they are the codes of the teacher's features (brute-force largest cosine).
    const feats = trained.tokenizer.teacher.features(px);
    const f = feats.arraySync();
    const cb = (trained.tokenizer.stateDict().get('codebook') as tf.Tensor).arraySync() as number[][];
    const ids = Array.from(a.dataSync());
    f.forEach((v, i) => {
      const cos = cb.map((c) => c.reduce((s, z, j) => s + z * v[j]!, 0));
      expect(ids[i]).toBe(cos.indexOf(Math.max(...cos)));
    });
    const before = tf.memory().numTensors;
    loaded.tokenizer.tokenize(px).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b, px, feats]);
    trained.tokenizer.dispose();
    loaded.tokenizer.dispose();

    // Weights without the teacher: the JSON says vit, the safetensors holds only the codebook.
    const bad = join(tmp, 'tok-no-teacher');
    mkdirSync(bad);
    copyFileSync(join(out, 'visual_tokenizer.json'), join(bad, 'visual_tokenizer.json'));
    const { tensors } = await readSafetensorsFile(join(out, 'visual_tokenizer.safetensors'));
    await writeSafetensorsFile(join(bad, 'visual_tokenizer.safetensors'), { codebook: tensors.get('codebook')! });
    const n0 = tf.memory().numTensors;
    await expect(loadVisualTokenizer(bad)).rejects.toMatchObject({
      code: 'CHECKPOINT_INVALID',
      subject: join(bad, 'visual_tokenizer.safetensors'),
    });
    // A teacher of another width than the JSON says: the strict load names the file.
    const wide = join(tmp, 'tok-mismatch');
    mkdirSync(wide);
    const file = JSON.parse(readFileSync(join(out, 'visual_tokenizer.json'), 'utf8'));
    file.teacher.config.width = 24;
    file.teacher.config.heads = 3;
    file.teacher.dim = 24;
    writeFileSync(join(wide, 'visual_tokenizer.json'), JSON.stringify(file));
    copyFileSync(join(out, 'visual_tokenizer.safetensors'), join(wide, 'visual_tokenizer.safetensors'));
    await expect(loadVisualTokenizer(wide)).rejects.toMatchObject({
      code: 'STATE_DICT_MISMATCH',
      subject: join(wide, 'visual_tokenizer.safetensors'),
    });
    // No weights file at all.
    rmSync(join(wide, 'visual_tokenizer.safetensors'));
    await expect(loadVisualTokenizer(wide)).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID', subject: wide });
    expect(tf.memory().numTensors).toBe(n0);
  }, 60_000);
});
