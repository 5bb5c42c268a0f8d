#!/usr/bin/env node
// The CapFilt demo (`npm run demo`, docs/capfilt.md): makes the synthetic captioned-scenes dataset with
// 30% noisy training captions, runs `blip capfilt` on it with the embedded `scenes-tiny` captioner and
// filter and BLIP's rule (keep a caption when ITM P(match) ≥ 0.5), and measures
//   - noise removal against the noise labels the generator recorded: precision, recall (all noisy
//     captions and per kind), and the removal rate of clean captions;
//   - downstream: a tiny BLIP (ITC + LM, from scratch) trained on the noisy, the cleaned and the clean
//     (noise-free upper bound) captions, 3 seeds each; held-out retrieval R@1 (mean of text→image and
//     image→text) and captioning CIDEr-D on the clean test split, mean ± standard error over seeds.
// Every number goes to OUT/results.json (docs/capfilt/demo-results.json is a copy) and is printed with
// the issue's targets. Uses the built dist files (run after `nx run-many -t build`); deterministic by seed.
// usage: node packages/blip/scripts/demo.mjs [OUT_DIR (packages/blip/runs/capfilt-demo)] [--reuse] [--backend wasm]
//        [--images 1600] [--downstream-steps 300] [--seeds 3] [--captioner scenes-tiny] [--filter scenes-tiny]
//        [--threshold 0.5] [--jobs 2] [--docs DIR (also copy results.json, results.md and the CapFilt
//        sample grid and histograms there as demo-*: docs/capfilt)]
// Starts from an empty OUT_DIR unless --reuse (then finished steps are picked up where they stopped).
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSynthDataset } from '@vl/core/node';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
// Default under packages/blip/runs/ (git-ignored), wherever the script is started from.
const out = args[0] && !args[0].startsWith('--') ? args[0] : fileURLToPath(new URL('../runs/capfilt-demo', import.meta.url));
const backend = flag('backend', 'wasm');
const images = Number(flag('images', '1600'));
const downstreamSteps = flag('downstream-steps', '300');
const seeds = Number(flag('seeds', '3'));
const jobs = Number(flag('jobs', '2'));
const captioner = flag('captioner', 'scenes-tiny');
const filter = flag('filter', 'scenes-tiny');
const threshold = flag('threshold', '0.5');
const docs = flag('docs', null);
const data = join(out, 'data');
const t0 = Date.now();
const clock = () => `${((Date.now() - t0) / 1000).toFixed(0)}s`;
const step = (msg) => console.log(`[${clock()}] ${msg}`);

// Every model runs as the user runs it: the built `blip` executable, in a child process.
const CLI = fileURLToPath(new URL('../bin/blip.js', import.meta.url));
function blip(argv) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('close', (code) => {
      if (code !== 0) {
        console.error(`blip ${argv.join(' ')} exited with ${code}`);
        process.exit(code ?? 1);
      }
      resolve(stdout.trim().split('\n'));
    });
  });
}
/** Runs the async tasks `jobs` at a time (the machine's cores), in order of the list. */
async function pool(tasks) {
  const results = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, tasks.length) }, worker));
  return results;
}

// Only the folders this script makes are removed, never OUT_DIR itself.
if (!args.includes('--reuse')) for (const d of ['data', 'capfilt', 'downstream']) await rm(join(out, d), { recursive: true, force: true });

