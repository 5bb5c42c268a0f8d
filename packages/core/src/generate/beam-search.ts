// Beam hypotheses and the beam scorer; a port of HF transformers v4.30 `generation/beam_search.py`
// (`BeamHypotheses`, `BeamSearchScorer.process` / `finalize`).
//
// Lengths, as HF v4.30 counts them for a decoder-only model: a hypothesis is the whole row, prompt
// included. One that ends in EOS is stored WITHOUT its EOS, so its length is the row length before
// the EOS was chosen (`cur_len`); `finalize` writes the EOS back when it fits. One still open at the
// end is stored whole (length `maxLength`, or the length when every item was done). Its score is
// `sumLogProbs / length ** lengthPenalty`.

import { VlError } from '../errors.js';
import type { EarlyStopping } from './types.js';

interface Hypothesis {
  score: number;
  tokens: number[];
}

/** The n-best finished hypotheses of one batch item (HF `BeamHypotheses`). */
export class BeamHypotheses {
  readonly beams: Hypothesis[] = [];
  /** HF starts it at 1e9 so the first `numBeams` additions always enter. */
  worstScore = 1e9;

  constructor(
    readonly numBeams: number,
    readonly lengthPenalty: number,
    readonly earlyStopping: EarlyStopping,
    readonly maxLength: number,
  ) {}

  get size(): number {
    return this.beams.length;
  }

  add(tokens: number[], sumLogProbs: number): void {
    const score = sumLogProbs / tokens.length ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.worstScore) {
      this.beams.push({ score, tokens });
      if (this.beams.length > this.numBeams) {
        // Python sorts (score, index) pairs: the lowest score goes, the earliest on ties.
        const ranked = this.beams.map((b, i) => [b.score, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        const [, drop] = ranked[0] as readonly [number, number];
        this.beams.splice(drop, 1);
        this.worstScore = (ranked[1] as readonly [number, number])[0];
      } else {
        this.worstScore = Math.min(score, this.worstScore);
      }
    }
  }

  /** HF `is_done`: can no open beam beat the worst kept hypothesis? */
  isDone(bestSumLogProbs: number, curLen: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping === true) return true;
    if (this.earlyStopping === false) {
      // HF's heuristic: as if the best open beam ended now.
      return this.worstScore >= bestSumLogProbs / curLen ** this.lengthPenalty;
    }
    // 'never': the best attainable score, by the sign of the penalty.
    const denom = this.lengthPenalty > 0 ? this.maxLength ** this.lengthPenalty : curLen ** this.lengthPenalty;
    return this.worstScore >= bestSumLogProbs / denom;
  }
}

/** The 2·numBeams candidates of one batch item, best first: running score, token, local beam index. */
export interface BeamCandidates {
  scores: number[];
  tokens: number[];
  beams: number[];
}

export interface BeamStep {
  /** Per row (`batchSize * numBeams`): the running score, the token to append, and the row it extends. */
  scores: number[];
  tokens: number[];
  rows: number[];
}

export interface BeamFinal {
  sequences: number[][];
  scores: number[];
}

/** HF `BeamSearchScorer` without beam groups. */
export class BeamSearchScorer {
  readonly hyps: BeamHypotheses[];
  readonly done: boolean[];

  constructor(
    readonly batchSize: number,
    readonly numBeams: number,
    lengthPenalty: number,
    earlyStopping: EarlyStopping,
    readonly numBeamHypsToKeep: number,
    maxLength: number,
  ) {
    this.hyps = Array.from({ length: batchSize }, () => new BeamHypotheses(numBeams, lengthPenalty, earlyStopping, maxLength));
    this.done = Array.from({ length: batchSize }, () => false);
  }

  get isDone(): boolean {
    return this.done.every(Boolean);
  }

