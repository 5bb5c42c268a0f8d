// CoCa and CLIP beyond the fixtures: other seeds and shapes (vision width ≠ embed dim, other head counts,
// vocabularies and context lengths) with O(1) random weights. Cached and uncached generation agree on the
// ids for every search; open_clip's shifted pad mask and causality hold as derived by hand; the loss
// matches a hand computation and its gradients finite differences; bad inputs give typed errors; no leaks.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { centralDifference, initRuntime, isVlError, parameterGradients, Rng } from '@vl/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadClip, loadCoca, saveOpenClip } from '../checkpoint.js';
import { parseOpenClipConfig } from '../config.js';
import { generateCoca } from '../generation.js';
import { clipLoss, cocaLoss } from '../loss.js';
import { Clip, CoCa } from '../model.js';
import { fitText } from '../text.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/coca-openclip/', import.meta.url));
let tmp = '';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  tmp = await mkdtemp(join(tmpdir(), 'coca-model-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const V = 37;
const SOT = V - 2;
const EOT = V - 1;

/** A CoCa shaped unlike the fixture: W 16 ≠ D 12, 2 vision heads, 4 queries / 3 pooler heads, 3 decoder heads. */
function otherCoca(seed: number): CoCa {
  const config = parseOpenClipConfig({
    model_cfg: {
      embed_dim: 12,
      vision_cfg: {
        image_size: 16,
        patch_size: 8,
        width: 16,
        head_width: 8,
        layers: 2,
        attentional_pool: true,
        attn_pooler_queries: 4,
        attn_pooler_heads: 3,
      },
      text_cfg: { context_length: 9, vocab_size: V, width: 12, heads: 2, layers: 2, embed_cls: true },
      multimodal_cfg: { context_length: 9, vocab_size: V, width: 12, heads: 3, layers: 2 },
      custom_text: true,
    },
  });
  return randomize(new CoCa(config, { seed }), seed);
}

/** The fixtures' recipe: weights 0.2·N(0,1), biases 0.1·N, LayerNorm gains 1 + 0.1·N. */
function randomize<M extends CoCa | Clip>(model: M, seed: number): M {
  const rng = new Rng(seed + 100);
  const dict = new Map<string, { dtype: 'float32'; shape: number[]; data: Float32Array }>();
  for (const [name, p] of model.namedParameters()) {
    const data = new Float32Array(p.size);
    const gain = /(ln_|ln\.)[^.]*\.weight$|ln_final\.weight$|ln_post\.weight$|ln_pre\.weight$|ln_q\.weight$|ln_k\.weight$/.test(name);
    const bias = name.endsWith('bias');
    for (let i = 0; i < data.length; i++)
      data[i] = name === 'logit_scale' ? Math.log(1 / 0.07) : (gain ? 1 : 0) + (bias || gain ? 0.1 : 0.2) * rng.normal();
    dict.set(name, { dtype: 'float32', shape: [...p.shape], data });
  }
  model.loadStateDict(dict);
  model.eval();
  return model;
}

const image = (seed: number, b: number, size = 16) => {
  const rng = new Rng(seed);
  return tf.tensor4d(
    Float32Array.from({ length: b * 3 * size * size }, () => rng.normal()),
    [b, 3, size, size],
  );
};

describe('CoCa with other shapes and seeds', () => {
  it('cached and uncached generation give the same ids for every search', async () => {
    for (const seed of [1, 2]) {
      const model = otherCoca(seed);
      const img = image(seed, 3);
      const calls = [
        { generationType: 'top_k' as const, topK: 1 },
        { generationType: 'top_k' as const, topK: 1, repetitionPenalty: 1.3 },
        // A prompt with a pad inside: exercises the shifted pad mask in the cached text tower.
        {
          generationType: 'top_k' as const,
          topK: 1,
          text: [
            [SOT, 5, 0, 7],
            [SOT, 3, 4, 9],
            [SOT, 0, 2, 2],
          ],
        },
        { generationType: 'beam_search' as const, numBeams: 4, numBeamGroups: 2 },
        { generationType: 'beam_search' as const, numBeams: 3, numBeamGroups: 1 },
      ];
      for (const call of calls) {
        const opts = { seqLen: 9, minSeqLen: 3, sotTokenId: SOT, eosTokenId: EOT, ...call };
        const cached = await generateCoca(model, img, { ...opts, cache: true });
        const full = await generateCoca(model, img, { ...opts, cache: false });
        expect(cached, JSON.stringify(call)).toEqual(full);
        for (const row of cached) expect(row.length).toBeLessThanOrEqual(9);
      }
      // Nucleus sampling draws from the same distributions with the same generator.
      const sampled = { seqLen: 9, minSeqLen: 3, sotTokenId: SOT, eosTokenId: EOT, generationType: 'top_p' as const, topP: 0.9 };
      const a = await generateCoca(model, img, { ...sampled, rng: new Rng(7), cache: true });
      const b = await generateCoca(model, img, { ...sampled, rng: new Rng(7), cache: false });
      expect(a).toEqual(b);
      img.dispose();
      model.dispose();
    }
  });

  it('forces eos at seqLen − 1 and pads finished rows with 0 (open_clip’s sampling loop)', async () => {
    const model = otherCoca(3);
    const img = image(3, 2);
    const ids = await generateCoca(model, img, { seqLen: 6, minSeqLen: 2, sotTokenId: SOT, eosTokenId: EOT, generationType: 'top_k' });
    for (const row of ids) {
      const end = row.findIndex((t, i) => i > 0 && (t === EOT || t === 0));
      expect(end).toBeGreaterThan(0);
      expect(row.slice(end + 1).every((t) => t === 0)).toBe(true);
      if (row.length === 6 && end === 5) expect(row[5]).toBe(EOT);
    }
    img.dispose();
    model.dispose();
  });

  it('text tokens are causal, and a token after a pad is hidden from every later position (legacy mask)', () => {
    const model = otherCoca(4);
    const tokens = (ids: number[]) =>
      tf.tidy(() => model.encodeTextTokens(tf.tensor2d([ids], undefined, 'int32'), { normalize: false }).tokens.arraySync()[0]!);
    const base = [SOT, 4, 0, 6, 8, 10, EOT];
    const a = tokens(base);
    // Changing the last token changes nothing before it.
    const b = tokens([...base.slice(0, 6), 12]);
    for (let t = 0; t < 6; t++) for (let k = 0; k < 12; k++) expect(b[t]![k]).toBeCloseTo(a[t]![k]!, 6);
    // Key 3 is masked for every query because ids[2] is a pad: changing ids[3] (6 → 9, both non-pad)
    // changes position 3 itself (its own residual) and nothing else.
    const c = tokens([SOT, 4, 0, 9, 8, 10, EOT]);
    for (let t = 0; t < 7; t++) {
      const diff = Math.max(...c[t]!.map((v, k) => Math.abs(v - a[t]![k]!)));
      if (t === 3) expect(diff).toBeGreaterThan(1e-3);
      else expect(diff, `position ${t}`).toBeLessThan(1e-5);
    }
    model.dispose();
  });

  it('CoCaLoss: contrastive + 2 × caption from one forward; gradients match finite differences', () => {
    const model = otherCoca(5);
    const img = image(5, 2);
    const text = tf.tensor2d(
      [
        [SOT, 3, 4, 5, 6, EOT, 0, 0, 0],
        [SOT, 7, 8, EOT, 0, 0, 0, 0, 0],
      ],
      undefined,
      'int32',
    );
    const loss = () =>
      tf.tidy(() => {
        const f = model.forward(img, text);
        return cocaLoss({ ...f, labels: f.labels as tf.Tensor }).total;
      });
    // The pieces, by hand: the caption CE over the non-pad labels, the contrastive CE both ways.
    tf.tidy(() => {
      const f = model.forward(img, text);
      const logits = f.logits.arraySync();
      const labels = (f.labels as tf.Tensor2D).arraySync();
      let sum = 0;
      let n = 0;
      labels.forEach((row, b) =>
        row.forEach((y, t) => {
          if (y === 0) return;
          const l = logits[b]![t]!;
          const max = Math.max(...l);
          sum += Math.log(l.reduce((s, v) => s + Math.exp(v - max), 0)) + max - l[y]!;
          n++;
        }),
      );
      expect(n).toBe(8); // labels = text[:, 1:]: 5 + 3 non-pad ids
      const sims = tf.matMul(f.imageFeatures, f.textFeatures, false, true).arraySync() as number[][];
      const s = Math.exp(Math.log(1 / 0.07));
      const ce = (row: number[], i: number) => {
        const z = row.map((v) => v * s);
        const m = Math.max(...z);
        return Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0)) + m - z[i]!;
      };
      const rowsCe = (ce(sims[0]!, 0) + ce(sims[1]!, 1)) / 2;
      const colsCe = (ce([sims[0]![0]!, sims[1]![0]!], 0) + ce([sims[0]![1]!, sims[1]![1]!], 1)) / 2;
      const out = cocaLoss({ ...f, labels: f.labels as tf.Tensor });
      expect(out.caption.dataSync()[0]).toBeCloseTo((2 * sum) / n, 4);
      expect(out.contrastive.dataSync()[0]).toBeCloseTo((rowsCe + colsCe) / 2, 4);
      expect(out.total.dataSync()[0]).toBeCloseTo((2 * sum) / n + (rowsCe + colsCe) / 2, 4);
    });
    const { grads } = parameterGradients(model, loss);
    const params = new Map(model.namedParameters());
    const probes = [
      'logit_scale',
      'visual.attn_pool.query',
      'text.cls_emb',
      'text_decoder.cross_attn.1.ln_1_kv.weight',
      'visual.conv1.weight',
      'text.positional_embedding',
    ];
    for (const name of probes) {
      const p = params.get(name)!;
      const g = grads.get(name)!;
      for (const index of [0, Math.floor(p.size / 2)]) {
        const fd = centralDifference(p, index, () => tf.tidy(() => loss().dataSync()[0] as number), 1e-2);
        const an = g.data[index] as number;
        expect(Math.abs(fd - an), `${name}[${index}]: fd ${fd} vs ${an}`).toBeLessThan(5e-3 + 2e-2 * Math.abs(an));
      }
    }
    tf.dispose([img, text]);
    model.dispose();
  });

  it('forward and generation do not leak tensors', async () => {
    const model = otherCoca(6);
    const img = image(6, 2);
    const text = tf.tensor2d(
      [
        [SOT, 3, EOT, 0, 0],
        [SOT, 4, 5, 6, EOT],
      ],
      undefined,
      'int32',
    );
    const run = async () => {
      tf.tidy(() => {
        const f = model.forward(img, text);
        cocaLoss({ ...f, labels: f.labels as tf.Tensor });
      });
      await generateCoca(model, img, { seqLen: 7, minSeqLen: 2, sotTokenId: SOT, eosTokenId: EOT, numBeams: 4, numBeamGroups: 2 });
      await generateCoca(model, img, { seqLen: 7, minSeqLen: 2, sotTokenId: SOT, eosTokenId: EOT, generationType: 'top_k', cache: true });
    };
    await run();
    const before = tf.memory().numTensors;
    await run();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([img, text]);
    model.dispose();
  });

  it('saves and reloads to the same outputs', async () => {
    const model = otherCoca(7);
    const dir = join(tmp, 'coca-7');
    await saveOpenClip(model, dir);
    const back = await loadCoca(dir);
    const img = image(7, 1);
    const a = model.encodeImage(img);
    const b = back.encodeImage(img);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([img, a, b]);
    model.dispose();
    back.dispose();
  });
});

