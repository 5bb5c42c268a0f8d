// BEiT-3 masked data modeling at tiny scale: does MDM pretraining help retrieval fine-tuning on the synthetic
// scenes? Per seed: pretrain the tiny backbone by MDM (images, texts and pairs mixed) on all training scenes
// with a k-means visual tokenizer, then fine-tune Beit3ForRetrieval on a small labelled prefix of them, once
// from the MDM backbone and once from scratch (same seed, same steps, same data order), and measure Recall@K
// on the test scenes. Writes results.json and results.md (mean ± sample std over seeds; the difference of
// means ± its standard error; "reproduced" only if it exceeds 2 standard errors).
//
//   npm run build && node scripts/beit3-mdm-ablation.mjs --out docs/beit3-mdm [--seeds 0,1,2] [--images 800]
//     [--pretrain-steps 300] [--finetune-steps 400] [--finetune-records 320] [--work /tmp/beit3-mdm]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initRuntime } from '@vl/core';
import { writeSynthDataset } from '@vl/core/node';
import { finetuneBeit3Retrieval, pretrainBeit3Mdm, trainBeit3VisualTokenizer } from '@vl/beit3';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string', default: 'docs/beit3-mdm' },
    work: { type: 'string', default: '/tmp/beit3-mdm-ablation' },
    seeds: { type: 'string', default: '0,1,2' },
    images: { type: 'string', default: '800' },
    'pretrain-steps': { type: 'string', default: '300' },
    'finetune-steps': { type: 'string', default: '400' },
    'finetune-records': { type: 'string', default: '320' },
    'visual-vocab': { type: 'string', default: '64' },
    backend: { type: 'string', default: 'wasm' },
    // scratch, mdm (images + texts + pairs), mdm-pairs (MDM on the image-text pairs only: --mim 0 --mlm 0)
    arms: { type: 'string', default: 'scratch,mdm' },
    // Take the runs of arms already in this results.json (same setup) instead of training them again.
    reuse: { type: 'string' },
  },
});
const seeds = a.seeds.split(',').map(Number);
const setup = {
  preset: 'tiny',
  backend: a.backend,
  data: { images: Number(a.images), imageSize: 32, captionsPerImage: 1, splits: [0.85, 0.0, 0.15], seed: 0 },
  tokenizer: { kind: 'k-means over random patch features', visualVocab: Number(a['visual-vocab']), featureDim: 64, seed: 0 },
  pretrain: { steps: Number(a['pretrain-steps']), batchSize: 32, lr: 2e-3, weightDecay: 0.05, mix: '1:1:1', textLength: 24 },
  finetune: { steps: Number(a['finetune-steps']), batchSize: 32, lr: 1e-3, weightDecay: 0.05, records: Number(a['finetune-records']) },
};

const runtime = await initRuntime({ backend: a.backend });
const data = join(a.work, 'data');
const t0 = Date.now();
await writeSynthDataset({ out: data, ...setup.data });
const train = join(data, 'train.jsonl');
const test = join(data, 'test.jsonl');
const vocab = join(data, 'vocab.txt');
const tok = await trainBeit3VisualTokenizer({
  train,
  val: test,
  out: join(a.work, 'tok'),
  visualVocabSize: setup.tokenizer.visualVocab,
  seed: setup.tokenizer.seed,
});
console.log(`tokenizer: ${JSON.stringify(tok.file.usage)}`);

const arms = a.arms.split(',');
const ARM_OBJECTIVES = { mdm: undefined, 'mdm-pairs': { mim: { weight: 0 }, mlm: { weight: 0 } } };
const reused = a.reuse ? JSON.parse(readFileSync(a.reuse, 'utf8')) : null;
if (reused) {
  for (const k of ['data', 'tokenizer', 'pretrain', 'finetune']) {
    if (JSON.stringify(reused.setup[k]) !== JSON.stringify(setup[k])) throw new Error(`--reuse ${a.reuse}: setup.${k} differs`);
  }
}
const reusedArms = new Set((reused?.runs ?? []).map((r) => r.arm).filter((arm) => arms.includes(arm)));
const runs = (reused?.runs ?? []).filter((r) => reusedArms.has(r.arm) && seeds.includes(r.seed));
for (const seed of seeds) {
  const pretrained = {};
  for (const arm of arms.filter((x) => x !== 'scratch' && !reusedArms.has(x))) {
    const dir = join(a.work, `${arm}-${seed}`);
    const p = await pretrainBeit3Mdm({
      train,
      vocab,
      tokenizer: tok.dir,
      out: dir,
      objectives: ARM_OBJECTIVES[arm],
      batchSize: setup.pretrain.batchSize,
      maxSteps: setup.pretrain.steps,
      lr: setup.pretrain.lr,
      weightDecay: setup.pretrain.weightDecay,
      textLength: setup.pretrain.textLength,
      checkpointEvery: setup.pretrain.steps,
      seed,
      resume: false,
    });
    pretrained[arm] = { dir, p };
    console.log(
      `seed ${seed} ${arm}: ${p.steps} steps ${p.seconds.toFixed(0)}s first ${JSON.stringify(p.first)} last ${JSON.stringify(p.last)}`,
    );
  }
  for (const arm of arms.filter((x) => !reusedArms.has(x))) {
    const pre = pretrained[arm];
    const r = await finetuneBeit3Retrieval({
      train,
      test,
      vocab,
      out: join(a.work, `ft-${arm}-${seed}`),
      init: pre?.dir,
      maxTrainRecords: setup.finetune.records,
      batchSize: setup.finetune.batchSize,
      maxSteps: setup.finetune.steps,
      lr: setup.finetune.lr,
      weightDecay: setup.finetune.weightDecay,
      seed,
    });
    const run = {
      seed,
      arm,
      pretrain: pre ? { seconds: pre.p.seconds, first: pre.p.first, last: pre.p.last } : null,
      finetuneSeconds: r.seconds,
      firstLoss: r.firstLoss,
      lastLoss: r.lastLoss,
      tr1: r.recall.imageToText.recall[1],
      tr5: r.recall.imageToText.recall[5],
      ir1: r.recall.textToImage.recall[1],
      ir5: r.recall.textToImage.recall[5],
      rMean: r.recall.meanRecall,
    };
    runs.push(run);
    console.log(JSON.stringify(run));
  }
}

