// `CoCa.generate` as open_clip v3.3.0 runs it with Hugging Face transformers v4.40.2's
// `BeamSearchScorer`, `MinLengthLogitsProcessor`, `RepetitionPenaltyLogitsProcessor` and top-k / top-p
// warpers. Its quirks are kept on purpose, because they decide the token ids:
// - sampling (`top_k`, `top_p`): a row is finished once its last token is eos OR the pad id 0 (a
//   generated 0 or a prompt ending in 0 finishes it); finished rows get 0; at the step where
//   cur_len + 1 == seq_len every active row gets eos; the loop ends early once every row is finished;
// - beam search: beam scores add RAW processed logits (no log-softmax); beams run in independent groups
//   (no diversity penalty); hypotheses are scored sum / (prefix length + 1) (v4.40.2's `generated_len`);
//   no eos is forced; the output is as wide as the longest hypothesis + 1, capped at seq_len.
// open_clip re-runs the whole prefix through both text towers every step. `cache: true` (the default)
// feeds only the new token through per-layer KV caches instead; the logits are the same up to float
// rounding (tested to give the same ids), and the cost per step no longer grows with the prefix.
import * as tf from '@tensorflow/tfjs-core';
import { applyMinLength, applyRepetitionPenalty, applyTopK, applyTopP, KVCache, type Rng, VlError } from '@vl/core';
import type { CoCa } from './model.js';

export type GenerationType = 'beam_search' | 'top_k' | 'top_p';

/** open_clip's `generate` kwargs, camelCased, with its defaults. */
export interface CocaGenerateOptions {
  /** Prompt ids [B][P] (sot included), sampling only; default [[sot]] per image. Beam search ignores it (as open_clip). */
  text?: readonly (readonly number[])[];
  /** Total length, sot included. Default 30. */
  seqLen?: number;
  /** Default 'beam_search'. */
  generationType?: GenerationType;
  /** top_p: nucleus mass kept (HF TopPLogitsWarper). Default 0.1. */
  topP?: number;
  /** top_k: tokens kept. Default 1 (greedy). */
  topK?: number;
  temperature?: number;
  padTokenId?: number;
  /** Default 49407 (CLIP's <end_of_text>). */
  eosTokenId?: number;
  /** Default 49406 (CLIP's <start_of_text>). */
  sotTokenId?: number;
  /** Default 6. */
  numBeams?: number;
  /** Default 3. */
  numBeamGroups?: number;
  /** Eos is forbidden while the row (sot included) is shorter. Default 5. */
  minSeqLen?: number;
  /** HF repetition penalty. Default 1.0 (off). */
  repetitionPenalty?: number;
  /** Pad every output to seqLen. Default false. */
  fixedOutputLength?: boolean;
  /** Needed when sampling keeps more than one token. */
  rng?: Rng;
  /** KV-cached decoding (default true); false recomputes the whole prefix each step as open_clip does. */
  cache?: boolean;
}

/** Last-position logits of every row, given every row's full sequence so far. */
interface Stepper {
  next(seqs: readonly (readonly number[])[]): Promise<Float32Array>;
  reorder(rows: readonly number[]): void;
  dispose(): void;
}

function lastLogits(logits: tf.Tensor3D): tf.Tensor2D {
  const [b, t, v] = logits.shape;
  return tf.reshape(tf.slice(logits, [0, t - 1, 0], [b, 1, v]), [b, v]);
}

function idsTensor(seqs: readonly (readonly number[])[], from = 0): tf.Tensor2D {
  const rows = seqs.map((r) => r.slice(from));
  return tf.tensor2d(rows as number[][], [rows.length, (rows[0] as number[]).length], 'int32');
}

