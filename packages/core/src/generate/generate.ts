// `generate` over any `DecoderStep`: greedy, multinomial sampling (top-k, top-p, temperature), beam search
// and beam sampling; follows HF transformers v4.30 `generation/utils.py` (`greedy_search`, `sample`,
// `beam_search`, `beam_sample`).
//
// Each step the decoder runs synchronously (its own tf.tidy), then `generate` awaits `logits.data()`
// once for the `[rows, V]` block and does all choosing in JS float64: processors, warpers, top-2k,
// sampling from the explicit Rng. Why `data()` and not `dataSync()`: on GPU backends (webgl, webgpu,
// tfjs-node-gpu) the read is the step's synchronisation point anyway, and the async form does not block
// the event loop while the device finishes; on cpu/wasm it resolves at once with the same cost. Doing
// the choice in JS keeps sampling and tie-breaking identical on every backend and costs O(rows · V)
// per step, small next to the decoder. Nothing is awaited inside a tidy.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';
import { BeamSearchScorer, type BeamCandidates } from './beam-search.js';
import { disposeUnkept, reachableTensors, tensorIdWatermark } from './decoders.js';
import {
  argmax,
  buildLogitsProcessor,
  buildLogitsWarper,
  logSoftmaxAt,
  logSoftmaxInPlace,
  runProcessors,
  softmaxWeights,
  type RowProcessor,
} from './logits-process.js';
import type { DecoderStep, EarlyStopping, GenerateOptions, GenerateOutput } from './types.js';

/** HF initialises every beam but the first of an item at -1e9, so the first step expands one beam only. */
const INITIAL_OTHER_BEAM_SCORE = -1e9;

/** Options with HF's defaults filled in and checked. */
interface Settings {
  maxLength: number;
  eos: number[];
  pad: number | undefined;
  numBeams: number;
  numReturnSequences: number;
  lengthPenalty: number;
  earlyStopping: EarlyStopping;
  doSample: boolean;
  /** One sampler per prompt, or one shared by all (`rng` given once). */
  rngs: readonly Rng[] | null;
  outputScores: boolean;
  processors: RowProcessor[];
  warpers: RowProcessor[];
}

function invalid(option: string, message: string, hint?: string): VlError {
  return new VlError('INVALID_ARGUMENT', message, { subject: `generate({ ${option} })`, hint });
}

function checkInt(option: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw invalid(option, `${option} must be an integer ≥ ${min}, got ${value}`);
  return value;
}

async function readPrompt(inputIds: GenerateOptions['inputIds']): Promise<number[][]> {
  let rows: number[][];
  if (inputIds instanceof tf.Tensor) {
    if (inputIds.rank !== 2) throw invalid('inputIds', `inputIds must be [B, T0], got shape [${inputIds.shape.join(', ')}]`);
    rows = (await inputIds.array()) as number[][];
  } else {
    rows = inputIds.map((r) => Array.from(r));
  }
  const first = rows[0];
  if (!first || first.length === 0) throw invalid('inputIds', 'inputIds needs at least one row with at least one token (BOS)');
  for (const r of rows) {
    if (r.length !== first.length) {
      throw invalid(
        'inputIds',
        `all prompts must have the same length (${first.length} vs ${r.length})`,
        'run prompts of different lengths in separate calls',
      );
    }
    for (const t of r) if (!Number.isInteger(t) || t < 0) throw invalid('inputIds', `token ids must be non-negative integers, got ${t}`);
  }
  return rows;
}

