// The inputs of the CapFilt speed benchmark (issue 16): a BLIP-base captioner and filter with random
// weights (384 px, the Hugging Face folder layout: config.json, model.safetensors, vocab.txt) and N
// 400×300 PNG photos with a caption each. Written once into DIR and reused while DIR/ready.json says the
// same thing. The vocabulary is made up (BERT's special ids, numbered words), so both engines tokenize
// alike without a download.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng } from '@vl/core';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval, blipPreset } from '../dist/index.js';

const VOCAB = 30524;

function vocabLines() {
  const lines = [];
  for (let i = 0; i < 30522; i++) {
    if (i === 0) lines.push('[PAD]');
    else if (i < 100) lines.push(`[unused${i - 1}]`);
    else if (i === 100) lines.push('[UNK]');
    else if (i === 101) lines.push('[CLS]');
    else if (i === 102) lines.push('[SEP]');
    else if (i === 103) lines.push('[MASK]');
    else lines.push(`w${i}`);
  }
  lines.push('[DEC]', '[ENC]');
  return lines;
}

async function photo(rng, path) {
  const w = 400;
  const h = 300;
  const px = new Uint8Array(w * h * 3);
  const base = [rng.int(256), rng.int(256), rng.int(256)];
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) px[(y * w + x) * 3 + c] = (base[c] + x * (c + 1) + y * (3 - c) + rng.int(24)) & 255;
  await sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(path);
}

/** Makes (or reuses) DIR/{captioner,filter,images,list.jsonl}; returns their paths. */
export async function capfiltBenchData(dir, images = 32) {
  const paths = {
    captioner: join(dir, 'captioner'),
    filter: join(dir, 'filter'),
    list: join(dir, 'list.jsonl'),
    images: join(dir, 'images'),
  };
  // Models and images are made (and reused) separately: another image count keeps the two 1 GB models.
  const modelsReady = join(dir, 'models-ready.json');
  const modelsWant = JSON.stringify({ version: 1, preset: 'base', vocab: VOCAB });
  if (!(existsSync(modelsReady) && readFileSync(modelsReady, 'utf8') === modelsWant)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'vocab.txt'), `${vocabLines().join('\n')}\n`);
    const config = blipPreset('base');
    if (config.textConfig.vocabSize !== VOCAB) throw new Error(`BLIP-base vocabulary is ${config.textConfig.vocabSize}, expected ${VOCAB}`);
    for (const [Model, out, seed] of [
      [BlipForConditionalGeneration, paths.captioner, 1],
      [BlipForImageTextRetrieval, paths.filter, 2],
    ]) {
      const m = new Model(config, new Rng(seed));
      m.tokenizerDir = dir;
      await m.savePretrained(out);
      m.dispose();
    }
    writeFileSync(modelsReady, modelsWant);
  }
  const imagesReady = join(dir, 'images-ready.json');
  const imagesWant = JSON.stringify({ version: 1, images });
  if (!(existsSync(imagesReady) && readFileSync(imagesReady, 'utf8') === imagesWant)) {
    mkdirSync(paths.images, { recursive: true });
    const rng = new Rng(3);
    const lines = [];
    for (let i = 0; i < images; i++) {
      const name = `img${String(i).padStart(3, '0')}.png`;
      await photo(rng, join(paths.images, name));
      const words = Array.from({ length: 6 + rng.int(10) }, () => `w${1000 + rng.int(28000)}`);
      lines.push(JSON.stringify({ image: name, captions: [words.join(' ')] }));
    }
    writeFileSync(paths.list, `${lines.join('\n')}\n`);
    writeFileSync(imagesReady, imagesWant);
  }
  return paths;
}
