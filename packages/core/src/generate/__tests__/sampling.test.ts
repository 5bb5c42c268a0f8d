// Sampling: top-k = 1 equals greedy, top-p keeps exactly the nucleus with renormalised frequencies, seeds
// reproduce, and the HF warpers on hand-made rows.
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { generate } from '../generate.js';
import { applyTopK, applyTopP, buildLogitsWarper } from '../logits-process.js';
import { BOS, EOS, MARKOV_PROBS, markovDecoder, markovFromProbs, PAD, TinyAttentionDecoder } from './toy-decoders.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const kept = (row: Float64Array) => Array.from(row.keys()).filter((i) => (row[i] as number) > -Infinity);

describe('warpers (HF TopK / TopP)', () => {
  it('top-k keeps the k largest and ties with the k-th; min tokens to keep raises k', () => {
    const row = Float64Array.from([1, 3, 2, 3, 0]);
    applyTopK(row, 2, 1);
    expect(kept(row)).toEqual([1, 3]);
    const tie = Float64Array.from([1, 3, 2, 2, 0]);
    applyTopK(tie, 2, 1);
    expect(kept(tie)).toEqual([1, 2, 3]); // 2 ties with the 2nd largest: kept, as HF's `<` threshold
    const beam = Float64Array.from([1, 3, 2, 0]);
    applyTopK(beam, 1, 2);
    expect(kept(beam)).toEqual([1, 2]);
  });

  it('top-p keeps the smallest top set whose mass reaches p', () => {
    const probs = [0.05, 0.05, 0.1, 0.4, 0.25, 0.15];
    const at = (topP: number, minKeep = 1) => {
      const row = Float64Array.from(probs.map(Math.log));
      applyTopP(row, topP, minKeep);
      return kept(row);
    };
    // ascending cumulative mass .05 .10 .20 .35 .60 1.0; removed where ≤ 1 - p
    expect(at(0.75)).toEqual([3, 4, 5]); // .4 + .25 + .15 = .80 ≥ .75
    expect(at(0.5)).toEqual([3, 4]); // .65 ≥ .5
    expect(at(0.3)).toEqual([3]);
    expect(at(0.3, 2)).toEqual([3, 4]); // beam sampling keeps 2
    expect(at(1)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('warper order is temperature, top-k, top-p (HF _get_logits_warper)', () => {
    // temperature 0.5 sharpens before top-p: probs ∝ p², so the nucleus shrinks
    const row = Float64Array.from([0.05, 0.05, 0.1, 0.4, 0.25, 0.15].map(Math.log));
    for (const w of buildLogitsWarper({ temperature: 0.5, topK: 0, topP: 0.75, minTokensToKeep: 1 })) w(row, []);
    // p² normalised: A .615, B .240, C .087, EOS .038 …; ascending mass ≤ .25 goes, A + B = .856 stays
    expect(kept(row)).toEqual([3, 4]);
  });
});

describe('multinomial sampling', () => {
  it('top-k = 1 sampling equals greedy, with any seed and temperature', async () => {
    const model = new TinyAttentionDecoder(3);
    const prompts = [
      [BOS, 4],
      [BOS, 7],
    ];
    const greedy = await generate(model.cached(), { inputIds: prompts, maxNewTokens: 12, eosTokenId: EOS, padTokenId: PAD });
    for (const seed of [0, 1, 2]) {
      const sampled = await generate(model.cached(), {
        inputIds: prompts,
        maxNewTokens: 12,
        eosTokenId: EOS,
        padTokenId: PAD,
        doSample: true,
        topK: 1,
        temperature: 0.7,
        rng: new Rng(seed),
      });
      expect(sampled.sequences).toEqual(greedy.sequences);
    }
    const markov = markovFromProbs(MARKOV_PROBS);
    const g = await generate(markovDecoder(markov), { inputIds: [[BOS]], maxNewTokens: 5, eosTokenId: EOS });
    const s = await generate(markovDecoder(markov), {
      inputIds: [[BOS]],
      maxNewTokens: 5,
      eosTokenId: EOS,
      doSample: true,
      topK: 1,
      rng: new Rng(9),
    });
    expect(s.sequences).toEqual(g.sequences);
  });

  it('top-p draws only from the nucleus, with renormalised frequencies', async () => {
    // From BOS: p = [.05, .05, .10, .40, .25, .15]; top-p .75 keeps {A, B, C} = mass .80, so
    // frequencies should be .5, .3125, .1875. N = 6000 draws; a frequency's standard error is
    // sqrt(q(1-q)/N) ≤ .0065; we allow 4.5 standard errors (a false failure has probability < 1e-5
    // per token for an arbitrary seed; the seed is fixed, so the test is deterministic).
    const probs = [0.05, 0.05, 0.1, 0.4, 0.25, 0.15];
    const table = Array.from({ length: 6 }, () => probs.map(Math.log));
    const n = 6000;
    const out = await generate(markovDecoder(table), {
      inputIds: [[BOS]],
      maxNewTokens: 1,
      doSample: true,
      topP: 0.75,
      topK: 0,
      numReturnSequences: n,
      rng: new Rng(42),
    });
    expect(out.sequences).toHaveLength(n);
    const counts = [0, 0, 0, 0, 0, 0];
    for (const seq of out.sequences) counts[seq[1] as number]! += 1;
    expect(counts.slice(0, 3)).toEqual([0, 0, 0]); // outside the nucleus: never
    const expected = { 3: 0.4 / 0.8, 4: 0.25 / 0.8, 5: 0.15 / 0.8 };
    for (const [token, q] of Object.entries(expected)) {
      const f = (counts[Number(token)] as number) / n;
      const se = Math.sqrt((q * (1 - q)) / n);
      expect(Math.abs(f - q)).toBeLessThan(4.5 * se);
    }
  });

  it('same seed gives the same samples; another seed differs; numReturnSequences draws independently', async () => {
    const model = new TinyAttentionDecoder(5);
    const opts = {
      inputIds: [[BOS, 6]],
      maxNewTokens: 16,
      eosTokenId: EOS,
      topK: 0,
      temperature: 1.5,
      doSample: true,
      numReturnSequences: 3,
    };
    const a = await generate(model.cached(), { ...opts, rng: new Rng(11) });
    const b = await generate(model.cached(), { ...opts, rng: new Rng(11) });
    const c = await generate(model.cached(), { ...opts, rng: new Rng(12) });
    expect(a.sequences).toEqual(b.sequences);
    expect(a.sequences).not.toEqual(c.sequences);
    expect(new Set(a.sequences.map((s) => s.join(','))).size).toBeGreaterThan(1);
    for (const seq of a.sequences) expect(seq.slice(0, 2)).toEqual([BOS, 6]);
  });

  it('one Rng per prompt: a batch samples exactly what each prompt alone samples (sampling and beam sampling)', async () => {
    const model = new TinyAttentionDecoder(5);
    const prompts = [
      [BOS, 6],
      [BOS, 3],
      [BOS, 9],
    ];
    for (const extra of [{ numReturnSequences: 2 }, { numBeams: 2, numReturnSequences: 2, topK: 6 }]) {
      const opts = { maxNewTokens: 12, eosTokenId: EOS, padTokenId: PAD, topK: 0, temperature: 1.5, doSample: true, ...extra };
      const batched = await generate(model.cached(), { ...opts, inputIds: prompts, rng: prompts.map((_, i) => new Rng(20 + i)) });
      const alone = [];
      for (const [i, p] of prompts.entries())
        alone.push(...(await generate(model.cached(), { ...opts, inputIds: [p], rng: new Rng(20 + i) })).sequences);
      // Rows of one call share a length (padded); compare up to each row's own end.
      const trim = (seq: number[]) => seq.slice(0, seq.indexOf(EOS) >= 0 ? seq.indexOf(EOS) + 1 : seq.length).filter((t) => t !== PAD);
      expect(batched.sequences.map(trim)).toEqual(alone.map(trim));
      // A single shared Rng draws one sequence for all prompts: different samples.
      const shared = await generate(model.cached(), { ...opts, inputIds: prompts, rng: new Rng(20) });
      expect(shared.sequences.map(trim)).not.toEqual(alone.map(trim));
    }
    await expect(generate(model.cached(), { inputIds: prompts, doSample: true, rng: [new Rng(1)] })).rejects.toThrow(
      /1 samplers for 3 prompts/,
    );
  });

  it('finished rows are padded and later draws skip them', async () => {
    // From BOS, EOS has probability .1 under this table: rows end at different steps.
    const probs = [0.05, 0.05, 0.1, 0.4, 0.25, 0.15];
    const table = Array.from({ length: 6 }, () => probs.map(Math.log));
    const out = await generate(markovDecoder(table), {
      inputIds: [[BOS]],
      maxNewTokens: 30,
      eosTokenId: EOS,
      padTokenId: PAD,
      doSample: true,
      topK: 0,
      numReturnSequences: 20,
      rng: new Rng(1),
    });
    const width = (out.sequences[0] as number[]).length;
    let sawPadding = false;
    for (const seq of out.sequences) {
      expect(seq).toHaveLength(width);
      const end = seq.indexOf(EOS);
      if (end >= 0 && end < width - 1) {
        sawPadding = true;
        expect(seq.slice(end + 1).every((t) => t === PAD)).toBe(true);
      }
    }
    expect(sawPadding).toBe(true);
  });

  it('beam sampling runs numReturnSequences searches and is reproducible by seed', async () => {
    const model = new TinyAttentionDecoder(8);
    const opts = {
      inputIds: [
        [BOS, 3],
        [BOS, 9],
      ],
      maxNewTokens: 8,
      eosTokenId: EOS,
      padTokenId: PAD,
      numBeams: 3,
      doSample: true,
      numReturnSequences: 2,
      topK: 6,
      outputScores: true,
    };
    const a = await generate(model.cached(), { ...opts, rng: new Rng(4) });
    const b = await generate(model.cached(), { ...opts, rng: new Rng(4) });
    expect(a.sequences).toHaveLength(4);
    expect(a.sequences).toEqual(b.sequences);
    expect(a.scores).toEqual(b.scores);
    expect(a.sequences[2]?.slice(0, 2)).toEqual([BOS, 9]);
  });
});
