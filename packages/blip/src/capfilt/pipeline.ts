// CapFilt (BLIP, Li et al. 2022, §3.3): a captioner writes synthetic captions for every image, a
// filter scores original and synthetic captions with its ITM head, and captions under a threshold
// go. Streams the input in fixed batches, journals each finished batch (journal.ts) so a killed run
// resumes exactly, and assigns records to shards by their position in the input.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type CaptionRecord, DataReport, type DatasetFormat, type DropReason, detectFormat, expandBraces, readDataset, Rng } from '@vl/core';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import { preprocessBlipImage } from '../processor.js';
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
  class Capture extends DataReport {
    override drop(reason: DropReason, subject: string, detail: string): void {
      super.drop(reason, subject, detail);
      drops.push({ reason, subject, detail });
    }
  }
  let index = 0;
  for await (const rec of readDataset({ path: data, imageRoot }, new Capture())) {
    for (const d of drops.splice(0)) yield { index: index++, key: d.subject, failure: { reason: d.reason, detail: d.detail } };
    yield { index: index++, key: rec.key, record: rec };
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
}

export async function loadModels(o: { captioner: string; filter: string }): Promise<Models> {
  const captioner = await BlipForConditionalGeneration.fromPretrained(o.captioner);
  try {
    return { captioner, filter: await BlipForImageTextRetrieval.fromPretrained(o.filter) };
  } catch (err) {
    captioner.dispose();
    throw err;
  }
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
    bytes = rec.image.kind === 'path' ? await readFile(rec.image.path) : rec.image.bytes;
  } catch (err) {
    return { index: item.index, key: item.key, status: 'failed', reason: 'missing_image', detail: (err as Error).message, image: rel, meta: rec.meta };
  }
  try {
    const cs = models.captioner.config.vision_config.image_size;
    const fs = models.filter.config.vision_config.image_size;
    const capPixels = await preprocessBlipImage(bytes, cs);
    const filterPixels = fs === cs ? capPixels : await preprocessBlipImage(bytes, fs);
    return { item, rel, capPixels, filterPixels };
  } catch (err) {
    return { index: item.index, key: item.key, status: 'failed', reason: 'corrupt_image', detail: (err as Error).message.split('\n')[0], image: rel, meta: rec.meta };
  }
}

export interface Scoring {
  numCaptions: number;
  topP: number;
  beam?: number;
  itc: boolean;
  seed: number;
  maxLength: number;
}