  /**
   * HF `process`. `rows` are the current sequences (`batchSize * numBeams`, all of length `cur_len`);
   * `candidates[b]` the top 2·numBeams of item b. EOS candidates ranked within the first numBeams become
   * hypotheses; the first numBeams non-EOS candidates become the next beams.
   */
  process(
    rows: readonly (readonly number[])[],
    candidates: readonly BeamCandidates[],
    eos: readonly number[],
    pad: number | undefined,
  ): BeamStep {
    const k = this.numBeams;
    const curLen = (rows[0] as readonly number[]).length;
    const out: BeamStep = { scores: [], tokens: [], rows: [] };
    for (let b = 0; b < this.batchSize; b++) {
      const hyp = this.hyps[b] as BeamHypotheses;
      if (this.done[b]) {
        if (pad === undefined) {
          throw new VlError('INVALID_ARGUMENT', 'a batch item finished beam search but there is no pad token', {
            subject: 'generate({ padTokenId })',
            hint: 'pass padTokenId or eosTokenId',
          });
        }
        // HF pads finished items (score 0, token pad); the row they extend is irrelevant (HF uses row 0,
        // we keep the item's own rows so the cache reorder stays within the item).
        for (let j = 0; j < k; j++) {
          out.scores.push(0);
          out.tokens.push(pad);
          out.rows.push(b * k + j);
        }
        continue;
      }
      const cand = candidates[b] as BeamCandidates;
      let filled = 0;
      for (let rank = 0; rank < cand.scores.length; rank++) {
        const token = cand.tokens[rank] as number;
        const score = cand.scores[rank] as number;
        const row = b * k + (cand.beams[rank] as number);
        if (eos.includes(token)) {
          if (rank >= k) continue; // an EOS outside the top numBeams is not a hypothesis
          hyp.add([...(rows[row] as readonly number[])], score);
        } else {
          out.scores.push(score);
          out.tokens.push(token);
          out.rows.push(row);
          filled++;
        }
        if (filled === k) break;
      }
      if (filled < k) {
        throw new VlError('INVALID_ARGUMENT', `at most ${k} of the ${cand.scores.length} beam candidates may be EOS`, {
          subject: 'generate({ eosTokenId })',
          hint: 'too many EOS ids, or a vocabulary smaller than 2·numBeams',
        });
      }
      this.done[b] = this.done[b] || hyp.isDone(Math.max(...cand.scores), curLen);
    }
    return out;
  }

  /**
   * HF `finalize`: open beams of unfinished items join the hypotheses; the best `numBeamHypsToKeep` per
   * item are returned, EOS appended where shorter than the longest + 1 (capped at maxLength), rows padded.
   */
  finalize(
    rows: readonly (readonly number[])[],
    beamScores: readonly number[],
    maxLength: number,
    eos: readonly number[],
    pad: number | undefined,
  ): BeamFinal {
    const k = this.numBeams;
    for (let b = 0; b < this.batchSize; b++) {
      if (this.done[b]) continue;
      const hyp = this.hyps[b] as BeamHypotheses;
      for (let j = 0; j < k; j++) hyp.add([...(rows[b * k + j] as readonly number[])], beamScores[b * k + j] as number);
    }
    const best: Hypothesis[] = [];
    for (const hyp of this.hyps) {
      // Python: sorted ascending (stable), then pop() from the end.
      const sorted = [...hyp.beams].sort((x, y) => x.score - y.score);
      for (let j = 0; j < this.numBeamHypsToKeep; j++) {
        const h = sorted.pop();
        if (!h)
          throw new VlError('INVALID_ARGUMENT', 'fewer hypotheses than numReturnSequences', {
            subject: 'generate({ numReturnSequences })',
          });
        best.push(h);
      }
    }
    const lengths = best.map((h) => h.tokens.length);
    const longest = Math.max(...lengths);
    const width = Math.min(longest + 1, maxLength);
    const ragged = Math.min(...lengths) !== longest;
    if (ragged && pad === undefined) {
      throw new VlError('INVALID_ARGUMENT', 'beam hypotheses differ in length and there is no pad token', {
        subject: 'generate({ padTokenId })',
      });
    }
    const sequences = best.map((h) => {
      // HF fills with pad only when lengths differ; otherwise every row is exactly `width` long or gets EOS.
      const row: number[] = [...h.tokens];
      if (row.length < width && eos.length > 0) row.push(eos[0] as number);
      while (row.length < width) row.push(pad as number);
      return row;
    });
    return { sequences, scores: best.map((h) => h.score) };
  }
}
