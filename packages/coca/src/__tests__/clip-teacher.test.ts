// Core's CLIP-vision-tower teacher (the k-means visual tokenizer's semantic teacher, which core builds
// without depending on this package) computes what this package's VisionTower computes: ln_post over the
// trunk's tokens, CLS dropped, on pixels re-normalised from the caller's normalisation to CLIP's. Checked on
// the open_clip CLIP fixture (its tower is verified against open_clip by parity.test.ts).
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { loadClipVisionTeacher } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadClip } from '../checkpoint.js';

const CLIP = fileURLToPath(new URL('../../../../fixtures/coca-openclip/clip-seed0/', import.meta.url));
const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('loadClipVisionTeacher (core) vs VisionTower', () => {
  it('gives the patch tokens of the tower after ln_post, on pixels normalised as the caller does; no leaks', async () => {
    const clip = await loadClip(CLIP);
    const { teacher } = await loadClipVisionTeacher(CLIP, { inputNorm: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } });
    expect(teacher.dim).toBe(32);
    const rng = new Rng(11);
    const raw = Float32Array.from({ length: 2 * 3 * 32 * 32 }, () => rng.uniform()); // pixels in [0, 1]
    const half = raw.map((v) => (v - 0.5) / 0.5);
    const towerPixels = raw.map((v, i) => {
      const ch = Math.floor(i / 1024) % 3;
      return (v - MEAN[ch]!) / STD[ch]!;
    });
    const expected = tf.tidy(() => {
      const x = clip.visual.lnPost.forward(clip.visual.trunk(tf.tensor4d(towerPixels, [2, 3, 32, 32])));
      return tf.reshape(tf.slice(x, [0, 1, 0], [2, 16, 32]), [32, 32]);
    });
    const px = tf.tensor4d(half, [2, 3, 32, 32]);
    const got = teacher.features(px);
    expect(got.shape).toEqual([32, 32]);
    const e = expected.dataSync();
    const g = got.dataSync();
    let worst = 0;
    for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(e[i]! - g[i]!));
    expect(worst).toBeLessThan(1e-4);
    const before = tf.memory().numTensors;
    teacher.features(px).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([expected, got, px]);
    teacher.dispose();
    clip.dispose();
  });
});
