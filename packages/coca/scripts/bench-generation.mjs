// KV-cached vs open_clip-style (full recompute) CoCa generation on a base-size CoCa (coca_ViT-B-32:
// ViT-B/32 at 224, 12+12 text/decoder layers of width 512, vocab 49408; random weights — the ids differ
// from a trained model's, the work per step does not). Greedy forces seqLen by a min length so both
// runs do the same number of steps; checks that both give the same ids. Writes docs/coca-bench.json.
// Run: npm run build && node packages/coca/scripts/bench-generation.mjs [--backend wasm|cpu] [--seq-len 20]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { CoCa, cocaPreset, generateCoca, initRuntime } from '@vl/coca';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const backend = arg('backend', 'wasm');
const seqLen = Number(arg('seq-len', '20'));
const out = arg('out', 'docs/coca-bench.json');
await initRuntime({ backend });
const load0 = loadavg()[0];
const model = new CoCa(cocaPreset('base'), { seed: 0 });
model.eval();
const image = tf.randomNormal([1, 3, 224, 224], 0, 1, 'float32', 1);
const base = { seqLen, minSeqLen: seqLen - 1, sotTokenId: 49406, eosTokenId: 49407 };
const calls = {
  greedy: { ...base, generationType: 'top_k', topK: 1 },
  'beam 6 (3 groups)': { ...base, numBeams: 6, numBeamGroups: 3 },
};
const rows = [];
for (const [name, opts] of Object.entries(calls)) {
  const timed = async (cache) => {
    const t0 = performance.now();
    const ids = await generateCoca(model, image, { ...opts, cache });
    return { ms: performance.now() - t0, ids };
  };
  await timed(true); // warm-up (kernels, wasm compilation)
  const cached = await timed(true);
  const full = await timed(false);
  const same = JSON.stringify(cached.ids) === JSON.stringify(full.ids);
  rows.push({
    call: name,
    tokens: cached.ids[0].length,
    cachedSeconds: cached.ms / 1000,
    fullSeconds: full.ms / 1000,
    speedup: full.ms / cached.ms,
    sameIds: same,
  });
  console.log(
    `${name}: cached ${(cached.ms / 1000).toFixed(2)} s, full recompute ${(full.ms / 1000).toFixed(2)} s, ×${(full.ms / cached.ms).toFixed(2)}, same ids: ${same}`,
  );
}
const result = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: `${cpus()[0]?.model ?? '?'} (${cpus().length} cores)`,
  backend,
  model: 'coca_ViT-B-32 (cocaPreset base), random weights, 1 image 224×224',
  loadAverage: [load0, loadavg()[0]],
  rows,
};
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
image.dispose();
model.dispose();