describe('pooling ablation (ours, not open_clip)', () => {
  it("contrastivePool 'mean' / 'cls' take the contrastive feature from the trunk through their own head", () => {
    for (const mode of ['mean', 'cls'] as const) {
      const config = parseOpenClipConfig({
        model_cfg: {
          embed_dim: 12,
          vision_cfg: {
            image_size: 16,
            patch_size: 8,
            width: 16,
            head_width: 8,
            layers: 1,
            attentional_pool: true,
            attn_pooler_queries: 3,
            attn_pooler_heads: 3,
            contrastive_pool: mode,
          },
          text_cfg: { context_length: 6, vocab_size: V, width: 12, heads: 2, layers: 1, embed_cls: true },
          multimodal_cfg: { context_length: 6, vocab_size: V, width: 12, heads: 3, layers: 1 },
          custom_text: true,
        },
      });
      const model = randomize(new CoCa(config, { seed: 2 }), 2);
      const keys = [...model.stateDict().keys()];
      expect(keys).toContain('visual.contrastive_ln.weight');
      expect(keys).toContain('visual.contrastive_proj');
      const img = image(2, 2);
      tf.tidy(() => {
        const trunk = model.visual.trunk(img);
        const src = mode === 'mean' ? tf.mean(trunk, 1) : tf.reshape(tf.slice(trunk, [0, 0, 0], [2, 1, 16]), [2, 16]);
        const expected = tf.matMul(model.visual.contrastiveLn!.forward(src), model.visual.contrastiveProj!);
        const got = model.encodeImage(img, { normalize: false });
        expect(tf.max(tf.abs(tf.sub(got, expected))).dataSync()[0]).toBeLessThan(1e-6);
        // Captioning tokens still come from the pooler (queries 1…).
        expect(model.encodeImageTokens(img).tokens.shape).toEqual([2, 2, 12]);
      });
      img.dispose();
      model.dispose();
    }
  });

  it('open_clip configs never carry the switch, and CLIP refuses it', () => {
    const clip = {
      embed_dim: 8,
      vision_cfg: { image_size: 16, patch_size: 8, width: 16, head_width: 4, layers: 1, contrastive_pool: 'mean' },
      text_cfg: { context_length: 6, vocab_size: V, width: 12, heads: 3, layers: 1 },
    };
    expect(() => new Clip(parseOpenClipConfig({ model_cfg: clip }))).toThrow(/needs the attentional pooler/);
    const plain = otherCoca(1);
    expect(JSON.stringify(plain.config)).not.toContain('contrastivePool');
    plain.dispose();
  });
});

