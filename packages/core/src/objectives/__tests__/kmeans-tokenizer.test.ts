// The k-means visual tokenizer: usage counts by hand, k-means recovering planted clusters (and re-seeding a
// code that dies), tokens equal to the nearest codeword by brute force, save → load → same tokens, the
// training on synthetic scenes with its usage report, no tensor leaks.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_NORMS } from '../../data/image.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { loadVisualTokenizer, trainVisualTokenizer } from '../../node/visual-tokenizer.js';
import { writeSynthDataset } from '../../node/synth-writer.js';
import { codebookUsage, KMeansVisualTokenizer, RandomPatchTeacher, sphericalKMeans } from '../kmeans-tokenizer.js';

const tmp = mkdtempSync(join(tmpdir(), 'vl-kmeans-'));
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  await writeSynthDataset({ out: join(tmp, 'data'), images: 40, seed: 3, imageSize: 32, captionsPerImage: 1, splits: [0.6, 0.2, 0.2] });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('codebookUsage', () => {
  it('counts used and dead codes, perplexity and the top share by hand', () => {
    // codes 0,0,1,3 of 5: used 3, dead 2; p = (.5, .25, .25): H = .5 ln2 + .5 ln4 = 1.5 ln2 → perplexity 2^1.5.
    const u = codebookUsage([0, 0, 1, 3], 5);
    expect(u).toMatchObject({ vocabSize: 5, tokens: 4, used: 3, dead: 2, topShare: 0.5 });
    expect(u.perplexity).toBeCloseTo(2 ** 1.5, 10);
  });
});

describe('sphericalKMeans', () => {
  it('recovers three planted directions and assigns every point to its own', () => {
    const rng = new Rng(1);
    const dirs = [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
    const pts: number[] = [];
    const truth: number[] = [];
    for (let i = 0; i < 90; i++) {
      const c = i % 3;
      truth.push(c);
      for (let j = 0; j < 3; j++) pts.push(dirs[c]![j]! * 5 + 0.3 * rng.normal());
    }
    const km = sphericalKMeans(Float32Array.from(pts), 3, { k: 3, rng: new Rng(2) });
    // Same partition as the truth (up to a renaming of the codes).
    const map = new Map<number, number>();
    for (let i = 0; i < 90; i++) {
      const a = km.assignments[i]!;
      if (!map.has(a)) map.set(a, truth[i]!);
      expect(map.get(a)).toBe(truth[i]);
    }
    expect(map.size).toBe(3);
    expect(km.meanCosine).toBeGreaterThan(0.95);
  });

  it('re-seeds a code that loses all its points instead of leaving it dead', () => {
    // Two tight clusters and a lone outlier; with k = 3, k-means++ must end with all three codes used.
    const pts = [1, 0, 1, 0.01, 1, -0.01, 0, 1, 0.01, 1, -0.01, 1, -1, -1];
    const km = sphericalKMeans(Float32Array.from(pts), 2, { k: 3, rng: new Rng(0) });
    expect(codebookUsage(km.assignments, 3).dead).toBe(0);
  });

  it('refuses fewer points than codes', () => {
    expect(() => sphericalKMeans(new Float32Array(4), 2, { k: 3, rng: new Rng(0) })).toThrow(/at least 3 points/);
  });
});

describe('KMeansVisualTokenizer', () => {
  it('gives each patch the codeword of largest cosine with its teacher features (brute force)', () => {
    const teacher = new RandomPatchTeacher(4, 3, 6, new Rng(5));
    const tok = new KMeansVisualTokenizer(teacher, 7);
    const rng = new Rng(6);
    tok.setCodebook(Float32Array.from({ length: 42 }, () => rng.normal()));
    const pixels = tf.tensor4d(
      Float32Array.from({ length: 2 * 3 * 8 * 8 }, () => rng.normal()),
      [2, 3, 8, 8],
    );
    const ids = tok.tokenize(pixels);
    expect(ids.shape).toEqual([2, 4]);
    const feats = teacher.features(pixels).arraySync();
    const book = (tok.stateDict().get('codebook') as tf.Tensor).arraySync() as number[][];
    const want = feats.map((f) => {
      const norm = Math.hypot(...f);
      const cos = book.map((c) => c.reduce((s, v, j) => s + (v * f[j]!) / norm, 0));
      return cos.indexOf(Math.max(...cos));
    });
    expect(Array.from(ids.dataSync())).toEqual(want);
    // Patch (0, 1) of image 0 is pixels [:, 0:4, 4:8]: its features equal GELU(W·x + b) by hand.
    const x = (pixels.arraySync() as number[][][][])[0]!.flatMap((ch) => ch.slice(0, 4).flatMap((row) => row.slice(4, 8)));
    const w = (tok.stateDict().get('teacher.weight') as tf.Tensor).arraySync() as number[][];
    const b = (tok.stateDict().get('teacher.bias') as tf.Tensor).arraySync() as number[];
    const pre = w.map((r, i) => r.reduce((s, v, j) => s + v * x[j]!, b[i]!));
    const gelu = (z: number) => tf.tidy(() => tf.mul(z, tf.mul(0.5, tf.add(1, tf.erf(z / Math.SQRT2)))).dataSync()[0]!);
    pre.forEach((z, i) => expect(feats[1]![i]).toBeCloseTo(gelu(z), 4));
    pixels.dispose();
    ids.dispose();
    tok.dispose();
  });

  it('trains on synthetic scenes, reports its codebook usage, and loads back with the same tokens; no leaks', async () => {
    const data = join(tmp, 'data');
    const out = join(tmp, 'tok');
    const trained = await trainVisualTokenizer({
      train: join(data, 'train.jsonl'),
      val: join(data, 'val.jsonl'),
      out,
      vocabSize: 16,
      imageSize: 32,
      patchSize: 8,
      norm: IMAGE_NORMS.inception,
      featureDim: 32,
      seed: 4,
    });
    const f = trained.file;
    expect(f.training.patches).toBe(24 * 16);
    expect(f.usage.train.tokens).toBe(24 * 16);
    expect(f.usage.train.used + f.usage.train.dead).toBe(16);
    // Spherical k-means with re-seeding: on the data it was fitted to no code is dead.
    expect(f.usage.train.dead).toBe(0);
    expect(f.usage.val?.tokens).toBe(8 * 16);
    expect(JSON.parse(readFileSync(join(out, 'visual_tokenizer.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(f)));

    const loaded = await loadVisualTokenizer(out);
    const rng = new Rng(9);
    const pixels = tf.tensor4d(
      Float32Array.from({ length: 3 * 3 * 32 * 32 }, () => rng.uniform() * 2 - 1),
      [3, 3, 32, 32],
    );
    const a = trained.tokenizer.tokenize(pixels);
    const b = loaded.tokenizer.tokenize(pixels);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    a.dispose();
    b.dispose();
    const before = tf.memory().numTensors;
    loaded.tokenizer.tokenize(pixels).dispose();
    expect(tf.memory().numTensors).toBe(before);
    pixels.dispose();
    trained.tokenizer.dispose();
    loaded.tokenizer.dispose();
  }, 60_000);
});
