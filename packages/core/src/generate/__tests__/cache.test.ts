// Cached decoding equals full recomputation, batched equals per-row, and no generate call leaks a tensor
// (functional, in-place and no cache).
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { generate } from '../generate.js';
import type { DecoderStep, GenerateOptions } from '../types.js';
import { A, B, BOS, EOS, MARKOV_PROBS, markovDecoder, markovFromProbs, PAD, TinyAttentionDecoder } from './toy-decoders.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const prompts = [
  [BOS, 4, 7],
  [BOS, 9, 3],
  [BOS, 5, 5],
];
const common = { inputIds: prompts, maxNewTokens: 10, eosTokenId: EOS, padTokenId: PAD, outputScores: true };

/** Named option sets covering every mode. Sampling modes get a fresh Rng per call. */
const modes: Record<string, () => GenerateOptions> = {
  greedy: () => ({ ...common }),
  'greedy + penalties': () => ({ ...common, repetitionPenalty: 1.3, minLength: 6 }),
  beam: () => ({ ...common, numBeams: 3, numReturnSequences: 2, lengthPenalty: 0.7 }),
  'beam, early stop': () => ({ ...common, numBeams: 2, earlyStopping: true }),
  sample: () => ({ ...common, doSample: true, topK: 5, topP: 0.9, temperature: 0.8, numReturnSequences: 2, rng: new Rng(7) }),
  'beam sample': () => ({ ...common, numBeams: 2, doSample: true, topK: 4, rng: new Rng(8) }),
};

function expectClose(a: number[] | undefined, b: number[] | undefined, tol: number) {
  expect(a?.length).toBe(b?.length);
  (a ?? []).forEach((v, i) => expect(Math.abs(v - (b?.[i] as number))).toBeLessThan(tol));
}

describe('cached decoding', () => {
  let model: TinyAttentionDecoder;
  beforeAll(() => {
    model = new TinyAttentionDecoder(21);
  });

  it.each(Object.keys(modes))('%s: KV cache (functional and in-place) equals full recomputation', async (name) => {
    const make = modes[name] as () => GenerateOptions;
    const reference = await generate(model.uncached(), make());
    const cached = await generate(model.cached(), make());
    const bias = tf.zeros([model.vocab]) as tf.Tensor1D;
    const inPlace = await generate(model.inPlace(bias), make());
    expect(bias.isDisposed).toBe(false); // a tensor the cache points at but did not create survives
    bias.dispose();
    for (const out of [cached, inPlace]) {
      expect(out.sequences).toEqual(reference.sequences);
      expectClose(out.scores, reference.scores, 1e-4);
    }
  });

  it('returned scores equal teacher-forced log-probs of the returned sequences (catches cache reordering errors)', async () => {
    // Cached and uncached decoders both carry history through reorderCache, so a reordering bug in
    // generate would corrupt both alike; a stateless forward over each returned sequence cannot be.
    const lengthPenalty = 0.7;
    for (const [opts, isBeam] of [
      [{ ...common, numBeams: 3, numReturnSequences: 3, lengthPenalty }, true],
      [{ ...common }, false],
    ] as const) {
      const out = await generate(model.cached(), opts);
      out.sequences.forEach((seq, i) => {
        const end = seq.indexOf(EOS, 3);
        const tokens = end >= 0 ? seq.slice(0, end + 1) : seq;
        const logits = tf.tidy(
          () => tf.logSoftmax(model.forwardFull(tf.tensor2d([tokens], undefined, 'int32'))).arraySync()[0] as number[][],
        );
        let sum = 0;
        for (let t = 3; t < tokens.length; t++) sum += (logits[t - 1] as number[])[tokens[t] as number] as number;
        // HF length: the row with the prompt, an EOS hypothesis stored without its EOS
        const len = end >= 0 ? tokens.length - 1 : tokens.length;
        const expected = isBeam ? sum / len ** lengthPenalty : sum;
        expect(Math.abs((out.scores?.[i] as number) - expected)).toBeLessThan(1e-4);
      });
    }
  });

  it('the full-recompute reference really recomputes (prompt plus one forward per new token)', async () => {
    const probe = new TinyAttentionDecoder(21);
    const out = await generate(probe.uncached(), { inputIds: [[BOS, 4]], maxNewTokens: 5 });
    expect(out.sequences[0]).toHaveLength(7);
    expect(probe.fullSteps).toBe(5);
  });
});