function resolveSettings(o: GenerateOptions, promptLength: number, promptCount: number): Settings {
  const numBeams = checkInt('numBeams', o.numBeams ?? 1, 1);
  const numReturnSequences = checkInt('numReturnSequences', o.numReturnSequences ?? 1, 1);
  const doSample = o.doSample ?? false;
  let maxLength: number;
  if (o.maxNewTokens !== undefined) maxLength = promptLength + checkInt('maxNewTokens', o.maxNewTokens, 1);
  else maxLength = checkInt('maxLength', o.maxLength ?? 20, 1);
  if (maxLength <= promptLength) {
    throw invalid(
      'maxLength',
      `maxLength ${maxLength} leaves no room after the ${promptLength}-token prompt`,
      'use maxNewTokens, or a larger maxLength (it counts the prompt)',
    );
  }
  const eos = o.eosTokenId === undefined ? [] : typeof o.eosTokenId === 'number' ? [o.eosTokenId] : Array.from(o.eosTokenId);
  for (const e of eos) checkInt('eosTokenId', e, 0);
  const pad = o.padTokenId ?? eos[0];
  if (pad !== undefined) checkInt('padTokenId', pad, 0);
  const minLength = checkInt('minLength', o.minLength ?? 0, 0);
  const minNewTokens = checkInt('minNewTokens', o.minNewTokens ?? 0, 0);
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  if (!(repetitionPenalty > 0)) throw invalid('repetitionPenalty', `repetitionPenalty must be > 0, got ${repetitionPenalty}`);
  const temperature = o.temperature ?? 1;
  if (!(temperature > 0)) throw invalid('temperature', `temperature must be > 0, got ${temperature}`, 'use doSample: false for argmax');
  const topK = checkInt('topK', o.topK ?? 50, 0);
  const topP = o.topP ?? 1;
  if (!(topP >= 0 && topP <= 1)) throw invalid('topP', `topP must be in [0, 1], got ${topP}`);
  const lengthPenalty = o.lengthPenalty ?? 1;
  if (!Number.isFinite(lengthPenalty)) throw invalid('lengthPenalty', `lengthPenalty must be finite, got ${lengthPenalty}`);
  const earlyStopping = o.earlyStopping ?? false;
  if (earlyStopping !== true && earlyStopping !== false && earlyStopping !== 'never') {
    throw invalid('earlyStopping', `earlyStopping must be true, false or 'never', got ${String(earlyStopping)}`);
  }
  if (numBeams === 1 && !doSample && numReturnSequences !== 1) {
    throw invalid('numReturnSequences', 'greedy search returns one sequence per prompt', 'use doSample or numBeams > 1');
  }
  if (numBeams > 1 && !doSample && numReturnSequences > numBeams) {
    throw invalid('numReturnSequences', `numReturnSequences (${numReturnSequences}) must be ≤ numBeams (${numBeams})`);
  }
  if (doSample && !o.rng) throw invalid('rng', 'sampling needs an explicit Rng', 'pass rng: new Rng(seed)');
  if (Array.isArray(o.rng) && o.rng.length !== promptCount) {
    throw invalid('rng', `${o.rng.length} samplers for ${promptCount} prompts`, 'pass one Rng per prompt, or a single Rng');
  }
  return {
    maxLength,
    eos,
    pad,
    numBeams,
    numReturnSequences,
    lengthPenalty,
    earlyStopping,
    doSample,
    rngs: o.rng ? (Array.isArray(o.rng) ? o.rng : Array.from({ length: promptCount }, () => o.rng as Rng)) : null,
    outputScores: o.outputScores ?? false,
    processors: buildLogitsProcessor({ repetitionPenalty, minLength, minNewTokens, promptLength, eos }),
    warpers: doSample ? buildLogitsWarper({ temperature, topK, topP, minTokensToKeep: numBeams > 1 ? 2 : 1 }) : [],
  };
}

/** Owns the decoder cache across steps: runs steps, reorders rows, disposes what each call replaced. */
class DecodeSession<Cache> {
  private cache: Cache | null = null;
  /** Tensors with ids above this were created during this call; only those are ever disposed here. */
  private readonly watermark = tensorIdWatermark();
  vocabSize = 0;

  constructor(private readonly decoder: DecoderStep<Cache>) {}

  /** One decoder step on `tokens` (`[rows][t]`); the last-position logits, `rows · V` floats. */
  async forward(tokens: readonly (readonly number[])[]): Promise<Float32Array> {
    const rows = tokens.length;
    const t = (tokens[0] as readonly number[]).length;
    const flat = new Int32Array(rows * t);
    tokens.forEach((r, i) => flat.set(r, i * t));
    const ids = tf.tensor2d(flat, [rows, t], 'int32');
    let out;
    try {
      out = this.decoder.step(ids, this.cache);
    } catch (err) {
      ids.dispose();
      throw err;
    }
    const kept = this.handOver(out.cache, [ids]);
    const logits = out.logits;
    try {
      const [r, v] = logits.shape;
      if (logits.rank !== 2 || r !== rows) {
        throw new VlError('SHAPE_MISMATCH', `decoder step returned logits of shape [${logits.shape.join(', ')}], expected [${rows}, V]`, {
          subject: 'DecoderStep.step',
        });
      }
      if (logits.dtype !== 'float32')
        throw new VlError('SHAPE_MISMATCH', `decoder logits must be float32, got ${logits.dtype}`, { subject: 'DecoderStep.step' });
      if (this.vocabSize === 0) this.vocabSize = v;
      else if (v !== this.vocabSize)
        throw new VlError('SHAPE_MISMATCH', `vocabulary changed from ${this.vocabSize} to ${v}`, { subject: 'DecoderStep.step' });
      return (await logits.data()) as Float32Array;
    } finally {
      if (!kept.has(logits) && !logits.isDisposed) logits.dispose();
    }
  }