/** open_clip's path: both text towers over the whole prefix every step. */
function fullStepper(model: CoCa, imageEmbs: tf.Tensor3D): Stepper {
  let embs = imageEmbs;
  return {
    async next(seqs) {
      const logits = tf.tidy(() => {
        const ids = idsTensor(seqs);
        const { tokens } = model.encodeTextTokens(ids, { normalize: false });
        return lastLogits(model.text_decoder.forward(embs, tokens));
      });
      try {
        return (await logits.data()) as Float32Array;
      } finally {
        logits.dispose();
      }
    },
    reorder(rows) {
      const next = tf.tidy(() => tf.gather(embs, tf.tensor1d(Array.from(rows), 'int32')) as tf.Tensor3D);
      embs.dispose();
      embs = next;
    },
    dispose() {
      embs.dispose();
    },
  };
}

/** Cached path: only the new positions run; self- and cross-attention keys/values are kept per layer. */
function cachedStepper(model: CoCa, imageEmbs: tf.Tensor3D): Stepper {
  const textCache = new KVCache(model.text.blocks.length);
  const decoderCache = new KVCache(model.text_decoder.resblocks.length);
  let embs = imageEmbs;
  let consumed = 0;
  return {
    async next(seqs) {
      const len = (seqs[0] as readonly number[]).length;
      const logits = tf.tidy(() => {
        const all = idsTensor(seqs);
        const fresh = idsTensor(seqs, consumed);
        const tokens = model.text.stepTokens(fresh, all, textCache);
        return lastLogits(model.text_decoder.forward(embs, tokens, { cache: decoderCache }));
      });
      consumed = len;
      try {
        return (await logits.data()) as Float32Array;
      } finally {
        logits.dispose();
      }
    },
    reorder(rows) {
      if (rows.every((r, i) => r === i)) return;
      textCache.reorder(rows);
      decoderCache.reorder(rows);
      const next = tf.tidy(() => tf.gather(embs, tf.tensor1d(Array.from(rows), 'int32')) as tf.Tensor3D);
      embs.dispose();
      embs = next;
    },
    dispose() {
      textCache.dispose();
      decoderCache.dispose();
      embs.dispose();
    },
  };
}

interface Resolved {
  seqLen: number;
  type: GenerationType;
  topP: number;
  topK: number;
  temperature: number;
  pad: number;
  eos: number;
  sot: number;
  numBeams: number;
  numBeamGroups: number;
  minSeqLen: number;
  repetitionPenalty: number;
  fixed: boolean;
  rng: Rng | null;
  cache: boolean;
}

function bad(option: string, message: string, hint?: string): VlError {
  return new VlError('INVALID_ARGUMENT', message, { subject: `generate({ ${option} })`, hint });
}

function resolve(model: CoCa, o: CocaGenerateOptions): Resolved {
  const r: Resolved = {
    seqLen: o.seqLen ?? 30,
    type: o.generationType ?? 'beam_search',
    topP: o.topP ?? 0.1,
    topK: o.topK ?? 1,
    temperature: o.temperature ?? 1,
    pad: o.padTokenId ?? model.padId,
    eos: o.eosTokenId ?? 49407,
    sot: o.sotTokenId ?? 49406,
    numBeams: o.numBeams ?? 6,
    numBeamGroups: o.numBeamGroups ?? 3,
    minSeqLen: o.minSeqLen ?? 5,
    repetitionPenalty: o.repetitionPenalty ?? 1,
    fixed: o.fixedOutputLength ?? false,
    rng: o.rng ?? null,
    cache: o.cache ?? true,
  };
  if (!['beam_search', 'top_k', 'top_p'].includes(r.type))
    throw bad('generationType', `generationType must be beam_search, top_k or top_p, got '${r.type}'`);
  if (!Number.isInteger(r.seqLen) || r.seqLen <= r.minSeqLen)
    throw bad('seqLen', `seqLen (${r.seqLen}) must be an integer larger than minSeqLen (${r.minSeqLen})`);
  const context = model.config.modelCfg.textCfg.contextLength;
  if (r.seqLen - 1 > context) {
    throw bad('seqLen', `seqLen ${r.seqLen} needs ${r.seqLen - 1} text positions, the model has ${context}`, `use seqLen ≤ ${context + 1}`);
  }
  const vocab = model.vocabSize;
  for (const [name, id] of [
    ['eosTokenId', r.eos],
    ['sotTokenId', r.sot],
    ['padTokenId', r.pad],
  ] as const) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw bad(name, `${name} ${id} is outside the vocabulary of ${vocab}`);
  }
  if (r.type === 'beam_search') {
    if (
      !Number.isInteger(r.numBeams) ||
      r.numBeams < 1 ||
      !Number.isInteger(r.numBeamGroups) ||
      r.numBeamGroups < 1 ||
      r.numBeams % r.numBeamGroups !== 0
    ) {
      throw bad('numBeams', `numBeams (${r.numBeams}) must be a positive multiple of numBeamGroups (${r.numBeamGroups})`);
    }
    if (2 * (r.numBeams / r.numBeamGroups) > vocab) throw bad('numBeams', 'the vocabulary is smaller than 2 · beams per group');
  }
  if (!(r.temperature > 0)) throw bad('temperature', `temperature must be > 0, got ${r.temperature}`);
  if (!(r.repetitionPenalty > 0)) throw bad('repetitionPenalty', `repetitionPenalty must be > 0, got ${r.repetitionPenalty}`);
  return r;
}