describe('CLIP with other shapes', () => {
  it('argmax pooling reads the eot position; the contrastive loss matches a hand computation', () => {
    const config = parseOpenClipConfig({
      model_cfg: {
        embed_dim: 8,
        vision_cfg: { image_size: 16, patch_size: 8, width: 16, head_width: 4, layers: 1 },
        text_cfg: { context_length: 6, vocab_size: V, width: 12, heads: 3, layers: 2 },
      },
    });
    const model = randomize(new Clip(config, { seed: 1 }), 1);
    const ids = tf.tensor2d([fitText([SOT, 3, 4, EOT], 6, EOT), fitText([SOT, 5, EOT], 6, EOT)], undefined, 'int32');
    // Tokens after the eot cannot reach the feature (causal mask, pooled at the eot).
    const ids2 = tf.tensor2d(
      [
        [SOT, 3, 4, EOT, 9, 9],
        [SOT, 5, EOT, 1, 2, 3],
      ],
      undefined,
      'int32',
    );
    const a = model.encodeText(ids);
    const b = model.encodeText(ids2);
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-6);
    const img = image(1, 2);
    const f = model.forward(img, ids);
    const loss = clipLoss(f.imageFeatures, f.textFeatures, f.logitScale).dataSync()[0] as number;
    const sims = tf.matMul(f.imageFeatures, f.textFeatures, false, true).arraySync() as number[][];
    const s = f.logitScale.dataSync()[0] as number;
    const ce = (row: number[], i: number) => {
      const m = Math.max(...row.map((v) => v * s));
      return Math.log(row.reduce((acc, v) => acc + Math.exp(v * s - m), 0)) + m - row[i]! * s;
    };
    const expected = (ce(sims[0]!, 0) + ce(sims[1]!, 1) + ce([sims[0]![0]!, sims[1]![0]!], 0) + ce([sims[0]![1]!, sims[1]![1]!], 1)) / 4;
    expect(loss).toBeCloseTo(expected, 4);
    tf.dispose([ids, ids2, a, b, img, f.imageFeatures, f.textFeatures, f.logitScale]);
    model.dispose();
  });

  it('clamps logit_scale to [0, log 100] as open_clip_train does', () => {
    const config = parseOpenClipConfig({
      model_cfg: {
        embed_dim: 8,
        vision_cfg: { image_size: 16, patch_size: 8, width: 16, head_width: 4, layers: 1 },
        text_cfg: { context_length: 6, vocab_size: V, width: 12, heads: 3, layers: 1 },
      },
    });
    const model = new Clip(config);
    model.logitScale.assign(tf.scalar(9));
    model.clampLogitScale();
    expect(model.logitScale.dataSync()[0]).toBeCloseTo(Math.log(100), 5);
    model.logitScale.assign(tf.scalar(-1));
    model.clampLogitScale();
    expect(model.logitScale.dataSync()[0]).toBe(0);
    model.dispose();
  });
});