  /** Row `i` of the cache becomes old row `rows[i]`; skipped when that is the identity. */
  reorder(rows: readonly number[]): void {
    if (this.cache === null) return;
    if (rows.every((r, i) => r === i)) return;
    this.handOver(this.decoder.reorderCache(this.cache, rows), []);
  }

  dispose(): void {
    const cache = this.cache;
    this.cache = null;
    if (cache === null) return;
    if (this.decoder.disposeCache) this.decoder.disposeCache(cache);
    else disposeUnkept(reachableTensors(cache), new Set(), this.watermark);
  }

  private handOver(next: Cache, extra: tf.Tensor[]): Set<tf.Tensor> {
    const old = reachableTensors(this.cache);
    for (const t of extra) old.add(t);
    const keep = reachableTensors(next);
    this.cache = next;
    disposeUnkept(old, keep, this.watermark);
    return keep;
  }
}

/** Row `src` of a `[rows, V]` block as float64. */
function rowScores(block: Float32Array, src: number, vocab: number): Float64Array {
  return Float64Array.from(block.subarray(src * vocab, (src + 1) * vocab));
}

function checkIds(s: Settings, vocab: number): void {
  for (const e of s.eos) if (e >= vocab) throw invalid('eosTokenId', `EOS id ${e} is outside the vocabulary of ${vocab}`);
  if (s.pad !== undefined && s.pad >= vocab) throw invalid('padTokenId', `pad id ${s.pad} is outside the vocabulary of ${vocab}`);
}

/** The sampler of prompt `item`: its own with one Rng per prompt, else the shared one (one sequence of draws). */
function samplerOf(s: Settings, item: number): Rng {
  return (s.rngs as readonly Rng[])[item] as Rng;
}

function drawToken(weights: Float64Array, rng: Rng): number {
  let positive = false;
  for (let i = 0; i < weights.length && !positive; i++) positive = (weights[i] as number) > 0;
  if (!positive)
    throw new VlError('INVALID_ARGUMENT', 'every token was filtered out; nothing to sample', { subject: 'generate({ topK, topP })' });
  return rng.categorical(weights);
}

/** HF `greedy_search` (doSample false) and `sample` (doSample true), numBeams = 1. */
async function greedyOrSample<Cache>(session: DecodeSession<Cache>, prompts: number[][], s: Settings): Promise<GenerateOutput> {
  const perPrompt = s.numReturnSequences; // HF expands input_ids by numReturnSequences (sampling only)
  const rowCount = prompts.length * perPrompt;
  let block = await session.forward(prompts);
  const vocab = session.vocabSize;
  checkIds(s, vocab);
  // The prompt ran once per prompt; expand to rows by reordering the cache and mapping logits rows.
  let source: number[] | null = null;
  if (perPrompt > 1) {
    source = Array.from({ length: rowCount }, (_, i) => Math.floor(i / perPrompt));
    session.reorder(source);
  }
  const seqs = Array.from({ length: rowCount }, (_, i) => [...(prompts[Math.floor(i / perPrompt)] as number[])]);
  const unfinished = Array.from({ length: rowCount }, () => true);
  const sums = Array.from({ length: rowCount }, () => 0);
  const stepScores: Float32Array[][] = [];
  let curLen = (prompts[0] as number[]).length;
  for (;;) {
    const tokens: number[] = [];
    const stepRows: Float32Array[] = [];
    for (let r = 0; r < rowCount; r++) {
      const seq = seqs[r] as number[];
      if (!unfinished[r] && !s.outputScores) {
        tokens.push(s.pad as number); // unfinished rows only become finished when an EOS (hence a pad) exists
        continue;
      }
      const scores = rowScores(block, source ? (source[r] as number) : r, vocab);
      runProcessors(s.processors, scores, seq);
      runProcessors(s.warpers, scores, seq);
      if (s.outputScores) stepRows.push(Float32Array.from(scores));
      if (!unfinished[r]) {
        tokens.push(s.pad as number);
        continue;
      }
      const token = s.doSample ? drawToken(softmaxWeights(scores), samplerOf(s, Math.floor(r / perPrompt))) : argmax(scores);
      if (s.outputScores) sums[r] = (sums[r] as number) + logSoftmaxAt(scores, token);
      tokens.push(token);
    }
    if (s.outputScores) stepScores.push(stepRows);
    for (let r = 0; r < rowCount; r++) {
      const token = tokens[r] as number;
      (seqs[r] as number[]).push(token);
      if (unfinished[r] && s.eos.includes(token)) unfinished[r] = false;
    }
    curLen++;
    if (!unfinished.some(Boolean) || curLen >= s.maxLength) break;
    block = await session.forward(tokens.map((t) => [t]));
    source = null;
  }
  return s.outputScores ? { sequences: seqs, scores: sums, stepScores } : { sequences: seqs };
}