/** MinLength then RepetitionPenalty, on one row of raw logits (open_clip's LogitsProcessorList). */
function processRow(scores: Float64Array, tokens: readonly number[], r: Resolved): void {
  applyMinLength(scores, tokens.length, r.minSeqLen, [r.eos]);
  if (r.repetitionPenalty !== 1) applyRepetitionPenalty(scores, tokens, r.repetitionPenalty);
}

function row(block: Float32Array, i: number, vocab: number): Float64Array {
  return Float64Array.from(block.subarray(i * vocab, (i + 1) * vocab));
}

/** softmax(scores / T) then one multinomial draw; a single surviving token needs no randomness (top_k = 1). */
function drawFrom(scores: Float64Array, temperature: number, rng: Rng | null): number {
  let max = -Infinity;
  for (const s of scores) max = Math.max(max, s / temperature);
  const w = scores.map((s) => Math.exp(s / temperature - max));
  let alive = 0;
  let only = 0;
  for (let i = 0; i < w.length; i++) {
    if ((w[i] as number) > 0) {
      alive++;
      only = i;
    }
  }
  if (alive === 0) throw new VlError('INVALID_ARGUMENT', 'every token was filtered out; nothing to sample', { subject: 'generate' });
  if (alive === 1) return only;
  if (!rng) throw bad('rng', 'sampling from more than one token needs an explicit Rng', 'pass rng: new Rng(seed)');
  return rng.categorical(w);
}

async function sample(stepper: Stepper, prompts: number[][], r: Resolved, vocab: number): Promise<number[][]> {
  const out = prompts.map((p) => [...p]);
  for (;;) {
    const curLen = (out[0] as number[]).length;
    const finished = out.map((s) => {
      const last = s[s.length - 1] as number;
      return last === r.eos || last === r.pad;
    });
    const tokens = out.map(() => r.pad);
    if (finished.every(Boolean)) {
      if (!r.fixed) break;
    } else {
      const block = await stepper.next(out);
      for (let i = 0; i < out.length; i++) {
        if (finished[i]) continue;
        if (curLen + 1 === r.seqLen) {
          tokens[i] = r.eos;
          continue;
        }
        const scores = row(block, i, vocab);
        processRow(scores, out[i] as number[], r);
        if (r.type === 'top_k') applyTopK(scores, r.topK, 1);
        else applyTopP(scores, r.topP, 1);
        tokens[i] = drawFrom(scores, r.temperature, r.rng);
      }
    }
    out.forEach((s, i) => s.push(tokens[i] as number));
    if ((out[0] as number[]).length >= r.seqLen) break;
  }
  return out;
}

/** HF v4.40.2 `BeamHypotheses` (length_penalty 1, early_stopping False). */
class Hypotheses {
  readonly beams: { score: number; tokens: number[] }[] = [];
  worst = 1e9;
  constructor(readonly size: number) {}

