// Greedy and beam search on a Markov table whose best sequences are computed by hand: length penalty as HF
// counts length, early stopping, hypotheses kept, padding, min length, repetition penalty.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { generate } from '../generate.js';
import { A, B, BOS, C, EOS, ln, MARKOV_PROBS, markovDecoder, markovFromProbs, PAD } from './toy-decoders.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const p = (from: number, to: number) => (MARKOV_PROBS[from] as number[])[to] as number;
const logits = markovFromProbs(MARKOV_PROBS);
const base = { inputIds: [[BOS]], eosTokenId: EOS, padTokenId: PAD, maxNewTokens: 10 };

function close(actual: number | undefined, expected: number, tol = 1e-5) {
  expect(actual).toBeDefined();
  expect(Math.abs((actual as number) - expected)).toBeLessThan(tol);
}

describe('greedy search', () => {
  it('takes the locally best token each step and stops at EOS', async () => {
    const out = await generate(markovDecoder(logits), { ...base, outputScores: true });
    expect(out.sequences).toEqual([[BOS, A, EOS]]);
    // greedy scores are the processed logits (here the log-probs themselves), one vector per step
    expect(out.stepScores).toHaveLength(2);
    close(out.stepScores?.[0]?.[0]?.[A], ln(p(BOS, A)));
    close(out.scores?.[0], ln(p(BOS, A)) + ln(p(A, EOS)));
  });

  it('stops at maxNewTokens / maxLength (prompt counted in maxLength)', async () => {
    expect((await generate(markovDecoder(logits), { ...base, maxNewTokens: 1 })).sequences).toEqual([[BOS, A]]);
    expect((await generate(markovDecoder(logits), { ...base, maxNewTokens: undefined, maxLength: 2 })).sequences).toEqual([[BOS, A]]);
  });

  it('minLength blocks EOS until the whole sequence (prompt included) is that long', async () => {
    // len 2 → EOS blocked, A's best other is C (.28); len 3 → blocked, C's best other is A (.04); len 4 → EOS (.3)
    const out = await generate(markovDecoder(logits), { ...base, minLength: 4 });
    expect(out.sequences).toEqual([[BOS, A, C, A, EOS]]);
    // the prompt counts: a 2-token prompt already satisfies minLength 2
    const prompted = await generate(markovDecoder(logits), { ...base, inputIds: [[BOS, A]], minLength: 2 });
    expect(prompted.sequences).toEqual([[BOS, A, EOS]]);
    // minNewTokens counts generated tokens only: 3 new tokens from [BOS] is the same as minLength 4
    const minNew = await generate(markovDecoder(logits), { ...base, minNewTokens: 3 });
    expect(minNew.sequences).toEqual(out.sequences);
  });

  it('repetition penalty divides positive and multiplies negative logits of tokens already present', async () => {
    // raw logits: after A, A (2.0) beats B (1.5); after B, B (-1.0) beats A (-1.2)
    const table = [
      [0, 0, 0, 0, 0, 0],
      [-5, -5, -5, 1, 0, -5],
      [0, 0, 0, 0, 0, 0],
      /* A */ [-5, -5, -5, 2.0, 1.5, -1.0],
      /* B */ [-5, -5, -3, -1.2, -1.0, -4],
      [0, 0, 0, 0, 0, 0],
    ];
    const run = (prompt: number[], repetitionPenalty?: number) =>
      generate(markovDecoder(table), { inputIds: [prompt], maxNewTokens: 1, repetitionPenalty, outputScores: true });
    expect((await run([BOS, A])).sequences).toEqual([[BOS, A, A]]);
    const penA = await run([BOS, A], 1.5);
    expect(penA.sequences).toEqual([[BOS, A, B]]); // 2.0 / 1.5 = 1.333 < 1.5
    const s = penA.stepScores?.[0]?.[0] as Float32Array;
    close(s[A], 2 / 1.5);
    close(s[BOS], -5 * 1.5); // BOS is in the prompt too
    close(s[B], 1.5); // not present: unchanged
    expect((await run([BOS, B])).sequences).toEqual([[BOS, B, B]]);
    expect((await run([BOS, B], 1.5)).sequences).toEqual([[BOS, B, A]]); // -1.0 · 1.5 = -1.5 < -1.2
  });

  it('greedy returns one sequence per prompt (HF) and rejects bad options', async () => {
    const fails = async (opts: Parameters<typeof generate>[1]) => {
      const err = await generate(markovDecoder(logits), opts).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isVlError(err, 'INVALID_ARGUMENT')).toBe(true);
    };
    await fails({ ...base, numReturnSequences: 2 });
    await fails({ ...base, doSample: true }); // no rng
    await fails({ ...base, maxNewTokens: undefined, maxLength: 1 }); // no room after the prompt
    await fails({ ...base, inputIds: [[BOS], [BOS, A]] }); // ragged prompts
    await fails({ ...base, numBeams: 3, numReturnSequences: 4 });
    await fails({ ...base, doSample: true, rng: new Rng(0), topP: 1.5 });
    await fails({ ...base, eosTokenId: 99 });
  });

  it('accepts a tensor prompt and leaves it alive', async () => {
    const ids = tf.tensor2d([[BOS]], [1, 1], 'int32');
    const out = await generate(markovDecoder(logits), { ...base, inputIds: ids });
    expect(out.sequences).toEqual([[BOS, A, EOS]]);
    expect(ids.isDisposed).toBe(false);
    ids.dispose();
  });
});