/**
 * HF `torch.topk(scores.view(B, k·V), 2k)` for one item: the n best (beam, token) pairs by
 * `beamScore + processed log-prob`, best first; equal scores keep the lower flat index first.
 */
function topCandidates(rowsScores: readonly Float64Array[], beamScores: readonly number[], n: number): BeamCandidates {
  const scores: number[] = [];
  const tokens: number[] = [];
  const beams: number[] = [];
  rowsScores.forEach((row, j) => {
    const base = beamScores[j] as number;
    for (let v = 0; v < row.length; v++) {
      const value = base + (row[v] as number);
      if (Number.isNaN(value)) continue;
      if (scores.length === n && !(value > (scores[n - 1] as number))) continue;
      let at = scores.length;
      while (at > 0 && (scores[at - 1] as number) < value) at--;
      scores.splice(at, 0, value);
      tokens.splice(at, 0, v);
      beams.splice(at, 0, j);
      if (scores.length > n) {
        scores.pop();
        tokens.pop();
        beams.pop();
      }
    }
  });
  return { scores, tokens, beams };
}

/**
 * HF `beam_sample` selection for one item: warped (processed log-prob + beam score) per row, softmax over
 * all k·V, n draws without replacement (torch.multinomial), gathered scores sorted descending.
 */
function sampleCandidates(warped: readonly Float64Array[], n: number, rng: Rng): BeamCandidates {
  const vocab = (warped[0] as Float64Array).length;
  const flat = new Float64Array(warped.length * vocab);
  warped.forEach((row, j) => flat.set(row, j * vocab));
  const weights = softmaxWeights(flat);
  let positive = 0;
  for (let i = 0; i < weights.length; i++) if ((weights[i] as number) > 0) positive++;
  if (positive < n) {
    throw new VlError('INVALID_ARGUMENT', `beam sampling needs ${n} candidates with non-zero probability, only ${positive} remain`, {
      subject: 'generate({ topK, topP })',
      hint: 'raise topK / topP or lower numBeams',
    });
  }
  const picks: number[] = [];
  for (let i = 0; i < n; i++) {
    const idx = rng.categorical(weights);
    picks.push(idx);
    weights[idx] = 0;
  }
  const order = picks.map((p, i) => ({ p, i, score: flat[p] as number })).sort((a, b) => b.score - a.score || a.i - b.i);
  return {
    scores: order.map((o) => o.score),
    tokens: order.map((o) => o.p % vocab),
    beams: order.map((o) => Math.floor(o.p / vocab)),
  };
}

