#!/usr/bin/env node
// Base size (ViT-B/16 at 384px + BERT-base): a randomly initialised BlipForConditionalGeneration and
// BlipForImageTextRetrieval round-trip exactly through savePretrained → fromPretrained, and the time
// to caption one 384×384 image (greedy and 3 beams, 20 tokens). Needs `npx tsup` in packages/blip.
// usage: node scripts/base.mjs [--backend wasm] [--skip-retrieval]
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, stateDictToHost } from '@vl/core';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval, blipPreset } from '../dist/index.js';

const args = process.argv.slice(2);
const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'wasm';
const info = await initRuntime({ backend });
console.log(`backend ${info.choice}; ${process.arch} ${process.version}`);
const config = blipPreset('base');
const tmp = mkdtempSync(join(tmpdir(), 'blip-base-'));

async function roundTrip(Model) {
  let t = Date.now();
  const a = new Model(config);
  const build = Date.now() - t;
  const dir = join(tmp, Model.name);
  t = Date.now();
  await a.savePretrained(dir);
  const save = Date.now() - t;
  t = Date.now();
  const b = await Model.fromPretrained(dir);
  const load = Date.now() - t;
  const ha = await stateDictToHost(a);
  const hb = await stateDictToHost(b);
  let tensors = 0;
  let differing = 0;
  for (const [k, v] of Object.entries(ha)) {
    tensors++;
    const w = hb[k];
    if (
      !w ||
      Buffer.compare(
        Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength),
        Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength),
      ) !== 0
    )
      differing++;
  }
  const missing = Object.keys(hb).length - Object.keys(ha).length;
  const mb = statSync(join(dir, 'model.safetensors')).size / 2 ** 20;
  console.log(
    `${Model.name.replace(/^_/, '')}: ${(a.numParameters() / 1e6).toFixed(1)}M parameters, ${tensors} tensors, ${mb.toFixed(0)} MiB; round trip: ${differing} differing, ${missing} extra/missing (build ${build} ms, save ${save} ms, load ${load} ms)`,
  );
  if (differing || missing) process.exitCode = 1;
  a.dispose();
  return b;
}

// Retrieval first and freed, so at most two base models share the wasm heap (~0.9 GB each).
if (!args.includes('--skip-retrieval')) (await roundTrip(BlipForImageTextRetrieval)).dispose();
const captioner = await roundTrip(BlipForConditionalGeneration);
const pixels = tf.randomNormal([1, 3, 384, 384], 0, 1, 'float32', 0);
for (const numBeams of [1, 3]) {
  await captioner.generate(pixels, { maxLength: 4, numBeams }); // warm-up
  const times = [];
  for (let i = 0; i < 2; i++) {
    const t = performance.now();
    const out = await captioner.generate(pixels, { maxLength: 20, numBeams });
    times.push(performance.now() - t);
    if (i === 0) console.log(`  generated ${out.sequences[0].length} tokens`);
  }
  const vt = performance.now();
  tf.dispose(captioner.visionForward(pixels));
  const vision = performance.now() - vt;
  console.log(
    `caption one 384×384 image, ${numBeams === 1 ? 'greedy' : `${numBeams} beams`}, 20 tokens: ${Math.min(...times).toFixed(0)} ms (best of 2; vision tower alone ${vision.toFixed(0)} ms)`,
  );
}
pixels.dispose();
captioner.dispose();
rmSync(tmp, { recursive: true, force: true });