describe('beam search (HF v4.30 BeamSearchScorer)', () => {
  const sumBEos = ln(p(BOS, B)) + ln(p(B, EOS)); // BOS B EOS
  const sumAEos = ln(p(BOS, A)) + ln(p(A, EOS)); // BOS A EOS
  const sumACEos = ln(p(BOS, A)) + ln(p(A, C)) + ln(p(C, EOS)); // BOS A C EOS

  it('finds the globally better sequence greedy misses; score = sum log-probs / len ** penalty', async () => {
    const out = await generate(markovDecoder(logits), { ...base, numBeams: 2, outputScores: true });
    expect(out.sequences).toEqual([[BOS, B, EOS]]);
    // HF stores an EOS hypothesis without its EOS: length 2 (BOS B), prompt included
    close(out.scores?.[0], sumBEos / 2);
    const noPenalty = await generate(markovDecoder(logits), { ...base, numBeams: 2, lengthPenalty: 0, outputScores: true });
    expect(noPenalty.sequences).toEqual([[BOS, B, EOS]]);
    close(noPenalty.scores?.[0], sumBEos);
    // beam step scores are processed log-probs (log_softmax first), without the running beam score
    close(out.stepScores?.[1]?.[0]?.[EOS], ln(p(A, EOS)));
  });

  it('a strong length penalty prefers long open beams (hand trace, maxLength 4)', async () => {
    // step 2 adds hyps BOS·B (sum/4) and BOS·A (sum/4); step 3 adds BOS·A·C (−2.071/9) over BOS·A;
    // at maxLength the open beam BOS·A·A·C (sum/16 = −0.2204) beats every finished one.
    const out = await generate(markovDecoder(logits), {
      ...base,
      maxNewTokens: 3,
      numBeams: 2,
      numReturnSequences: 2,
      lengthPenalty: 2,
      outputScores: true,
    });
    const sumAAC = ln(p(BOS, A)) + ln(p(A, A)) + ln(p(A, C));
    expect(out.sequences).toEqual([
      [BOS, A, A, C], // open at max length: no EOS appended
      [BOS, A, C, EOS], // finished: EOS written back
    ]);
    close(out.scores?.[0], sumAAC / 4 ** 2);
    close(out.scores?.[1], sumACEos / 3 ** 2);
  });

  it('earlyStopping true stops at numBeams finished hypotheses; false applies HF heuristic; rows padded', async () => {
    const early = await generate(markovDecoder(logits), {
      ...base,
      numBeams: 2,
      numReturnSequences: 2,
      earlyStopping: true,
      outputScores: true,
    });
    expect(early.sequences).toEqual([
      [BOS, B, EOS],
      [BOS, A, EOS],
    ]);
    close(early.scores?.[0], sumBEos / 2);
    close(early.scores?.[1], sumAEos / 2);
    // false: at length 2 the worst kept (−0.948) < best open/2 (−0.511): continue; at length 3 BOS·A·C·EOS
    // (−0.690) replaces BOS·A·EOS and equals the bound → done.
    const dec = markovDecoder(logits);
    const heuristic = await generate(dec, { ...base, numBeams: 2, numReturnSequences: 2, outputScores: true });
    expect(heuristic.sequences).toEqual([
      [BOS, B, EOS, PAD],
      [BOS, A, C, EOS],
    ]);
    close(heuristic.scores?.[0], sumBEos / 2);
    close(heuristic.scores?.[1], sumACEos / 3);
    expect(dec.steps).toBe(3); // prompt + two new-token steps
    // 'never' bounds with maxLength (penalty > 0): it keeps searching but nothing better exists here
    const never = markovDecoder(logits);
    const canonical = await generate(never, { ...base, numBeams: 2, numReturnSequences: 2, earlyStopping: 'never', outputScores: true });
    expect(canonical.sequences).toEqual(heuristic.sequences);
    expect(canonical.scores).toEqual(heuristic.scores);
    expect(never.steps).toBeGreaterThan(3);
  });

  it('at maxLength open beams become hypotheses, without EOS', async () => {
    const out = await generate(markovDecoder(logits), { ...base, maxNewTokens: 1, numBeams: 2, outputScores: true });
    expect(out.sequences).toEqual([[BOS, A]]);
    close(out.scores?.[0], ln(p(BOS, A)) / 2);
  });

  it('repetition penalty acts on log-probs in beam search (HF applies processors after log_softmax)', async () => {
    const out = await generate(markovDecoder(logits), {
      ...base,
      inputIds: [[BOS, A]],
      maxNewTokens: 1,
      numBeams: 2,
      repetitionPenalty: 2,
      outputScores: true,
    });
    const s = out.stepScores?.[0]?.[0] as Float32Array;
    close(s[A], 2 * ln(p(A, A)));
    close(s[BOS], 2 * ln(p(A, BOS)));
    close(s[C], ln(p(A, C)));
  });

  it('minLength applies to beams too', async () => {
    const out = await generate(markovDecoder(logits), { ...base, numBeams: 2, minLength: 3 });
    // EOS forbidden at length 2: B's row then offers only ≤ .03, A's row C (.28): BOS A C EOS wins
    expect(out.sequences).toEqual([[BOS, A, C, EOS]]);
  });
});