  add(tokens: number[], sum: number, generatedLen: number): void {
    const score = sum / generatedLen;
    if (this.beams.length < this.size || score > this.worst) {
      this.beams.push({ score, tokens });
      if (this.beams.length > this.size) {
        // Python sorts (score, index): the lowest goes, the earliest on ties.
        const ranked = this.beams.map((b, i) => [b.score, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        this.beams.splice((ranked[0] as readonly [number, number])[1], 1);
        this.worst = (ranked[1] as readonly [number, number])[0];
      } else {
        this.worst = Math.min(score, this.worst);
      }
    }
  }

  isDone(best: number, curLen: number): boolean {
    return this.beams.length >= this.size && this.worst >= best / curLen;
  }
}

/** torch.topk(2·gs) over the flattened [gs·V] scores of one (item, group); ties keep the lower index first. */
function topCandidates(rows: readonly Float64Array[], n: number): { score: number; flat: number }[] {
  const best: { score: number; flat: number }[] = [];
  const vocab = (rows[0] as Float64Array).length;
  rows.forEach((r, j) => {
    for (let v = 0; v < vocab; v++) {
      const score = r[v] as number;
      if (Number.isNaN(score)) continue;
      if (best.length === n && !(score > (best[n - 1] as { score: number }).score)) continue;
      let at = best.length;
      while (at > 0 && (best[at - 1] as { score: number }).score < score) at--;
      best.splice(at, 0, { score, flat: j * vocab + v });
      if (best.length > n) best.pop();
    }
  });
  return best;
}

async function beamSearch(stepper: Stepper, batch: number, r: Resolved, vocab: number): Promise<number[][]> {
  const nb = r.numBeams;
  const ng = r.numBeamGroups;
  const gs = nb / ng;
  const rows = batch * nb;
  let seqs = Array.from({ length: rows }, () => [r.sot]);
  // The first beam of each group starts at 0, the others at -1e9, so a group first expands one beam.
  const scores: number[] = Array.from({ length: rows }, (_, i) => (i % gs === 0 ? 0 : -1e9));
  const hyps = Array.from({ length: batch * ng }, () => new Hypotheses(gs));
  const done = Array.from({ length: batch * ng }, () => false);
  for (;;) {
    const block = await stepper.next(seqs);
    const next: number[][] = seqs.map((s) => [...s]);
    const source = Array.from({ length: rows }, (_, i) => i);
    const curLen = (seqs[0] as number[]).length + 1; // HF's cur_len: the length the scores are for
    for (let g = 0; g < ng; g++) {
      // Rows of this group in batch order (HF's batch_group_indices); `local` indexes into this list.
      const groupRows: number[] = [];
      for (let b = 0; b < batch; b++) for (let j = 0; j < gs; j++) groupRows.push(b * nb + g * gs + j);
      const newTokens = new Array<number>(groupRows.length);
      const newScores = new Array<number>(groupRows.length);
      const newLocal = new Array<number>(groupRows.length);
      for (let b = 0; b < batch; b++) {
        const hg = b * ng + g;
        if (done[hg]) {
          // HF: pad token, score 0, beam index 0 (the group's first row of item 0).
          for (let j = 0; j < gs; j++) {
            newTokens[b * gs + j] = r.pad;
            newScores[b * gs + j] = 0;
            newLocal[b * gs + j] = 0;
          }
          continue;
        }
        const processed: Float64Array[] = [];
        for (let j = 0; j < gs; j++) {
          const rowIdx = groupRows[b * gs + j] as number;
          const s = row(block, rowIdx, vocab);
          processRow(s, seqs[rowIdx] as number[], r);
          const base = scores[rowIdx] as number;
          for (let v = 0; v < vocab; v++) s[v] = (s[v] as number) + base;
          processed.push(s);
        }
        const cands = topCandidates(processed, 2 * gs);
        let filled = 0;
        for (let rank = 0; rank < cands.length; rank++) {
          const c = cands[rank] as { score: number; flat: number };
          const tokenId = c.flat % vocab;
          const local = b * gs + Math.floor(c.flat / vocab);
          if (tokenId === r.eos) {
            if (rank >= gs) continue;
            (hyps[hg] as Hypotheses).add([...(seqs[groupRows[local] as number] as number[])], c.score, curLen);
          } else {
            newTokens[b * gs + filled] = tokenId;
            newScores[b * gs + filled] = c.score;
            newLocal[b * gs + filled] = local;
            filled++;
          }
          if (filled === gs) break;
        }
        if (filled < gs) throw new VlError('INVALID_ARGUMENT', 'too few non-eos beam candidates', { subject: 'generate' });
        done[hg] = done[hg] || (hyps[hg] as Hypotheses).isDone((cands[0] as { score: number }).score, curLen);
      }
      groupRows.forEach((rowIdx, k) => {
        const from = groupRows[newLocal[k] as number] as number;
        next[rowIdx] = [...(seqs[from] as number[]), newTokens[k] as number];
        scores[rowIdx] = newScores[k] as number;
        source[rowIdx] = from;
      });
    }
    seqs = next;
    if (done.every(Boolean) || (seqs[0] as number[]).length >= r.seqLen) break;
    stepper.reorder(source);
  }
  // finalize: open groups add their live beams; the best over all of an item's groups wins.
  for (let hg = 0; hg < batch * ng; hg++) {
    if (done[hg]) continue;
    const b = Math.floor(hg / ng);
    const g = hg % ng;
    for (let j = 0; j < gs; j++) {
      const rowIdx = b * nb + g * gs + j;
      (hyps[hg] as Hypotheses).add([...(seqs[rowIdx] as number[])], scores[rowIdx] as number, (seqs[rowIdx] as number[]).length);
    }
  }
  const best: number[][] = [];
  for (let b = 0; b < batch; b++) {
    const all = hyps.slice(b * ng, (b + 1) * ng).flatMap((h) => h.beams);
    // Python: sorted by score (stable), then pop() the last.
    const sorted = all.map((h, i) => ({ ...h, i })).sort((x, y) => x.score - y.score || x.i - y.i);
    best.push((sorted[sorted.length - 1] as { tokens: number[] }).tokens);
  }
  const lengths = best.map((t) => t.length);
  const width = Math.min(Math.max(...lengths) + 1, r.seqLen);
  return best.map((t) => {
    const out = [...t];
    if (out.length < width) out.push(r.eos);
    while (out.length < width) out.push(r.pad);
    return out;
  });
}

/**
 * `CoCa.generate(image, …)`: captions as token ids [B][≤ seqLen] (sot or prompt included). Rows share
 * one width; finished rows are padded with the pad id. Every tensor made here is disposed.
 */
export async function generateCoca(model: CoCa, images: tf.Tensor, options: CocaGenerateOptions = {}): Promise<number[][]> {
  const r = resolve(model, options);
  const batch = images.shape[0] as number;
  const vocab = model.vocabSize;
  const wasTraining = model.training;
  model.eval();
  let stepper: Stepper | null = null;
  try {
    const embs = tf.tidy(() => {
      const { tokens } = model.encodeImageTokens(images);
      if (r.type !== 'beam_search') return tokens;
      const idx = Array.from({ length: batch * r.numBeams }, (_, i) => Math.floor(i / r.numBeams));
      return tf.gather(tokens, tf.tensor1d(idx, 'int32')) as tf.Tensor3D;
    });
    stepper = r.cache ? cachedStepper(model, embs) : fullStepper(model, embs);
    let out: number[][];
    if (r.type === 'beam_search') {
      out = await beamSearch(stepper, batch, r, vocab);
    } else {
      const prompts = options.text ? options.text.map((p) => [...p]) : Array.from({ length: batch }, () => [r.sot]);
      if (prompts.length !== batch || prompts.some((p) => p.length !== (prompts[0] as number[]).length || p.length === 0)) {
        throw bad('text', `text must be ${batch} prompts of one length ≥ 1`);
      }
      if ((prompts[0] as number[]).length >= r.seqLen) throw bad('text', `the prompt is already seqLen (${r.seqLen}) long`);
      out = await sample(stepper, prompts, r, vocab);
    }
    if (r.fixed) for (const s of out) while (s.length < r.seqLen) s.push(r.pad);
    return out;
  } finally {
    stepper?.dispose();
    model.train(wasTraining);
  }
}
