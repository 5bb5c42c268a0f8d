// Writes a synthetic captioned-scene dataset to disk: PNG/JPEG images (sharp), JSONL splits,
// vocab.txt and meta.json, from the pure plan in data/synth.ts.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng } from '../runtime/rng.js';
import { drawScene, planSynthDataset, synthVocabulary, type SynthOptions, type SynthRecord, type SynthSummary } from '../data/synth.js';
import { planSynthNlvr2, planSynthVqa, SYNTH_VQA_ANSWERS, synthTaskVocabulary } from '../data/synth-tasks.js';

/** Draws one record's image with its own generator (same seed and index → same pixels). */
export async function encodeSynthImage(record: SynthRecord, seed: number, imageSize: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const rng = new Rng(seed).fork(`pixels/${record.id}`);
  const px = drawScene(record.scene, imageSize, rng);
  const img = sharp(px, { raw: { width: imageSize, height: imageSize, channels: 3 } });
  return format === 'png' ? img.png({ compressionLevel: 6 }).toBuffer() : img.jpeg({ quality: 92 }).toBuffer();
}

/**
 * Writes `DIR/{train,val,test}.jsonl`, `DIR/images/<split>/<id>.png|jpg`, `DIR/vocab.txt` (see
 * synthVocabulary) and `DIR/meta.json`. With `task: 'vqa'` the split files hold questions (SynthVqaRecord)
 * and `DIR/answers.json` the answer list; with `'nlvr2'` image-pair statements (SynthNlvr2Record); their
 * vocab.txt adds the question words after the caption vocabulary's (synthTaskVocabulary).
 * `onProgress(done, total)` is called as images are written.
 */
export async function writeSynthDataset(options: SynthOptions, onProgress?: (done: number, total: number) => void): Promise<SynthSummary> {
  const t0 = performance.now();
  const { records, summary } = planSynthDataset(options);
  const task = options.task ?? 'captions';
  const taskRng = new Rng(summary.seed).fork(`task/${task}`);
  const lines: { split: string }[] =
    task === 'vqa'
      ? planSynthVqa(records, options.perImage ?? 3, taskRng)
      : task === 'nlvr2'
        ? planSynthNlvr2(records, options.perImage ?? 2, taskRng)
        : records;
  const out = options.out;
  for (const split of ['train', 'val', 'test']) await mkdir(join(out, 'images', split), { recursive: true });
  const concurrency = Math.max(1, options.concurrency ?? 8);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < records.length) {
      const rec = records[next++] as SynthRecord;
      const bytes = await encodeSynthImage(rec, summary.seed, summary.imageSize, summary.format);
      await writeFile(join(out, rec.image), bytes);
      onProgress?.(++done, records.length);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const counts = { train: 0, val: 0, test: 0 };
  for (const split of ['train', 'val', 'test'] as const) {
    const rows = lines.filter((r) => r.split === split).map((r) => JSON.stringify(r));
    counts[split] = rows.length;
    await writeFile(join(out, `${split}.jsonl`), rows.length ? `${rows.join('\n')}\n` : '');
  }
  const vocab = task === 'captions' ? synthVocabulary() : synthTaskVocabulary(synthVocabulary());
  await writeFile(join(out, 'vocab.txt'), `${vocab.join('\n')}\n`);
  if (task === 'vqa') await writeFile(join(out, 'answers.json'), `${JSON.stringify(SYNTH_VQA_ANSWERS)}\n`);
  const full: SynthSummary = { out, ...summary, task, records: counts, seconds: (performance.now() - t0) / 1000 };
  const { seconds: _s, out: _o, ...meta } = full;
  await writeFile(join(out, 'meta.json'), `${JSON.stringify({ generator: 'vl data synth', version: 1, ...meta }, null, 2)}\n`);
  return full;
}