/** HF `beam_search` (doSample false) and `beam_sample` (doSample true). */
async function beamSearch<Cache>(session: DecodeSession<Cache>, prompts: number[][], s: Settings): Promise<GenerateOutput> {
  const k = s.numBeams;
  // HF v4.30: beam sample runs numReturnSequences independent searches keeping one hypothesis each;
  // beam search runs one search per prompt keeping numReturnSequences hypotheses.
  const groupsPerPrompt = s.doSample ? s.numReturnSequences : 1;
  const groups = prompts.length * groupsPerPrompt;
  const rowCount = groups * k;
  const perPrompt = groupsPerPrompt * k;
  let block = await session.forward(prompts);
  const vocab = session.vocabSize;
  checkIds(s, vocab);
  let source: number[] | null = Array.from({ length: rowCount }, (_, i) => Math.floor(i / perPrompt));
  session.reorder(source);
  let seqs = source.map((p) => [...(prompts[p] as number[])]);
  let beamScores: number[] = Array.from({ length: rowCount }, (_, i) => (i % k === 0 ? 0 : INITIAL_OTHER_BEAM_SCORE));
  const scorer = new BeamSearchScorer(groups, k, s.lengthPenalty, s.earlyStopping, s.doSample ? 1 : s.numReturnSequences, s.maxLength);
  const stepScores: Float32Array[][] = [];
  let curLen = (prompts[0] as number[]).length;
  for (;;) {
    const candidates: BeamCandidates[] = [];
    const stepRows: Float32Array[] = [];
    for (let g = 0; g < groups; g++) {
      const skip = scorer.done[g] as boolean; // process() ignores done items; compute only for outputScores
      if (skip && !s.outputScores) {
        candidates.push({ scores: [], tokens: [], beams: [] });
        continue;
      }
      const processed: Float64Array[] = [];
      for (let j = 0; j < k; j++) {
        const r = g * k + j;
        const scores = rowScores(block, source ? (source[r] as number) : r, vocab);
        logSoftmaxInPlace(scores); // HF: log_softmax first, then the processors on log-probs
        runProcessors(s.processors, scores, seqs[r] as number[]);
        processed.push(scores);
        if (s.outputScores) {
          if (s.doSample) {
            const shown = Float64Array.from(scores);
            runProcessors(s.warpers, shown, seqs[r] as number[]);
            stepRows.push(Float32Array.from(shown));
          } else {
            stepRows.push(Float32Array.from(scores));
          }
        }
      }
      if (skip) {
        candidates.push({ scores: [], tokens: [], beams: [] });
        continue;
      }
      const beamSlice = beamScores.slice(g * k, g * k + k);
      if (!s.doSample) {
        candidates.push(topCandidates(processed, beamSlice, 2 * k));
      } else {
        // HF v4.30 warps after adding the running beam score, and the warped values become the beam scores.
        const warped = processed.map((row, j) => {
          const w = new Float64Array(row.length);
          for (let v = 0; v < row.length; v++) w[v] = (row[v] as number) + (beamSlice[j] as number);
          runProcessors(s.warpers, w, seqs[g * k + j] as number[]);
          return w;
        });
        candidates.push(sampleCandidates(warped, 2 * k, samplerOf(s, Math.floor(g / groupsPerPrompt))));
      }
    }
    if (s.outputScores) stepScores.push(stepRows);
    const next = scorer.process(seqs, candidates, s.eos, s.pad);
    seqs = next.rows.map((r, i) => [...(seqs[r] as number[]), next.tokens[i] as number]);
    beamScores = next.scores;
    curLen++;
    if (scorer.isDone || curLen >= s.maxLength) break;
    session.reorder(next.rows);
    block = await session.forward(next.tokens.map((t) => [t]));
    source = null;
  }
  const final = scorer.finalize(seqs, beamScores, s.maxLength, s.eos, s.pad);
  return s.outputScores ? { sequences: final.sequences, scores: final.scores, stepScores } : { sequences: final.sequences };
}

/**
 * Generates continuations of `inputIds` with `decoder`, as HF transformers v4.30 `generate` does for a
 * decoder-only model: numBeams 1 → greedy or sampling; numBeams > 1 → beam search or beam sampling.
 * Rows finish independently (finished rows get `padTokenId`); generation stops when every row has
 * finished or the length reaches `maxLength` (prompt included). Every tensor created during the call is
 * disposed before it resolves, on success or error.
 */
export async function generate<Cache>(decoder: DecoderStep<Cache>, options: GenerateOptions): Promise<GenerateOutput> {
  const prompts = await readPrompt(options.inputIds);
  const settings = resolveSettings(options, (prompts[0] as number[]).length, prompts.length);
  const session = new DecodeSession(decoder);
  try {
    return settings.numBeams === 1 ? await greedyOrSample(session, prompts, settings) : await beamSearch(session, prompts, settings);
  } finally {
    session.dispose();
  }
}