// 1. Data: train is the noisy split (30% of its captions corrupted, labels recorded), test is clean
//    (≥ 500 images) and measures the downstream models. The embedded models never saw these scenes
//    (they were trained on seeds 100 and 101, scripts/pretrain-scenes.mjs).
const splits = [0.65, 0, 0.35];
if (!existsSync(join(data, 'meta.json'))) {
  const s = await writeSynthDataset({ out: data, images, seed: 0, imageSize: 32, captionsPerImage: 3, noise: 0.3, splits });
  step(
    `synthetic data: ${s.splits.train} noisy train / ${s.splits.test} clean test images, ${s.noisyCaptions.total} of ${s.trainCaptions} train captions noisy`,
  );
}
const trainRecords = readFileSync(join(data, 'train.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
const testImages = readFileSync(join(data, 'test.jsonl'), 'utf8').split('\n').filter(Boolean).length;

// 2. CapFilt on the noisy split with BLIP's rule: one synthetic caption per image (nucleus sampling,
//    p = 0.9, as the paper), every caption kept when the filter's ITM P(match) ≥ 0.5.
const cf = join(out, 'capfilt');
const cfArgs = ['capfilt', '--data', join(data, 'train.jsonl'), '--out', cf, '--captioner', captioner, '--filter', filter];
cfArgs.push('--num-captions', '1', '--threshold', threshold, '--batch-size', '32', '--seed', '0', '--quiet', '--backend', backend);
// It runs as the first task of the pool below, beside the first downstream trainings, which do not
// need it (only the trainings on the cleaned captions wait for it).
let capfiltDone;
const capfiltTask = async () => {
  capfiltDone = blip(cfArgs).then((lines) => {
    step(`capfilt (${captioner} captioner, ${filter} filter, keep when ITM P(match) ≥ ${threshold}): ${lines[0]}`);
    writeFileSync(join(data, 'train.cleaned.jsonl'), readFileSync(join(cf, 'train.jsonl')));
  });
  await capfiltDone;
};

// 3. Downstream: the same tiny BLIP trained on three caption sets of the same images.
//    noisy: the 30%-noisy originals; cleaned: what CapFilt wrote (kept originals + kept synthetic
//    captions, records with nothing kept dropped); clean: every noisy caption replaced by the clean
//    one it was made from (the upper bound). Image paths are relative to the data folder. The cleaned
//    set is written when CapFilt has finished.
writeFileSync(
  join(data, 'train.clean.jsonl'),
  trainRecords.map((r) => JSON.stringify({ ...r, captions: r.captions.map((c, i) => r.noise[i]?.clean ?? c) })).join('\n') + '\n',
);
const sets = { noisy: 'train.jsonl', cleaned: 'train.cleaned.jsonl', clean: 'train.clean.jsonl' };
// Per seed the cleaned set is trained last, so the first trainings run while CapFilt does.
const trainOrder = ['noisy', 'clean', 'cleaned'];
const common = ['--vocab', join(data, 'vocab.txt'), '--image-size', '32', '--batch-size', '32', '--no-momentum', '--lr', '2e-3'];
common.push('--itm', '0', '--quiet', '--backend', backend);
// Trainings and evaluations are separate tasks, every training queued before any evaluation: with 9
// trainings on 2 workers one worker trains 5 times, and the other runs the evaluations meanwhile
// (an evaluation waits for its training). Same commands and outputs as one task per set and seed.
const jobsOf = [];
for (let seed = 0; seed < seeds; seed++)
  for (const name of trainOrder) {
    const file = sets[name];
    const dir = join(out, 'downstream', `${name}-seed${seed}`);
    jobsOf.push({ name, seed, file, dir, evalOut: join(dir, 'eval.json') });
  }
const trained = new Map();
const trainings = jobsOf.map((j) => async () => {
  if (j.name === 'cleaned') await capfiltDone;
  const done = existsSync(j.evalOut)
    ? Promise.resolve()
    : blip([
        'pretrain',
        '--train',
        join(data, j.file),
        '--out',
        j.dir,
        '--max-steps',
        downstreamSteps,
        '--seed',
        String(j.seed),
        ...common,
      ]);
  trained.set(j, done);
  await done;
});
const evaluations = jobsOf.map((j) => async () => {
  await trained.get(j);
  if (!existsSync(j.evalOut)) {
    await blip([
      'eval',
      '--model',
      j.dir,
      '--data',
      join(data, 'test.jsonl'),
      '--beams',
      '1',
      '--max-length',
      '20',
      '--out',
      j.evalOut,
      '--quiet',
    ]);
    await rm(join(j.dir, 'ckpt'), { recursive: true, force: true });
  }
  const r = JSON.parse(readFileSync(j.evalOut, 'utf8'));
  const r1 = (r.retrieval.textToImage[1] + r.retrieval.imageToText[1]) / 200; // percent → fraction
  step(`downstream ${j.name} seed ${j.seed}: retrieval R@1 mean ${(100 * r1).toFixed(1)}%, CIDEr-D ${r.captioning.cider.toFixed(3)}`);
  return { name: j.name, seed: j.seed, r1, cider: r.captioning.cider, chance: r.retrieval.chance };
});
const runs = (await pool([capfiltTask, ...trainings, ...evaluations])).slice(1 + trainings.length);

// Noise removal over the original captions, from the journal (every caption's score and decision)
// and the noise labels the generator recorded.
const KIND = { other_caption: 'otherImage', keyword_soup: 'keywordSoup', wrong_attribute: 'wrongAttribute' };
const sources = new Map(trainRecords.map((r, i) => [`train.jsonl:${i + 1}`, r]));
const count = { tp: 0, fp: 0, fn: 0, tn: 0 };
const byKind = Object.fromEntries(Object.values(KIND).map((k) => [k, { removed: 0, total: 0 }]));
// Clean captions removed, by the number of shape groups in their scene (1–3): where the filter errs.
const cleanByGroups = {};
const journal = readFileSync(join(cf, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).slice(1);
for (const line of journal)
  for (const rec of JSON.parse(line).p.records) {
    const source = sources.get(rec.key);
    const noise = source?.noise ?? [];
    const groups = source?.scene.groups.length ?? 0;
    (rec.original ?? []).forEach((c, i) => {
      const removed = !c.kept;
      const label = noise[i] ?? null;
      if (label) {
        const k = byKind[KIND[label.kind]];
        k.total++;
        if (removed) k.removed++;
      }
      count[removed ? (label ? 'tp' : 'fp') : label ? 'fn' : 'tn']++;
      if (!label) {
        const g = (cleanByGroups[groups] ??= { removed: 0, total: 0 });
        g.total++;
        if (removed) g.removed++;
      }
    });
  }
const ratio = (a, b) => (b > 0 ? a / b : 0);
const noiseRemoval = {
  precision: ratio(count.tp, count.tp + count.fp),
  recall: ratio(count.tp, count.tp + count.fn),
  recallByKind: Object.fromEntries(Object.entries(byKind).map(([k, v]) => [k, ratio(v.removed, v.total)])),
  cleanRemovedRate: ratio(count.fp, count.fp + count.tn),
  counts: { ...count, byKind, cleanByGroups },
};

/** Mean and standard error (sample s.d. / √n) over seeds. */
function meanSe(xs) {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) : 0;
  return [m, Math.sqrt(v / xs.length)];
}
const downstream = {};
for (const name of Object.keys(sets)) {
  const rs = runs.filter((r) => r.name === name);
  const [retrievalR1Mean, retrievalR1Se] = meanSe(rs.map((r) => r.r1));
  const [ciderD, ciderDSe] = meanSe(rs.map((r) => r.cider));
  downstream[name] = {
    retrievalR1Mean,
    retrievalR1Se,
    ciderD,
    ciderDSe,
    seeds: rs.map((r) => ({ seed: r.seed, retrievalR1: r.r1, ciderD: r.cider })),
  };
}
/** cleaned − noisy, its standard error (independent seeds) and whether it exceeds twice that. */
function gain(metric, se) {
  const d = downstream.cleaned[metric] - downstream.noisy[metric];
  const s = Math.hypot(downstream.cleaned[se], downstream.noisy[se]);
  return { difference: d, se: s, exceedsTwoSe: d > 2 * s };
}

const targets = {
  precision: { target: 0.85, value: noiseRemoval.precision },
  recall: { target: 0.8, value: noiseRemoval.recall },
  ...Object.fromEntries(Object.entries(noiseRemoval.recallByKind).map(([k, v]) => [`recall.${k}`, { target: 0.7, value: v }])),
};
for (const t of Object.values(targets)) t.met = t.value >= t.target;
const results = {
  rule: `keep a caption when the filter's ITM P(match) ≥ ${threshold}${Number(threshold) === 0.5 ? " (BLIP's CapFilt rule)" : " (BLIP's rule is 0.5)"}`,
  command: `node packages/blip/scripts/demo.mjs ${args.join(' ')}`.trim(),
  captioner,
  filter,
  data: { images, seed: 0, imageSize: 32, noise: 0.3, trainImages: trainRecords.length, testImages, captionsPerImage: 3 },
  noiseRemoval,
  downstream,
  downstreamSetup: {
    model: 'BLIP tiny from scratch, ITC + LM',
    steps: Number(downstreamSteps),
    seeds,
    seSource: 'sample s.d. over seeds / √seeds',
  },
  comparisons: { retrievalR1: gain('retrievalR1Mean', 'retrievalR1Se'), ciderD: gain('ciderD', 'ciderDSe') },
  targets,
  seconds: Math.round((Date.now() - t0) / 1000),
  reused: args.includes('--reuse'),
};
writeFileSync(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);

// The same numbers as Markdown tables (docs/capfilt.md shows docs/capfilt/demo-results.md).
const pct = (x) => `${(100 * x).toFixed(1)}%`;
const mark = (ok) => (ok ? 'met' : 'NOT met');
const KIND_NAMES = { otherImage: "another image's caption", keywordSoup: 'keyword soup', wrongAttribute: 'one wrong attribute' };
const md = [
  `<!-- written by packages/blip/scripts/demo.mjs from results.json: ${results.command} -->`,
  '',
  `Rule: ${results.rule}. Captioner \`${captioner}\`, filter \`${filter}\`. ${trainRecords.length} noisy training images (${count.tp + count.fn} of ${count.tp + count.fp + count.fn + count.tn} captions noisy), ${testImages} clean test images. ${results.reused ? `Rewritten from the finished steps of an earlier run (--reuse) in ${results.seconds} s.` : `${results.seconds} s.`}`,
  '',
  '| noise removal | value | target | |',
  '| --- | ---: | ---: | --- |',
  `| precision (removed captions that were noisy) | ${pct(noiseRemoval.precision)} | ≥ 85% | ${mark(targets.precision.met)} |`,
  `| recall (noisy captions removed) | ${pct(noiseRemoval.recall)} | ≥ 80% | ${mark(targets.recall.met)} |`,
  ...Object.entries(noiseRemoval.recallByKind).map(
    ([k, v]) => `| recall, ${KIND_NAMES[k]} (${byKind[k].removed} of ${byKind[k].total}) | ${pct(v)} | ≥ 70% | ${mark(v >= 0.7)} |`,
  ),
  `| clean captions removed (${count.fp} of ${count.fp + count.tn}) | ${pct(noiseRemoval.cleanRemovedRate)} | | |`,
  ...Object.entries(cleanByGroups).map(
    ([g, v]) =>
      `| clean captions removed, scenes with ${g} shape group${g === '1' ? '' : 's'} (${v.removed} of ${v.total}) | ${pct(v.removed / v.total)} | | |`,
  ),
  '',
  `| downstream model (${downstreamSteps} steps, ${seeds} seeds) trained on | retrieval R@1, mean of text→image and image→text | CIDEr-D |`,
  '| --- | ---: | ---: |',
  ...Object.keys(sets).map(
    (n) =>
      `| ${n} captions | ${pct(downstream[n].retrievalR1Mean)} ± ${pct(downstream[n].retrievalR1Se)} | ${downstream[n].ciderD.toFixed(3)} ± ${downstream[n].ciderDSe.toFixed(3)} |`,
  ),
  `| cleaned − noisy (target: > 2 s.e.) | ${pct(results.comparisons.retrievalR1.difference)} ± ${pct(results.comparisons.retrievalR1.se)}: ${mark(results.comparisons.retrievalR1.exceedsTwoSe)} | ${results.comparisons.ciderD.difference.toFixed(3)} ± ${results.comparisons.ciderD.se.toFixed(3)}: ${mark(results.comparisons.ciderD.exceedsTwoSe)} |`,
  '',
  "Mean ± standard error over seeds (sample s.d. / √seeds); the difference's s.e. is √(s.e.² + s.e.²).",
  '',
].join('\n');
writeFileSync(join(out, 'results.md'), md);
if (docs) {
  mkdirSync(docs, { recursive: true });
  copyFileSync(join(out, 'results.json'), join(docs, 'demo-results.json'));
  copyFileSync(join(out, 'results.md'), join(docs, 'demo-results.md'));
  copyFileSync(join(cf, 'samples.png'), join(docs, 'demo-samples.png'));
  copyFileSync(join(cf, 'histograms.png'), join(docs, 'demo-histograms.png'));
}

console.log('');
console.log(`CapFilt demo results (${results.rule})`);
console.log(
  `  noise removal: precision ${pct(noiseRemoval.precision)} (target ≥ 85%: ${mark(targets.precision.met)}), recall ${pct(noiseRemoval.recall)} (target ≥ 80%: ${mark(targets.recall.met)})`,
);
for (const [k, v] of Object.entries(noiseRemoval.recallByKind))
  console.log(`    recall, ${k.padEnd(14)} ${pct(v)} of ${byKind[k].total} (target ≥ 70%: ${mark(v >= 0.7)})`);
console.log(`    clean captions removed: ${pct(noiseRemoval.cleanRemovedRate)} of ${count.fp + count.tn}`);
for (const n of Object.keys(sets)) {
  const d = downstream[n];
  console.log(
    `  downstream, trained on ${n.padEnd(7)} captions: retrieval R@1 ${pct(d.retrievalR1Mean)} ± ${pct(d.retrievalR1Se)}, CIDEr-D ${d.ciderD.toFixed(3)} ± ${d.ciderDSe.toFixed(3)}`,
  );
}
for (const [k, g] of Object.entries(results.comparisons))
  console.log(`  cleaned − noisy, ${k}: ${g.difference.toFixed(4)} ± ${g.se.toFixed(4)} (target > 2 s.e.: ${mark(g.exceedsTwoSe)})`);
console.log(`  results: ${join(out, 'results.json')}; CapFilt report: ${join(cf, 'report.md')}; total ${clock()}`);
