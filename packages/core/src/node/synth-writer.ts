// Writes a synthetic captioned-scene dataset to disk: PNG/JPEG images (sharp), JSONL splits,
// vocab.txt and meta.json, from the pure plan in data/synth.ts.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng } from '../runtime/rng.js';
import { drawScene, planSynthDataset, synthVocabulary, type SynthOptions, type SynthRecord, type SynthSummary } from '../data/synth.js';

/** Draws one record's image with its own generator (same seed and index → same pixels). */
export async function encodeSynthImage(record: SynthRecord, seed: number, imageSize: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const rng = new Rng(seed).fork(`pixels/${record.id}`);
  const px = drawScene(record.scene, imageSize, rng);
  const img = sharp(px, { raw: { width: imageSize, height: imageSize, channels: 3 } });
  return format === 'png' ? img.png({ compressionLevel: 6 }).toBuffer() : img.jpeg({ quality: 92 }).toBuffer();
}

/**
 * Writes `DIR/{train,val,test}.jsonl`, `DIR/images/<split>/<id>.png|jpg`, `DIR/vocab.txt` (see
 * synthVocabulary) and `DIR/meta.json`.
 * `onProgress(done, total)` is called as images are written.
 */
export async function writeSynthDataset(options: SynthOptions, onProgress?: (done: number, total: number) => void): Promise<SynthSummary> {
  const t0 = performance.now();
  const { records, summary } = planSynthDataset(options);
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
  for (const split of ['train', 'val', 'test'] as const) {
    const lines = records.filter((r) => r.split === split).map((r) => JSON.stringify(r));
    await writeFile(join(out, `${split}.jsonl`), lines.length ? `${lines.join('\n')}\n` : '');
  }
  await writeFile(join(out, 'vocab.txt'), `${synthVocabulary().join('\n')}\n`);
  const full: SynthSummary = { out, ...summary, seconds: (performance.now() - t0) / 1000 };
  const { seconds: _s, out: _o, ...meta } = full;
  await writeFile(join(out, 'meta.json'), `${JSON.stringify({ generator: 'vl data synth', version: 1, ...meta }, null, 2)}\n`);
  return full;
}