const metrics = ['tr1', 'tr5', 'ir1', 'ir5', 'rMean', 'lastLoss'];
const stat = (xs) => {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean: m, std: sd, n: xs.length };
};
const summary = {};
for (const arm of arms) {
  summary[arm] = Object.fromEntries(metrics.map((k) => [k, stat(runs.filter((r) => r.arm === arm).map((r) => r[k]))]));
}
const LABEL = { scratch: 'from scratch', mdm: 'MDM-pretrained backbone', 'mdm-pairs': 'MDM on image-text pairs only' };
const pairs = arms.filter((x) => x !== 'scratch').map((x) => [x, 'scratch']);
if (arms.includes('mdm') && arms.includes('mdm-pairs')) pairs.push(['mdm', 'mdm-pairs']);
const comparisons = pairs.map(([better, worse]) => {
  const diff = Object.fromEntries(
    metrics.map((k) => {
      const x = summary[better][k];
      const y = summary[worse][k];
      const se = Math.sqrt(x.std ** 2 / x.n + y.std ** 2 / y.n);
      return [k, { diff: x.mean - y.mean, se, beyond2Se: Math.abs(x.mean - y.mean) > 2 * se }];
    }),
  );
  const d = diff.rMean;
  const what = `${LABEL[better]} vs ${LABEL[worse]}`;
  const verdict =
    seeds.length < 2
      ? 'no verdict: one seed gives no standard error'
      : d.diff > 2 * d.se
        ? `reproduced: r_mean +${d.diff.toFixed(1)} ± ${d.se.toFixed(1)} points (> 2 SE)`
        : d.diff < -2 * d.se
          ? `contradicted: r_mean ${d.diff.toFixed(1)} ± ${d.se.toFixed(1)} points (> 2 SE the other way)`
          : `not reproduced: r_mean ${d.diff >= 0 ? '+' : ''}${d.diff.toFixed(1)} ± ${d.se.toFixed(1)} points, within 2 SE`;
  return { better, worse, what, diff, verdict };
});
const verdict = comparisons[0]?.verdict;
const diff = comparisons[0]?.diff;
const results = {
  setup,
  runtime: { backend: runtime.backend, node: process.version, totalSeconds: (Date.now() - t0) / 1000 },
  tokenizer: tok.file,
  runs,
  summary,
  diff,
  verdict,
  comparisons,
};
mkdirSync(a.out, { recursive: true });
writeFileSync(join(a.out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
const f = (s) => `${s.mean.toFixed(1)} ± ${s.std.toFixed(1)}`;
const md = [
  '# BEiT-3 MDM pretraining → retrieval fine-tuning (tiny, synthetic scenes)',
  '',
  `Generated by \`node scripts/beit3-mdm-ablation.mjs --out ${a.out} --arms ${a.arms}${a.reuse ? ` --reuse ${a.reuse}` : ''}\` (${results.runtime.backend}, ${(results.runtime.totalSeconds / 60).toFixed(1)} min${reusedArms.size ? `; the runs of ${[...reusedArms].join(', ')} reused from that file` : ''}).`,
  `Seeds ${seeds.join(', ')}; mean ± sample std; Recall@K in percent on ${Math.round(setup.data.images * setup.data.splits[2])} test scenes (1 caption each).`,
  '',
  '| arm | TR@1 | TR@5 | IR@1 | IR@5 | r_mean (6 recalls) | final ITC loss |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...arms.map(
    (arm) =>
      `| ${LABEL[arm]} | ${f(summary[arm].tr1)} | ${f(summary[arm].tr5)} | ${f(summary[arm].ir1)} | ${f(summary[arm].ir5)} | ${f(summary[arm].rMean)} | ${summary[arm].lastLoss.mean.toFixed(3)} ± ${summary[arm].lastLoss.std.toFixed(3)} |`,
  ),
  '',
  '| comparison | r_mean | TR@1 | IR@1 | verdict |',
  '| --- | --- | --- | --- | --- |',
  ...comparisons.map(
    (c) =>
      `| ${c.what} | ${c.diff.rMean.diff.toFixed(1)} ± ${c.diff.rMean.se.toFixed(1)} | ${c.diff.tr1.diff.toFixed(1)} ± ${c.diff.tr1.se.toFixed(1)} | ${c.diff.ir1.diff.toFixed(1)} ± ${c.diff.ir1.se.toFixed(1)} | ${c.verdict} |`,
  ),
  '',
  'Differences are of means ± the standard error of the difference; "reproduced" needs more than 2 standard errors.',
  '',
];
writeFileSync(join(a.out, 'results.md'), md.join('\n'));
console.log(md.join('\n'));
