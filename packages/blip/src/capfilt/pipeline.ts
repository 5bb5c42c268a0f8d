// CapFilt (BLIP, Li et al. 2022, §3.3): a captioner writes synthetic captions for every image, a
// filter scores original and synthetic captions with its ITM head, and captions under a threshold
// go. Streams the input in fixed batches, journals each finished batch (journal.ts) so a killed run
// resumes exactly, and assigns records to shards by their position in the input.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  type CaptionRecord,
  DataReport,
  type DropReason,
  ensureRuntime,
  firstToken,
  type Int8Report,
  int8KernelsAvailable,
  isVlError,
  l2Normalize,
  quantizeInt8,
  Rng,
  VlError,
} from '@vl/core';
import { type DatasetFormat, detectFormat, expandBraces, ImageFileError, readDataset, readImageFile } from '@vl/core/node';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import { preprocessBlipImage } from '../processor.js';
import { diffIdentity, fingerprintOf, type RunIdentity } from './identity.js';
import { type JournalHeader, JournalWriter, type RecordResult, type ScoredCaption, scanJournal } from './journal.js';

export interface CapfiltOptions {
  data: string | readonly string[];
  /** Image root; default the folder of the list file. */
  images?: string;
  out: string;
  captioner: string;
  filter: string;
  /** Synthetic captions per image (default 1). */
  numCaptions?: number;
  /** Nucleus p (default 0.9); ignored with beam. */
  topP?: number;
  /** Beam search with K beams instead of sampling. */
  beam?: number;
  /** Run every linear layer of both models with dynamically quantised int8 weights (core's quantizeInt8; needs @vl/accel). */
  int8?: boolean;
  /** Fixed score threshold (default 0.5 unless keepRate is given). */
  threshold?: number;
  /** Target fraction of original captions kept; the threshold is the matching quantile on calibrateOn records. */
  keepRate?: number;
  calibrateOn?: number;
  /** Blend ITC into the score: (ITM + (ITC + 1) / 2) / 2. */
  itc?: boolean;
  batchSize?: number;
  shard?: { index: number; count: number };
  seed?: number;
  maxLength?: number;
  onProgress?: (done: number, total: number | null) => void;
}

export interface InputItem {
  index: number;
  key: string;
  record?: CaptionRecord;
  /** Reasons of captions the reader removed from this record (it goes on with the others). */
  removedCaptions?: string[];
  failure?: { reason: DropReason | string; detail: string };
}

export function formatOf(data: string | readonly string[]): DatasetFormat {
  const first = (typeof data === 'string' ? [data] : [...data]).flatMap(expandBraces)[0];
  if (first === undefined) throw new Error('no --data given');
  return detectFormat(first);
}

/** Every input record in order, bad ones included (as failures), each numbered. */
export async function* inputItems(data: string | readonly string[], imageRoot: string | undefined): AsyncGenerator<InputItem> {
  const drops: { reason: DropReason; subject: string; detail: string }[] = [];
  const captionDrops = new Map<string, string[]>();
  class Capture extends DataReport {
    override drop(reason: DropReason, subject: string, detail: string): void {
      super.drop(reason, subject, detail);
      drops.push({ reason, subject, detail });
    }

    override dropCaption(reason: DropReason, subject?: string): void {
      super.dropCaption(reason, subject);
      if (subject !== undefined) captionDrops.set(subject, [...(captionDrops.get(subject) ?? []), reason]);
    }
  }
  let index = 0;
  for await (const rec of readDataset({ path: data, imageRoot }, new Capture())) {
    for (const d of drops.splice(0)) yield { index: index++, key: d.subject, failure: { reason: d.reason, detail: d.detail } };
    const removed = captionDrops.get(rec.key);
    captionDrops.clear();
    yield { index: index++, key: rec.key, record: rec, ...(removed ? { removedCaptions: removed } : {}) };
  }
  for (const d of drops.splice(0)) yield { index: index++, key: d.subject, failure: { reason: d.reason, detail: d.detail } };
}

