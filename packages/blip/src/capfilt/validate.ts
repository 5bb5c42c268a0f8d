// CapFilt's option checks, run before anything is read: ranges of every option (INVALID_ARGUMENT),
// then, once the checkpoints are loaded, the options and tokenizers against the models' configs
// (CONFIG_INVALID). Any CLI front end calls these; the exit code for both is 2.
import { VlError } from '@vl/core';
import type { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import { type CapfiltOptions, FILTER_TEXT_LENGTH } from './pipeline.js';

/** Upper bounds that keep one record's work bounded (captions per image, beams, batch). */
export const LIMITS = { numCaptions: 64, beam: 64, batchSize: 4096, maxLength: 512, calibrateOn: 1_000_000 } as const;

function bad(option: string, message: string, hint?: string): VlError {
  return new VlError('INVALID_ARGUMENT', `--${option} ${message}`, { subject: `--${option}`, hint });
}

function intIn(option: string, v: number | undefined, lo: number, hi: number): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < lo || v > hi) throw bad(option, `must be an integer in [${lo}, ${hi}], got ${v}`);
}

function realIn(option: string, v: number | undefined, lo: number, hi: number, openLo = false): void {
  if (v === undefined) return;
  if (!Number.isFinite(v) || v > hi || v < lo || (openLo && v === lo))
    throw bad(option, `must be in ${openLo ? '(' : '['}${lo}, ${hi}], got ${v}`);
}

/** Throws INVALID_ARGUMENT naming the first option out of range. */
export function validateCapfiltOptions(o: CapfiltOptions): void {
  const data = typeof o.data === 'string' ? [o.data] : [...o.data];
  if (data.length === 0 || data.some((d) => d === '')) throw bad('data', 'is required (a JSONL/CSV/COCO JSON file or .tar shards)');
  if (!o.out) throw bad('out', 'is required');
  if (!o.captioner) throw bad('captioner', 'is required');
  if (!o.filter) throw bad('filter', 'is required');
  if (o.threshold !== undefined && o.keepRate !== undefined) throw bad('threshold', 'and --keep-rate exclude each other: give one');
  intIn('num-captions', o.numCaptions, 0, LIMITS.numCaptions);
  realIn('top-p', o.topP, 0, 1, true);
  intIn('beam', o.beam, 1, LIMITS.beam);
  realIn('threshold', o.threshold, 0, 1);
  realIn('keep-rate', o.keepRate, 0, 1, true);
  intIn('calibrate-on', o.calibrateOn, 1, LIMITS.calibrateOn);
  intIn('batch-size', o.batchSize, 1, LIMITS.batchSize);
  intIn('max-length', o.maxLength, 2, LIMITS.maxLength);
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw bad('seed', `must be an integer, got ${o.seed}`);
  if (o.shard !== undefined) {
    const { index, count } = o.shard;
    if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count) {
      throw bad('shard', `must be i/n with 0 ≤ i < n, got ${index}/${count}`);
    }
  }
}

interface Checked {
  role: string;
  model: BlipForConditionalGeneration | BlipForImageTextRetrieval;
  textLength: number;
}

/** The options and each model's tokenizer against its config, before the first batch (CONFIG_INVALID). */
export function checkModelsForOptions(
  o: CapfiltOptions,
  models: { captioner: BlipForConditionalGeneration; filter: BlipForImageTextRetrieval },
): void {
  const checks: Checked[] = [
    { role: 'captioner', model: models.captioner, textLength: o.maxLength ?? 30 },
    { role: 'filter', model: models.filter, textLength: FILTER_TEXT_LENGTH },
  ];
  for (const { role, model, textLength } of checks) {
    const dir = role === 'captioner' ? o.captioner : o.filter;
    const text = model.config.textConfig;
    if (textLength > text.maxPositionEmbeddings) {
      throw new VlError(
        'CONFIG_INVALID',
        `${role} texts of ${textLength} tokens exceed its max_position_embeddings ${text.maxPositionEmbeddings}`,
        {
          subject: dir,
          hint: role === 'captioner' ? `use --max-length ≤ ${text.maxPositionEmbeddings}` : 'the filter is too small for CapFilt',
        },
      );
    }
    const tok = model.tokenizer;
    if (!tok) throw new VlError('CONFIG_INVALID', `the ${role} checkpoint has no tokenizer (vocab.txt / tokenizer.json)`, { subject: dir });
    if (tok.vocabSize > text.vocabSize) {
      throw new VlError('CONFIG_INVALID', `${role} tokenizer has ${tok.vocabSize} tokens but text_config.vocab_size is ${text.vocabSize}`, {
        subject: dir,
        hint: 'vocab.txt does not belong to this checkpoint; use the vocab it was trained with',
      });
    }
  }
}