describe('batched generation', () => {
  let model: TinyAttentionDecoder;
  beforeAll(() => {
    model = new TinyAttentionDecoder(21); // a seed whose rows end at different steps
  });

  /** Per-row output padded to the batch's width, as a batched call returns it. */
  const padTo = (seq: number[], width: number) => [...seq, ...Array.from({ length: width - seq.length }, () => PAD)];

  it.each(['greedy', 'greedy + penalties', 'beam', 'beam, early stop'])('%s: batched equals per-row', async (name) => {
    const make = modes[name] as () => GenerateOptions;
    const batched = await generate(model.cached(), make());
    const perPrompt = batched.sequences.length / prompts.length;
    const width = (batched.sequences[0] as number[]).length;
    for (let i = 0; i < prompts.length; i++) {
      const single = await generate(model.cached(), { ...make(), inputIds: [prompts[i] as number[]] });
      for (let j = 0; j < perPrompt; j++) {
        expect(batched.sequences[i * perPrompt + j]).toEqual(padTo(single.sequences[j] as number[], width));
        expect(Math.abs((batched.scores?.[i * perPrompt + j] as number) - (single.scores?.[j] as number))).toBeLessThan(1e-4);
      }
    }
  });

  it('rows finish independently: finished rows are padded (Markov table, hand-computed)', async () => {
    const logits = markovFromProbs(MARKOV_PROBS);
    // [BOS, BOS] → A → EOS; [BOS, B] → EOS at once; [BOS, A] → EOS at once
    const out = await generate(markovDecoder(logits), {
      inputIds: [
        [BOS, BOS],
        [BOS, B],
        [BOS, A],
      ],
      maxNewTokens: 10,
      eosTokenId: EOS,
      padTokenId: PAD,
    });
    expect(out.sequences).toEqual([
      [BOS, BOS, A, EOS],
      [BOS, B, EOS, PAD],
      [BOS, A, EOS, PAD],
    ]);
  });
});

describe('no tensor leaks', () => {
  let model: TinyAttentionDecoder;
  let bias: tf.Tensor1D;
  beforeAll(() => {
    model = new TinyAttentionDecoder(44);
    bias = tf.zeros([model.vocab]) as tf.Tensor1D;
  });
  const decoders: Record<string, () => DecoderStep<unknown>> = {
    'no cache': () => model.uncached() as DecoderStep<unknown>,
    'functional KV cache': () => model.cached() as DecoderStep<unknown>,
    'in-place KV cache': () => model.inPlace(bias) as DecoderStep<unknown>,
  };
  const cases = Object.keys(decoders).flatMap((d) => Object.keys(modes).map((m) => [d, m] as const));

  it.each(cases)('%s, %s: numTensors unchanged after a warmed-up call', async (d, m) => {
    const decoder = (decoders[d] as () => DecoderStep<unknown>)();
    const make = modes[m] as () => GenerateOptions;
    await generate(decoder, make()); // warm-up (kernels may cache constants on first use)
    const before = tf.memory().numTensors;
    await generate(decoder, make());
    expect(tf.memory().numTensors).toBe(before);
  });

  it('an error inside a step leaks nothing either', async () => {
    const inner = model.cached();
    let calls = 0;
    const failing: DecoderStep<unknown> = {
      step: (ids, cache) => {
        if (++calls === 3) throw new Error('boom');
        return inner.step(ids, cache as never);
      },
      reorderCache: (cache, rows) => inner.reorderCache(cache as never, rows),
    };
    const before = tf.memory().numTensors;
    await expect(generate(failing, { inputIds: [[BOS, A]], maxNewTokens: 5 })).rejects.toThrow('boom');
    expect(tf.memory().numTensors).toBe(before);
  });
});
