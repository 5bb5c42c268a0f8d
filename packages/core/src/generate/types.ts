// Generation contract: the decoder interface any model implements with a thin adapter, and the options and
// outputs of `generate` (HF transformers v4.30 names in camelCase).
import type * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../runtime/rng.js';

/** What one decoder step returns. */
export interface DecoderStepOutput<Cache> {
  /** Logits of the LAST position of every row, `[B, V]` float32. `generate` reads it once and disposes it. */
  logits: tf.Tensor2D;
  /** The grown state to pass to the next step (a KV cache, or the ids so far for a full-recompute decoder). */
  cache: Cache;
}

/**
 * A causal decoder seen one step at a time. Any model fits behind a thin adapter: a KV-cached
 * transformer returns its per-layer keys/values as `Cache`; a model without a cache uses
 * `fullSequenceDecoder`, whose cache is the token ids so far (it recomputes the whole sequence each
 * step and doubles as the correctness reference for cached decoding).
 *
 * Ownership, so that neither side leaks nor double-frees:
 * - `step` and `reorderCache` are synchronous and should run their work inside `tf.tidy`, keeping only
 *   the tensors they return.
 * - `ids` is created by `generate` and disposed after the step, unless the returned cache holds it.
 * - The cache passed in is handed over. After the call `generate` disposes every tensor reachable from the
 *   old cache (arrays, plain objects, class fields, Maps, Sets) that the returned cache no longer holds
 *   and that was created during this `generate` call. So a functional cache (builds new tensors with
 *   concat/gather) and an in-place cache (disposes what it replaces, returns itself) both work unchanged,
 *   and tensors that existed before the call (weights, an image encoder's states the cache points at)
 *   are never disposed by `generate`.
 * - At the end `generate` calls `disposeCache` on the last cache, or, when absent, disposes the tensors
 *   reachable from it that were created during the call.
 */
export interface DecoderStep<Cache> {
  /**
   * Runs the decoder. `cache === null`: `ids` is the whole prompt `[B, T0]`. Otherwise `ids` holds only
   * the new tokens `[B, 1]` and `cache` everything before them.
   */
  step(ids: tf.Tensor2D, cache: Cache | null): DecoderStepOutput<Cache>;
  /**
   * Returns a cache whose row `i` is row `rows[i]` of `cache` (rows may repeat: beam reordering,
   * expanding a batch to `numBeams` rows per item). `rows.length` may differ from the cache's batch size.
   */
  reorderCache(cache: Cache, rows: readonly number[]): Cache;
  /** Frees a cache; optional (see the ownership notes above for the default). */
  disposeCache?(cache: Cache): void;
}

/**
 * HF `early_stopping`: `true` stops a batch item at `numBeams` finished hypotheses, `false` uses HF's
 * heuristic, `'never'` is canonical beam search.
 */
export type EarlyStopping = boolean | 'never';

export interface GenerateOptions {
  /**
   * The prompt prefix, BOS included, `[B, T0]`. All rows have the same length (no left padding: run
   * ragged prompts as separate calls). A tensor is read, not disposed.
   */
  inputIds: tf.Tensor2D | readonly (readonly number[])[];
  /** New tokens to add after the prompt; wins over `maxLength` when both are given (as HF). */
  maxNewTokens?: number;
  /** Total length, prompt included. Default 20 (HF's `GenerationConfig.max_length`). */
  maxLength?: number;
  /** Total length (prompt included) before which EOS is forbidden (HF `MinLengthLogitsProcessor`). Default 0. */
  minLength?: number;
  /** New tokens before which EOS is forbidden (HF `MinNewTokensLengthLogitsProcessor`). Default 0. */
  minNewTokens?: number;
  /** End-of-sequence id(s); a row is finished once it emits any of them. Default: none (rows run to the max length). */
  eosTokenId?: number | readonly number[];
  /** Filler for finished rows. Default: the first EOS id (HF sets `pad_token_id = eos_token_id` with a warning). */
  padTokenId?: number;
  /** Beams per batch item; 1 = greedy or sampling. Default 1. */
  numBeams?: number;
  /** Beam score = sum of log-probs / length ** lengthPenalty (length as HF counts it, prompt included). Default 1.0. */
  lengthPenalty?: number;
  /** Default false (HF). */
  earlyStopping?: EarlyStopping;
  /** Sample instead of argmax / top-2k selection. Default false. */
  doSample?: boolean;
  /** Keep the k highest scores when sampling; 0 disables. Default 50 (HF's `GenerationConfig.top_k`). */
  topK?: number;
  /** Nucleus: keep the smallest set of top tokens whose probability reaches p when sampling. Default 1.0 (off). */
  topP?: number;
  /** Divides the scores before top-k/top-p when sampling. Default 1.0. */
  temperature?: number;
  /** HF repetition penalty: scores of tokens already in the row are divided by it when positive, multiplied when negative. Default 1.0. */
  repetitionPenalty?: number;
  /** Sequences returned per prompt (≤ numBeams for beam search; greedy allows only 1, as HF). Default 1. */
  numReturnSequences?: number;
  /**
   * Required when `doSample`; advanced by the draws. Sampling happens in JS, so it is backend-independent.
   * An array gives each prompt its own sampler: prompt b's rows then draw exactly what generating prompt b
   * alone with `rngs[b]` draws, so batching images changes no caption (BLIP's CapFilt relies on it).
   */
  rng?: Rng | readonly Rng[];
  /** Return `scores` and `stepScores`. Default false. */
  outputScores?: boolean;
}

export interface GenerateOutput {
  /**
   * `[B * numReturnSequences][L]` token ids, prompt included, rows of item `b` consecutive. Rows of one
   * call have one length (finished rows are padded with `padTokenId`, as HF's tensors).
   */
  sequences: number[][];
  /**
   * With `outputScores`, one per sequence. Beam search: HF's `sequences_scores` (sum of the processed
   * log-probs / length ** lengthPenalty). Greedy and sampling: the sum over generated tokens (up to and
   * including EOS) of the log-softmax of the final processed (and warped) scores at the chosen token.
   */
  scores?: number[];
  /**
   * With `outputScores`, HF's `scores`: per generation step, per row (`B * numReturnSequences` rows for
   * greedy/sampling, `B * numBeams` for beam search), the score vector the choice was made from: processed
   * logits (greedy), warped logits (sampling), processed log-probs without the running beam score (beam
   * search), warped processed log-probs (beam sampling).
   */
  stepScores?: Float32Array[][];
}