/** N synthetic captions for one image; the sampler is seeded by the record's input position. */
async function synthesize(models: Models, pixels: Float32Array, index: number, s: Scoring): Promise<string[]> {
  if (s.numCaptions === 0) return [];
  const size = models.captioner.config.vision_config.image_size;
  const t = tf.tensor4d(pixels, [1, 3, size, size]);
  try {
    const opts = s.beam
      ? { numBeams: s.beam, numReturnSequences: Math.min(s.numCaptions, s.beam), maxLength: s.maxLength }
      : { doSample: true, topP: s.topP, topK: 0, numReturnSequences: s.numCaptions, maxLength: s.maxLength, rng: new Rng(s.seed).fork(`record-${index}`) };
    const caps = await models.captioner.caption(t, opts);
    return [...new Set(caps.map((c) => c.trim()).filter((c) => c !== ''))];
  } finally {
    t.dispose();
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
  maxLength = 35,
): Promise<number[]> {
  if (pairs.length === 0) return [];
  const tok = filter.tokenizer;
  if (!tok) throw new Error('the filter checkpoint has no tokenizer (vocab.txt / tokenizer.json)');
  const size = filter.config.vision_config.image_size;
  const texts = pairs.map((p) => p.text);
  const first = tok.encId !== undefined ? '[ENC]' : '[CLS]';
  const itmEnc = tok.encodeBatch(texts, { maxLength, padding: 'max_length', firstToken: first });
  const itcEnc = itc ? tok.encodeBatch(texts, { maxLength, padding: 'max_length' }) : null;
  const n = pairs.length;
  const flat = new Float32Array(pixels.length * 3 * size * size);
  pixels.forEach((p, i) => flat.set(p, i * p.length));
  const out = tf.tidy(() => {
    const px = tf.tensor4d(flat, [pixels.length, 3, size, size]);
    const image = filter.vision_model.forward(px).last_hidden_state; // [I, S, D]
    const rows = tf.tensor1d(pairs.map((p) => p.image), 'int32');
    const pairImage = tf.gather(image, rows); // [P, S, D]
    const ids = tf.tensor2d(itmEnc.inputIds, [n, itmEnc.seqLen], 'int32');
    const mask = tf.tensor2d(itmEnc.attentionMask, [n, itmEnc.seqLen], 'int32');
    const logits = filter.forwardItm({ imageEmbeds: pairImage, inputIds: ids, attentionMask: mask }).itm_score; // [P, 2]
    const prob = tf.reshape(tf.slice(tf.softmax(logits, -1), [0, 1], [n, 1]), [n]);
    if (!itcEnc) return prob;
    const [, s, d] = image.shape as [number, number, number];
    const imageFeat = tf.gather(filter.getImageFeatures(px), rows); // [P, E]
    void s;
    void d;
    const textFeat = filter.getTextFeatures(tf.tensor2d(itcEnc.inputIds, [n, itcEnc.seqLen], 'int32'), tf.tensor2d(itcEnc.attentionMask, [n, itcEnc.seqLen], 'int32'));
    const cos = tf.sum(tf.mul(imageFeat, textFeat), -1);
    return tf.div(tf.add(prob, tf.div(tf.add(cos, 1), 2)), 2);
  });
  const v = Array.from(await out.data());
  out.dispose();
  return v;
}

/** Captions and scores one batch; every item comes back as exactly one result, in order. */
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
      results.push({ index: item.index, key: item.key, status: 'failed', reason: item.failure?.reason ?? 'malformed_record', detail: item.failure?.detail ?? '' });
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
  const synthetic: string[][] = [];
  for (const l of loaded) synthetic.push(await synthesize(models, l.capPixels, l.item.index, s));
  const pairs: { image: number; text: string }[] = [];
  loaded.forEach((l, i) => {
    for (const t of l.item.record?.captions ?? []) pairs.push({ image: i, text: t });
    for (const t of synthetic[i] ?? []) pairs.push({ image: i, text: t });
  });
  const scores = await scorePairs(models.filter, loaded.map((l) => l.filterPixels), pairs, s.itc);
  let k = 0;
  loaded.forEach((l, i) => {
    const rec = l.item.record as CaptionRecord;
    const take = (text: string): ScoredCaption => {
      const score = round6(scores[k++] as number);
      return { text, score, kept: score >= threshold };
    };
    const original = rec.captions.map(take);
    const syn = (synthetic[i] ?? []).map(take);
    const anyOrig = original.some((c) => c.kept);
    const anySyn = syn.some((c) => c.kept);
    const status = anyOrig ? 'kept' : anySyn ? 'replaced' : 'dropped';
    results[slot[i] as number] = {
      index: l.item.index,
      key: l.item.key,
      status,
      ...(status === 'dropped' ? { reason: 'below_threshold', detail: `no caption scored ≥ ${threshold}` } : {}),
      image: l.rel,
      meta: rec.meta,
      original,
      synthetic: syn,
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

export function fingerprint(o: CapfiltOptions, format: string): string {
  const pick = {
    data: o.data,
    images: o.images ?? null,
    captioner: resolve(o.captioner),
    filter: resolve(o.filter),
    numCaptions: o.numCaptions ?? 1,
    topP: o.topP ?? 0.9,
    beam: o.beam ?? null,
    threshold: o.threshold ?? null,
    keepRate: o.keepRate ?? null,
    calibrateOn: o.calibrateOn ?? null,
    itc: Boolean(o.itc),
    batchSize: o.batchSize ?? 8,
    shard: o.shard ?? null,
    seed: o.seed ?? 0,
    maxLength: o.maxLength ?? 30,
    format,
  };
  return createHash('sha256').update(JSON.stringify(pick)).digest('hex').slice(0, 16);
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

/** The pass over the data: resumes from the journal, journals each batch. Outputs are written by output.ts. */
export async function runCapfilt(o: CapfiltOptions, models: Models): Promise<RunState> {
  const format = formatOf(o.data);
  const firstFile = (typeof o.data === 'string' ? [o.data] : [...o.data]).flatMap(expandBraces)[0] as string;
  const root = resolve(o.images ?? join(firstFile, '..'));
  await mkdir(o.out, { recursive: true });
  await removeStaleTemps(o.out);
  const journalPath = join(o.out, JOURNAL);
  const fp = fingerprint(o, format);
  const state = await scanJournal(journalPath);
  if (state.header && state.header.fingerprint !== fp) {
    throw new Error(`${journalPath} was written with other options (fingerprint ${state.header.fingerprint}, now ${fp}); use the same command, or another --out`);
  }
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
  const header: JournalHeader = state.header ?? { kind: 'capfilt-journal', version: 1, fingerprint: fp, threshold, format, root, dataName: basename(firstFile), data: (typeof o.data === 'string' ? [o.data] : [...o.data]).flatMap(expandBraces).map((f) => resolve(f)), shard: o.shard ?? null };
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