/** Shard i/n owns the records whose input position is i mod n. */
export function inShard(index: number, shard: { index: number; count: number } | undefined): boolean {
  return !shard || index % shard.count === shard.index;
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

export interface Models {
  captioner: BlipForConditionalGeneration;
  filter: BlipForImageTextRetrieval;
  /** Seconds from the start of loading until each model was ready, and for both (they load concurrently). */
  loadSeconds?: { captioner: number; filter: number; both: number };
  /** With `int8`: what quantizeInt8 did to each model, and the seconds it took (included in loadSeconds.both). */
  int8?: { captioner: Int8Report; filter: Int8Report; seconds: number };
}

/** Both models, loaded concurrently (the file reads overlap); on a failure neither is left allocated. */
export async function loadModels(o: { captioner: string; filter: string; int8?: boolean }): Promise<Models> {
  if (o.int8) {
    // Refused before two models are read for nothing.
    await ensureRuntime();
    if (!int8KernelsAvailable()) {
      throw new VlError(
        'BACKEND_UNAVAILABLE',
        `int8 inference needs @vl/accel's native int8 kernels on the wasm backend (running on ${tf.getBackend()})`,
        {
          subject: '--int8',
          hint: 'run with --backend wasm where @vl/accel is installed and its native binary loads (npm rebuild @vl/accel says why not), or leave --int8 off',
        },
      );
    }
  }
  const start = performance.now();
  const timed = async <M>(load: () => Promise<M>): Promise<[M, number]> => {
    const m = await load();
    return [m, (performance.now() - start) / 1000];
  };
  const [cap, filt] = await Promise.allSettled([
    timed(() => BlipForConditionalGeneration.fromPretrained(o.captioner)),
    timed(() => BlipForImageTextRetrieval.fromPretrained(o.filter)),
  ]);
  if (cap.status === 'rejected' || filt.status === 'rejected') {
    if (cap.status === 'fulfilled') cap.value[0].dispose();
    if (filt.status === 'fulfilled') filt.value[0].dispose();
    throw cap.status === 'rejected' ? cap.reason : (filt as PromiseRejectedResult).reason;
  }
  const models: Models = { captioner: cap.value[0], filter: filt.value[0] };
  if (o.int8) {
    const t0 = performance.now();
    models.int8 = { captioner: quantizeInt8(models.captioner), filter: quantizeInt8(models.filter), seconds: 0 };
    models.int8.seconds = (performance.now() - t0) / 1000;
  }
  const both = (performance.now() - start) / 1000;
  models.loadSeconds = { captioner: cap.value[1], filter: filt.value[1], both };
  return models;
}

interface Loaded {
  item: InputItem;
  rel: string;
  capPixels: Float32Array;
  filterPixels: Float32Array;
}

/** Reads and preprocesses an image; a missing or undecodable one becomes a failure. */
async function loadImage(item: InputItem, root: string, models: Models): Promise<Loaded | RecordResult> {
  const rec = item.record as CaptionRecord;
  const rel = rec.image.kind === 'path' ? relative(root, rec.image.path).split('\\').join('/') : rec.image.name;
  let bytes: Uint8Array;
  try {
    bytes = rec.image.kind === 'path' ? await readImageFile(rec.image.path, { root: rec.image.root }) : rec.image.bytes;
  } catch (err) {
    const reason = err instanceof ImageFileError ? err.reason : 'missing_image';
    return { index: item.index, key: item.key, status: 'failed', reason, detail: firstLine(err), image: rel, meta: rec.meta };
  }
  try {
    const cs = models.captioner.config.visionConfig.imageSize;
    const fs = models.filter.config.visionConfig.imageSize;
    const capPixels = await preprocessBlipImage(bytes, cs);
    const filterPixels = fs === cs ? capPixels : await preprocessBlipImage(bytes, fs);
    return { item, rel, capPixels, filterPixels };
  } catch (err) {
    const reason = isVlError(err, 'IMAGE_TOO_LARGE') ? 'image_too_large' : 'corrupt_image';
    return { index: item.index, key: item.key, status: 'failed', reason, detail: firstLine(err), image: rel, meta: rec.meta };
  }
}

/** Scoring pads texts to this many tokens ([CLS]/[ENC] and [SEP] included). */
export const FILTER_TEXT_LENGTH = 35;

/** Longest caption prefix the filter tokenizes: bounded work per caption whatever its length. */
export const MAX_SCORED_CHARS = 4096;

/**
 * The part of a caption the filter sees: at most MAX_SCORED_CHARS characters, then cut after the
 * `maxTokens`-th word (every word makes at least one token, so the tokens kept are the same).
 */
export function scoringText(text: string, maxTokens: number): string {
  const head = text.length > MAX_SCORED_CHARS ? text.slice(0, MAX_SCORED_CHARS) : text;
  const word = /\S+/g;
  let n = 0;
  for (let m = word.exec(head); m !== null; m = word.exec(head)) if (++n >= maxTokens) return head.slice(0, m.index + m[0].length);
  return head;
}

export interface Scoring {
  numCaptions: number;
  topP: number;
  beam?: number;
  itc: boolean;
  seed: number;
  maxLength: number;
}

/** Preprocessed images [3, S, S] each, stacked into one [N, 3, S, S] tensor. */
function pixelBatch(pixels: readonly Float32Array[], size: number): tf.Tensor4D {
  const flat = new Float32Array(pixels.length * 3 * size * size);
  pixels.forEach((p, i) => flat.set(p, i * p.length));
  return tf.tensor4d(flat, [pixels.length, 3, size, size]);
}

/**
 * N synthetic captions for each image, all images in one `generate` call. Each record samples from its own
 * Rng, seeded by its input position, so its captions do not depend on the batch it lands in.
 */
async function synthesize(models: Models, pixels: readonly Float32Array[], indices: readonly number[], s: Scoring): Promise<string[][]> {
  if (s.numCaptions === 0 || pixels.length === 0) return pixels.map(() => []);
  const size = models.captioner.config.visionConfig.imageSize;
  const t = pixelBatch(pixels, size);
  try {
    const perImage = s.beam ? Math.min(s.numCaptions, s.beam) : s.numCaptions;
    const opts = s.beam
      ? { numBeams: s.beam, numReturnSequences: perImage, maxLength: s.maxLength }
      : {
          doSample: true,
          topP: s.topP,
          topK: 0,
          numReturnSequences: perImage,
          maxLength: s.maxLength,
          rng: indices.map((index) => new Rng(s.seed).fork(`record-${index}`)),
        };
    const caps = await models.captioner.caption(t, opts);
    return pixels.map((_, i) => [
      ...new Set(
        caps
          .slice(i * perImage, (i + 1) * perImage)
          .map((c) => c.trim())
          .filter((c) => c !== ''),
      ),
    ]);
  } finally {
    t.dispose();
  }
}

/** Captions of every loaded image in one batch; when that throws, image by image so only the images at fault fail. */
async function synthesizeAll(models: Models, loaded: readonly Loaded[], s: Scoring): Promise<(string[] | Error)[]> {
  try {
    return await synthesize(
      models,
      loaded.map((l) => l.capPixels),
      loaded.map((l) => l.item.index),
      s,
    );
  } catch {
    const out: (string[] | Error)[] = [];
    for (const l of loaded) {
      try {
        out.push((await synthesize(models, [l.capPixels], [l.item.index], s))[0] as string[]);
      } catch (err) {
        out.push(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return out;
  }
}

/**
 * Filter scores of (image, text) pairs: ITM match probability, or with `itc` the mean of it and the
 * ITC cosine mapped to [0, 1]. Texts are padded to a fixed length so a pair's score does not depend
 * on what else is in the batch.
 */
export async function scorePairs(
  filter: BlipForImageTextRetrieval,
  pixels: readonly Float32Array[],
  pairs: readonly { image: number; text: string }[],
  itc: boolean,
  maxLength = FILTER_TEXT_LENGTH,
): Promise<number[]> {
  if (pairs.length === 0) return [];
  const tok = filter.tokenizer;
  if (!tok) throw new Error('the filter checkpoint has no tokenizer (vocab.txt / tokenizer.json)');
  const size = filter.config.visionConfig.imageSize;
  const texts = pairs.map((p) => p.text);
  const first = tok.tokenToId('[ENC]') !== undefined ? '[ENC]' : '[CLS]';
  const itmEnc = tok.encodeBatch(texts, { maxLength, padding: 'max_length', firstToken: first });
  const itcEnc = itc ? tok.encodeBatch(texts, { maxLength, padding: 'max_length' }) : null;
  const n = pairs.length;
  const out = tf.tidy(() => {
    const px = pixelBatch(pixels, size);
    const image = filter.vision_model.forward(px).lastHiddenState; // [I, S, D], once per image
    const imageRows = pairs.map((p) => p.image);
    const ids = tf.tensor2d(itmEnc.inputIds, [n, itmEnc.seqLength], 'int32');
    const mask = tf.tensor2d(itmEnc.attentionMask, [n, itmEnc.seqLength], 'int32');
    const logits = filter.forwardItm({ imageEmbeds: image, imageRows, inputIds: ids, attentionMask: mask }).itmScore; // [P, 2]
    const prob = tf.reshape(tf.slice(tf.softmax(logits, -1), [0, 1], [n, 1]), [n]);
    if (!itcEnc) return prob;
    // ITC's image feature comes from the same vision states ([CLS] → vision_proj), not a second tower pass.
    const imageFeat = tf.gather(l2Normalize(filter.vision_proj.forward(firstToken(image))), tf.tensor1d(imageRows, 'int32')); // [P, E]
    const textFeat = filter.getTextFeatures(
      tf.tensor2d(itcEnc.inputIds, [n, itcEnc.seqLength], 'int32'),
      tf.tensor2d(itcEnc.attentionMask, [n, itcEnc.seqLength], 'int32'),
    );
    const cos = tf.sum(tf.mul(imageFeat, textFeat), -1);
    return tf.div(tf.add(prob, tf.div(tf.add(cos, 1), 2)), 2);
  });
  const v = Array.from(await out.data());
  out.dispose();
  return v;
}

const failed = (item: InputItem, reason: string, detail: string, extra: Partial<RecordResult> = {}): RecordResult => ({
  index: item.index,
  key: item.key,
  status: 'failed',
  reason,
  detail,
  ...extra,
});

const firstLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';

/** Scores pairs in one forward; when that throws, record by record so only the records at fault fail. */
async function scoreRecords(
  models: Models,
  loaded: readonly Loaded[],
  texts: readonly string[][],
  itc: boolean,
): Promise<(number[] | Error)[]> {
  const pairs = loaded.flatMap((_, i) => (texts[i] ?? []).map((text) => ({ image: i, text })));
  try {
    const all = await scorePairs(
      models.filter,
      loaded.map((l) => l.filterPixels),
      pairs,
      itc,
    );
    let k = 0;
    return loaded.map((_, i) => (texts[i] ?? []).map(() => all[k++] as number));
  } catch {
    const out: (number[] | Error)[] = [];
    for (const [i, l] of loaded.entries()) {
      try {
        out.push(
          await scorePairs(
            models.filter,
            [l.filterPixels],
            (texts[i] ?? []).map((text) => ({ image: 0, text })),
            itc,
          ),
        );
      } catch (err) {
        out.push(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return out;
  }
}

/**
 * Captions and scores one batch; every item comes back as exactly one result, in order. An error
 * while handling one record (its image, its synthetic captions, its scores) fails that record only;
 * a non-finite score fails it as `non_finite_score`, never as a decision.
 */
export async function processBatch(
  items: readonly InputItem[],
  root: string,
  models: Models,
  s: Scoring,
  threshold: number,
): Promise<RecordResult[]> {
  const results: (RecordResult | null)[] = [];
  const loaded: Loaded[] = [];
  const slot: number[] = [];
  for (const item of items) {
    if (item.failure || !item.record) {
      results.push(failed(item, item.failure?.reason ?? 'malformed_record', item.failure?.detail ?? ''));
      continue;
    }
    const l = await loadImage(item, root, models);
    if ('status' in l) {
      results.push(l);
      continue;
    }
    slot.push(results.length);
    results.push(null);
    loaded.push(l);
  }
  const synthetic = await synthesizeAll(models, loaded, s);
  const texts = loaded.map((l, i) => {
    const syn = synthetic[i] ?? [];
    return syn instanceof Error ? [] : [...(l.item.record?.captions ?? []).map((c) => scoringText(c, FILTER_TEXT_LENGTH)), ...syn];
  });
  const scores = await scoreRecords(models, loaded, texts, s.itc);
  loaded.forEach((l, i) => {
    const rec = l.item.record as CaptionRecord;
    const extra = { image: l.rel, meta: rec.meta };
    const syn = synthetic[i] as string[] | Error;
    const sc = scores[i] as number[] | Error;
    if (syn instanceof Error) {
      results[slot[i] as number] = failed(l.item, 'caption_error', `captioner: ${firstLine(syn)}`, extra);
      return;
    }
    if (sc instanceof Error) {
      results[slot[i] as number] = failed(l.item, 'score_error', `filter: ${firstLine(sc)}`, extra);
      return;
    }
    const bad = sc.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) {
      const which = bad < rec.captions.length ? `original caption ${bad}` : `synthetic caption ${bad - rec.captions.length}`;
      const detail = `filter score ${sc[bad]} for ${which}: check the filter weights`;
      results[slot[i] as number] = failed(l.item, 'non_finite_score', detail, extra);
      return;
    }
    let k = 0;
    const take = (text: string): ScoredCaption => {
      const score = round6(sc[k++] as number);
      return { text, score, kept: score >= threshold };
    };
    const original = rec.captions.map(take);
    const synth = syn.map(take);
    const anyOrig = original.some((c) => c.kept);
    const anySyn = synth.some((c) => c.kept);
    const status = anyOrig ? 'kept' : anySyn ? 'replaced' : 'dropped';
    results[slot[i] as number] = {
      index: l.item.index,
      key: l.item.key,
      status,
      ...(status === 'dropped' ? { reason: 'below_threshold', detail: `no caption scored ≥ ${threshold}` } : {}),
      ...extra,
      original,
      synthetic: synth,
      ...(l.item.removedCaptions ? { removedCaptions: l.item.removedCaptions } : {}),
    };
  });
  return results as RecordResult[];
}

/** The score threshold whose keep-rate on the first `sample` records' original captions is `keepRate`. */
export async function calibrateThreshold(o: {
  data: string | readonly string[];
  root: string;
  models: Models;
  scoring: Scoring;
  keepRate: number;
  sample: number;
  batchSize: number;
}): Promise<number> {
  const scores: number[] = [];
  let batch: InputItem[] = [];
  const flush = async () => {
    const rs = await processBatch(batch, o.root, o.models, { ...o.scoring, numCaptions: 0 }, 0);
    for (const r of rs) for (const c of r.original ?? []) scores.push(c.score);
    batch = [];
  };
  for await (const item of inputItems(o.data, o.root)) {
    if (item.index >= o.sample) break;
    batch.push(item);
    if (batch.length >= o.batchSize) await flush();
  }
  if (batch.length) await flush();
  if (scores.length === 0) throw new Error('calibration found no scorable caption in the first records');
  scores.sort((a, b) => b - a);
  const k = Math.min(scores.length - 1, Math.max(0, Math.ceil(o.keepRate * scores.length) - 1));
  return scores[k] as number;
}

/** The options that change results, as the journal records them (identity.ts adds data and models). */
export function resultOptions(o: CapfiltOptions, format: string): Record<string, unknown> {
  return {
    numCaptions: o.numCaptions ?? 1,
    topP: o.topP ?? 0.9,
    beam: o.beam ?? null,
    threshold: o.threshold ?? null,
    keepRate: o.keepRate ?? null,
    calibrateOn: o.calibrateOn ?? null,
    itc: Boolean(o.itc),
    // Only when on, so the journals of float runs (every run before int8 existed) keep their identity.
    ...(o.int8 ? { int8: true } : {}),
    batchSize: o.batchSize ?? 8,
    shard: o.shard ?? null,
    seed: o.seed ?? 0,
    maxLength: o.maxLength ?? 30,
    format,
  };
}

/** The input files, braces expanded, in order. */
export function dataFiles(data: string | readonly string[]): string[] {
  return (typeof data === 'string' ? [data] : [...data]).flatMap(expandBraces);
}

/** Refuses to resume a journal another run (other options, data or models) wrote (RESUME_MISMATCH). */
export function assertResumable(header: JournalHeader | null, identity: RunIdentity, journalPath: string): void {
  if (!header) return;
  const fp = fingerprintOf(identity);
  if (header.version === 2 && header.fingerprint === fp) return;
  const changes = header.version === 2 && header.identity ? diffIdentity(header.identity, identity) : ['it comes from an older CapFilt'];
  const what = changes.join('; ') || `fingerprint ${header.fingerprint} → ${fp}`;
  throw new VlError('RESUME_MISMATCH', `${journalPath} was written by another run (other options, data or models): ${what}`, {
    subject: journalPath,
    hint: 'rerun with the same inputs and options, or use another --out (or delete the journal to start over)',
  });
}

export const JOURNAL = 'journal.jsonl';

/** Temp files of an output write that a crash interrupted (`.name.tmp`, `.name.<pid>.<hex>.tmp`). */
export async function removeStaleTemps(out: string): Promise<void> {
  for (const f of await readdir(out)) if (f.startsWith('.') && f.endsWith('.tmp')) await rm(join(out, f), { force: true });
}

export interface RunState {
  header: JournalHeader;
  threshold: number;
  format: DatasetFormat;
  resumedBatches: number;
  processed: number;
}

export interface RunInputs {
  /** Options, data and models of this run (resume and merge compare them). */
  identity: RunIdentity;
  /** Records in the whole input, counted by the first pass (the report's balance is checked against it). */
  sourceRecords: number;
}

/** The pass over the data: resumes from the journal, journals each batch. Outputs are written by output.ts. */
export async function runCapfilt(o: CapfiltOptions & RunInputs, models: Models): Promise<RunState> {
  const format = formatOf(o.data);
  const files = dataFiles(o.data);
  const firstFile = files[0] as string;
  const root = resolve(o.images ?? join(firstFile, '..'));
  await mkdir(o.out, { recursive: true });
  await removeStaleTemps(o.out);
  const journalPath = join(o.out, JOURNAL);
  const fp = fingerprintOf(o.identity);
  const state = await scanJournal(journalPath);
  assertResumable(state.header, o.identity, journalPath);
  const batchSize = o.batchSize ?? 8;
  const scoring: Scoring = {
    numCaptions: o.numCaptions ?? 1,
    topP: o.topP ?? 0.9,
    beam: o.beam,
    itc: Boolean(o.itc),
    seed: o.seed ?? 0,
    maxLength: o.maxLength ?? 30,
  };
  let threshold: number;
  if (state.header) threshold = state.header.threshold;
  else if (o.keepRate !== undefined)
    threshold = await calibrateThreshold({
      data: o.data,
      root,
      models,
      scoring,
      keepRate: o.keepRate,
      sample: o.calibrateOn ?? 256,
      batchSize,
    });
  else threshold = o.threshold ?? 0.5;
  const header: JournalHeader = state.header ?? {
    kind: 'capfilt-journal',
    version: 2,
    fingerprint: fp,
    identity: o.identity,
    sourceRecords: o.sourceRecords,
    threshold,
    format,
    root,
    dataName: basename(firstFile),
    data: files.map((f) => resolve(f)),
    shard: o.shard ?? null,
  };
  const writer = await JournalWriter.open(journalPath, state.validBytes);
  try {
    if (!state.header) await writer.append(header);
    const skip = state.batches * batchSize;
    let mine = 0;
    let batchNo = state.batches;
    let batch: InputItem[] = [];
    for await (const item of inputItems(o.data, root)) {
      if (!inShard(item.index, o.shard)) continue;
      mine++;
      if (mine <= skip) continue;
      batch.push(item);
      if (batch.length === batchSize) {
        await writer.append({ batch: batchNo++, records: await processBatch(batch, root, models, scoring, threshold) });
        o.onProgress?.(mine, null);
        batch = [];
      }
    }
    if (batch.length) await writer.append({ batch: batchNo++, records: await processBatch(batch, root, models, scoring, threshold) });
    o.onProgress?.(mine, mine);
    return { header, threshold, format, resumedBatches: state.batches, processed: mine };
  } finally {
    await writer.close();
  }
}

/** Records a shard (or the whole run) owns out of `sourceRecords` input records. */
export function shardRecords(sourceRecords: number, shard: { index: number; count: number } | null | undefined): number {
  if (!shard) return sourceRecords;
  return sourceRecords > shard.index ? Math.ceil((sourceRecords - shard.index) / shard.count) : 0;
}