describe('bad input', () => {
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      return isVlError(e) ? `${e.code}: ${e.message}` : String(e);
    }
    return 'no error';
  };

  it('a CLIP checkpoint given to CoCa, and the reverse, is a typed error naming the model', async () => {
    expect(await code(loadCoca(join(FIXTURES, 'clip-seed0')))).toMatch(
      /^CHECKPOINT_INVALID: .*this is an open_clip CLIP checkpoint .*not CoCa/,
    );
    expect(await code(loadClip(join(FIXTURES, 'coca-seed0', 'pytorch_model.pth')))).toMatch(
      /^CHECKPOINT_INVALID: .*this is an open_clip CoCa checkpoint .*not CLIP/,
    );
  });

  it('text longer than the context is truncated as open_clip’s tokenizer does; unfitted it is a typed error', () => {
    expect(fitText([SOT, 1, 2, 3, 4, 5, 6, EOT], 5, EOT)).toEqual([SOT, 1, 2, 3, EOT]);
    expect(fitText([SOT, 1, EOT], 5, EOT)).toEqual([SOT, 1, EOT, 0, 0]);
    const model = otherCoca(8);
    const long = tf.tensor2d([Array.from({ length: 12 }, (_, i) => (i === 0 ? SOT : 3))], undefined, 'int32');
    let message = '';
    try {
      model.encodeText(long);
    } catch (e) {
      message = isVlError(e) ? `${e.code}: ${e.message}` : String(e);
    }
    expect(message).toMatch(/^SHAPE_MISMATCH: .*text has 12 tokens, more than the context length 9/);
    const fitted = model.encodeText(tf.tensor2d([fitText(Array.from(long.dataSync()), 9, EOT)], undefined, 'int32'));
    expect(fitted.shape).toEqual([1, 12]);
    tf.dispose([long, fitted]);
    model.dispose();
  });
});
