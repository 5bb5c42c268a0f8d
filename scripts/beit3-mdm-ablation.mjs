// BEiT-3 masked data modeling at tiny scale: does MDM pretraining help fine-tuning on the synthetic scenes?
// Per seed: pretrain the tiny backbone by MDM (images, texts and pairs mixed, or with a kind of data switched
// off) on all training scenes with a k-means visual tokenizer, then fine-tune on a small labelled prefix of
// them, once from each MDM backbone and once from scratch (same seed, same steps, same data order), and
// measure on the test scenes:
//   --task retrieval   Beit3ForRetrieval (ClipLoss), Recall@K            → results.json, results.md
//   --task captioning  Beit3ForCaptioning (masked-position prediction,   → captioning.json, captioning.md
//                      BertCaptioningLoss), CIDEr-D of the beam search
// Mean ± sample std over seeds; each difference of means ± its standard error; "reproduced" only when it
// exceeds 2 standard errors, else "not shown at this scale". `--render` rewrites the .md files and the
// tables in docs/beit3.md from the committed .json files without training anything.
//
//   npm run build && node scripts/beit3-mdm-ablation.mjs --out docs/beit3-mdm [--task retrieval|captioning]
//     [--arms scratch,mdm,mdm-pairs,mdm-images,mdm-texts] [--reuse docs/beit3-mdm/results.json] [--seeds 0,1,2]
//     [--images 800] [--pretrain-steps 300] [--finetune-steps 400] [--finetune-records 320] [--work /tmp/beit3-mdm]
//   node scripts/beit3-mdm-ablation.mjs --render --out docs/beit3-mdm [--doc docs/beit3.md]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string', default: 'docs/beit3-mdm' },
    work: { type: 'string', default: '/tmp/beit3-mdm-ablation' },
    task: { type: 'string', default: 'retrieval' },
    seeds: { type: 'string', default: '0,1,2' },
    images: { type: 'string', default: '800' },
    'pretrain-steps': { type: 'string', default: '300' },
    'finetune-steps': { type: 'string', default: '400' },
    'finetune-records': { type: 'string', default: '320' },
    'visual-vocab': { type: 'string', default: '64' },
    backend: { type: 'string', default: 'wasm' },
    // scratch; mdm (images + texts + pairs); mdm-pairs (pairs only: --mim 0 --mlm 0); mdm-images (pairs +
    // images: --mlm 0); mdm-texts (pairs + texts: --mim 0); mdm-clip (all three kinds, visual tokens from a
    // k-means tokenizer over the patch tokens of a tiny CLIP trained by `vl train clip` on the same scenes)
    arms: { type: 'string', default: 'scratch,mdm' },
    // Take the runs of arms already in this results file (same setup) instead of training them again.
    reuse: { type: 'string' },
    // Only pretrain (into --work, where later runs find the backbones): no fine-tuning, no results.
    'pretrain-only': { type: 'boolean', default: false },
    // Only rewrite the .md files (and the tables in --doc) from the .json files in --out.
    render: { type: 'boolean', default: false },
    // Captioning: caption the test scenes again with the fine-tuned models kept in --work, check that the
    // scores equal those in captioning.json, and add the metrics this script has gained since (mismatched).
    reeval: { type: 'boolean', default: false },
    doc: { type: 'string', default: 'docs/beit3.md' },
  },
});

const TASKS = {
  retrieval: {
    file: 'results',
    title: 'BEiT-3 MDM pretraining → retrieval fine-tuning (tiny, synthetic scenes)',
    metrics: ['tr1', 'tr5', 'ir1', 'ir5', 'rMean', 'lastLoss'],
    verdictOn: [['rMean', 'r_mean']],
    unit: ' points',
    columns: [
      ['TR@1', 'tr1', 1],
      ['TR@5', 'tr5', 1],
      ['IR@1', 'ir1', 1],
      ['IR@5', 'ir5', 1],
      ['r_mean (6 recalls)', 'rMean', 1],
      ['final ITC loss', 'lastLoss', 3],
    ],
    diffColumns: [
      ['r_mean', 'rMean', 1],
      ['TR@1', 'tr1', 1],
      ['IR@1', 'ir1', 1],
    ],
    what: (n) => `Recall@K in percent on ${n} test scenes (1 caption each)`,
  },
  captioning: {
    file: 'captioning',
    title: 'BEiT-3 MDM pretraining → captioning fine-tuning (tiny, synthetic scenes)',
    metrics: ['cider', 'mismatchedCider', 'grounding', 'bleu4', 'lastLoss', 'lastAcc'],
    // CIDEr-D, and how much of it comes from describing the right image (CIDEr-D − the same captions scored
    // against the next image's references): a better text model alone raises the first, not the second.
    verdictOn: [
      ['cider', 'CIDEr-D'],
      ['grounding', 'CIDEr-D − mismatched'],
    ],
    unit: '',
    columns: [
      ['CIDEr-D', 'cider', 3],
      ["CIDEr-D against the next image's reference", 'mismatchedCider', 3],
      ['CIDEr-D − mismatched', 'grounding', 3],
      ['BLEU-4', 'bleu4', 3],
      ['final loss (label-smoothed KL)', 'lastLoss', 3],
      ['final masked-token accuracy', 'lastAcc', 3],
    ],
    diffColumns: [
      ['CIDEr-D', 'cider', 3],
      ['CIDEr-D − mismatched', 'grounding', 3],
      ['BLEU-4', 'bleu4', 3],
    ],
    what: (n) => `CIDEr-D and BLEU-4 (core's, coco-caption's definitions) of 3-beam captions of ${n} test scenes against their 1 reference`,
  },
};
const LABEL = {
  scratch: 'from scratch',
  mdm: 'MDM-pretrained backbone',
  'mdm-pairs': 'MDM on image-text pairs only',
  'mdm-images': 'MDM on pairs + images (no text-only rows)',
  'mdm-texts': 'MDM on pairs + texts (no image-only rows)',
  'mdm-clip': 'MDM, CLIP-teacher tokenizer',
};
const ARM_ORDER = Object.keys(LABEL);
const ARM_OBJECTIVES = {
  mdm: undefined,
  'mdm-pairs': { mim: { weight: 0 }, mlm: { weight: 0 } },
  'mdm-images': { mlm: { weight: 0 } },
  'mdm-texts': { mim: { weight: 0 } },
  'mdm-clip': undefined,
};

const stat = (xs) => {
  if (xs.some((x) => typeof x !== 'number')) return null; // a metric the runs of an older version lack
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean: m, std: sd, n: xs.length };
};

/** Summary, comparisons and verdicts of a results object's runs (recomputed, so --render never disagrees). */
function analyse(results) {
  const t = TASKS[results.task ?? 'retrieval'];
  const arms = ARM_ORDER.filter((arm) => results.runs.some((r) => r.arm === arm));
  const summary = {};
  for (const arm of arms) {
    summary[arm] = Object.fromEntries(t.metrics.map((k) => [k, stat(results.runs.filter((r) => r.arm === arm).map((r) => r[k]))]));
  }
  const pairs = arms.filter((x) => x !== 'scratch').map((x) => [x, 'scratch']);
  // Does a kind of monomodal data help? The full mixture against each arm that lacks some.
  if (arms.includes('mdm')) for (const x of arms.filter((y) => y.startsWith('mdm-') && y !== 'mdm-clip')) pairs.push(['mdm', x]);
  // Does a semantic teacher help? The same mixture with the CLIP-teacher tokenizer against the random one.
  if (arms.includes('mdm') && arms.includes('mdm-clip')) pairs.push(['mdm-clip', 'mdm']);
  const comparisons = pairs
    .filter(([x, y]) => summary[x] && summary[y])
    .map(([better, worse]) => {
      const diff = Object.fromEntries(
        t.metrics.map((k) => {
          const x = summary[better][k];
          const y = summary[worse][k];
          if (!x || !y) return [k, null];
          const se = Math.sqrt(x.std ** 2 / x.n + y.std ** 2 / y.n);
          return [k, { diff: x.mean - y.mean, se, beyond2Se: Math.abs(x.mean - y.mean) > 2 * se }];
        }),
      );
      const verdictOf = ([key, name]) => {
        const d = diff[key];
        if (!d) return null;
        const dp = t.columns.find((c) => c[1] === key)[2];
        const num = (v) => `${v >= 0 ? '+' : ''}${v.toFixed(dp)} ± ${d.se.toFixed(dp)}${t.unit}`;
        const n = Math.min(summary[better][key].n, summary[worse][key].n);
        return n < 2
          ? 'no verdict: one seed gives no standard error'
          : d.diff > 2 * d.se
            ? `reproduced: ${name} ${num(d.diff)} (> 2 SE)`
            : d.diff < -2 * d.se
              ? `contradicted: ${name} ${num(d.diff)} (> 2 SE the other way)`
              : `not shown at this scale: ${name} ${num(d.diff)}, within 2 SE`;
      };
      const verdict = t.verdictOn.map(verdictOf).filter(Boolean).join('; ');
      return { better, worse, what: `${LABEL[better]} vs ${LABEL[worse]}`, diff, verdict };
    });
  return { arms, summary, comparisons };
}

function markdown(results, command) {
  const t = TASKS[results.task ?? 'retrieval'];
  const { arms, summary, comparisons } = analyse(results);
  const seeds = [...new Set(results.runs.map((r) => r.seed))].sort();
  const f = (s, dp) => (s ? `${s.mean.toFixed(dp)} ± ${s.std.toFixed(dp)}` : '—');
  const testImages = Math.round(results.setup.data.images * results.setup.data.splits[2]);
  const armTable = [
    `| arm | ${t.columns.map((c) => c[0]).join(' | ')} |`,
    `| --- | ${t.columns.map(() => '---').join(' | ')} |`,
    ...arms.map((arm) => `| ${LABEL[arm]} | ${t.columns.map(([, k, dp]) => f(summary[arm][k], dp)).join(' | ')} |`),
  ];
  const diffTable = [
    `| comparison | ${t.diffColumns.map((c) => c[0]).join(' | ')} | verdict |`,
    `| --- | ${t.diffColumns.map(() => '---').join(' | ')} | --- |`,
    ...comparisons.map(
      (c) =>
        `| ${c.what} | ${t.diffColumns.map(([, k, dp]) => (c.diff[k] ? `${c.diff[k].diff.toFixed(dp)} ± ${c.diff[k].se.toFixed(dp)}` : '—')).join(' | ')} | ${c.verdict} |`,
    ),
  ];
  const chance = results.runs.find((r) => r.chance)?.chance;
  const md = [
    `# ${t.title}`,
    '',
    `Generated by \`${command}\` (${results.runtime.backend}, ${(results.runtime.totalSeconds / 60).toFixed(1)} min${results.reusedArms?.length ? `; the runs of ${results.reusedArms.join(', ')} reused from the previous results` : ''}).`,
    ...(results.reevaluated
      ? [
          `Then \`node scripts/beit3-mdm-ablation.mjs --reeval --out ${a.out}\`: every saved fine-tuned model captioned the test scenes again (the same scores) and its captions were also scored against the next image's reference.`,
        ]
      : []),
    `Seeds ${seeds.join(', ')}; mean ± sample std; ${t.what(testImages)}.`,
    ...(chance
      ? [
          `Chance (each image captioned with another image's reference): CIDEr-D ${chance.cider.toFixed(3)}, BLEU-4 ${chance.bleu4.toFixed(3)}.`,
        ]
      : []),
    '',
    ...armTable,
    '',
    ...diffTable,
    '',
    `Differences are of means ± the standard error of the difference; "reproduced" needs more than 2 standard errors.`,
    '',
  ];
  const tokTable = tokenizerTable(results);
  if (tokTable) md.push('Visual tokenizers (codes used / perplexity / most frequent code: training / test images):', '', tokTable, '');
  return { md: md.join('\n'), armTable: armTable.join('\n'), diffTable: diffTable.join('\n'), tokTable };
}

/** The two tokenizers' codebook usage, and the CLIP teacher's own retrieval on the test scenes (no fine-tuning). */
function tokenizerTable(results) {
  if (!results.clipTokenizer) return null;
  const pair = (u, k, g) => `${g(u.train[k])} / ${g(u.val[k])}`;
  const row = (name, f) =>
    `| ${name} | ${f.teacher.dim} | ${f.training.mean_cosine.toFixed(3)} | ${pair(f.usage, 'used', String)} | ` +
    `${pair(f.usage, 'perplexity', (v) => v.toFixed(1))} | ${pair(f.usage, 'topShare', (v) => `${(100 * v).toFixed(1)}%`)} |`;
  const lines = [
    '| teacher | features | mean cosine to its code | codes used (of 64) | perplexity | most frequent code |',
    '| --- | --- | --- | --- | --- | --- |',
    row('random patch features (pixel level)', results.tokenizer),
    row('CLIP vision tower, patch tokens after ln_post', results.clipTokenizer),
  ];
  const r = results.clipTeacher?.retrieval;
  if (r) {
    lines.push(
      '',
      '| the CLIP teacher itself, on the test scenes | TR@1 | TR@5 | IR@1 | IR@5 | r_mean (6 recalls) |',
      '| --- | --- | --- | --- | --- | --- |',
      `| \`vl eval clip --task retrieval\` (no fine-tuning) | ${[r.tr1, r.tr5, r.ir1, r.ir5, r.rMean].map((v) => v.toFixed(1)).join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

/** Replaces the text between `<!-- beit3-mdm:NAME -->` and `<!-- /beit3-mdm:NAME -->` in the doc. */
function replaceBlock(doc, name, body) {
  const open = `<!-- beit3-mdm:${name} -->`;
  const close = `<!-- /beit3-mdm:${name} -->`;
  const i = doc.indexOf(open);
  const j = doc.indexOf(close);
  if (i < 0 || j < i) return doc;
  return `${doc.slice(0, i + open.length)}\n${body}\n${doc.slice(j)}`;
}

function render() {
  let doc = existsSync(a.doc) ? readFileSync(a.doc, 'utf8') : null;
  for (const [task, t] of Object.entries(TASKS)) {
    const path = join(a.out, `${t.file}.json`);
    if (!existsSync(path)) continue;
    const results = JSON.parse(readFileSync(path, 'utf8'));
    const m = markdown(results, results.command ?? `node scripts/beit3-mdm-ablation.mjs --task ${task}`);
    writeFileSync(join(a.out, `${t.file}.md`), m.md);
    if (doc) doc = replaceBlock(replaceBlock(doc, `${task}-arms`, m.armTable), `${task}-diffs`, m.diffTable);
    if (doc && m.tokTable) doc = replaceBlock(doc, `${task}-tokenizers`, m.tokTable);
  }
  if (doc) writeFileSync(a.doc, doc);
}

if (a.render) {
  render();
  process.exit(0);
}

if (a.reeval) {
  const { initRuntime } = await import('@vl/core');
  const { loadBertTokenizer } = await import('@vl/core/node');
  const { evaluateBeit3Captioning, loadBeit3, readBeit3CaptionExamples } = await import('@vl/beit3');
  const path = join(a.out, `${TASKS.captioning.file}.json`);
  const results = JSON.parse(readFileSync(path, 'utf8'));
  await initRuntime({ backend: results.setup.backend });
  const s = results.setup.finetune;
  let examples = null;
  for (const run of results.runs) {
    const dir = join(a.work, `ft-captioning-${run.arm}-${run.seed}`, 'model');
    const model = await loadBeit3(dir);
    const tok = await loadBertTokenizer(join(dir, 'vocab.txt'));
    examples ??= await readBeit3CaptionExamples(join(a.work, 'data', 'test.jsonl'), model.dims.imageSize);
    const r = await evaluateBeit3Captioning(model, tok, examples, {
      numBeams: s.numBeams,
      maxLength: s.textLength,
      lengthPenalty: s.lengthPenalty,
    });
    model.dispose();
    if (r.cider !== run.cider || r.bleu4 !== run.bleu4) {
      throw new Error(`${dir}: CIDEr-D ${r.cider} / BLEU-4 ${r.bleu4} now, ${run.cider} / ${run.bleu4} in ${path}`);
    }
    run.mismatched = r.mismatched;
    run.mismatchedCider = r.mismatched.cider;
    run.grounding = r.cider - r.mismatched.cider;
    console.log(`seed ${run.seed} ${run.arm}: CIDEr-D ${r.cider.toFixed(3)} (as recorded), mismatched ${r.mismatched.cider.toFixed(3)}`);
  }
  results.reevaluated = 'node scripts/beit3-mdm-ablation.mjs --reeval: the same scores from the saved models, plus mismatched';
  Object.assign(results, analyse(results));
  writeFileSync(path, JSON.stringify(results, null, 2) + '\n');
  render();
  process.exit(0);
}

const t = TASKS[a.task];
if (!t) throw new Error(`--task must be ${Object.keys(TASKS).join(' or ')}`);
const { initRuntime } = await import('@vl/core');
const { writeSynthDataset } = await import('@vl/core/node');
const { finetuneBeit3Captioning, finetuneBeit3Retrieval, pretrainBeit3Mdm, trainBeit3VisualTokenizer } = await import('@vl/beit3');

const seeds = a.seeds.split(',').map(Number);
const setup = {
  preset: 'tiny',
  backend: a.backend,
  data: { images: Number(a.images), imageSize: 32, captionsPerImage: 1, splits: [0.85, 0.0, 0.15], seed: 0 },
  tokenizer: { kind: 'k-means over random patch features', visualVocab: Number(a['visual-vocab']), featureDim: 64, seed: 0 },
  pretrain: { steps: Number(a['pretrain-steps']), batchSize: 32, lr: 2e-3, weightDecay: 0.05, mix: '1:1:1', textLength: 24 },
  finetune: { steps: Number(a['finetune-steps']), batchSize: 32, lr: 1e-3, weightDecay: 0.05, records: Number(a['finetune-records']) },
};
if (a.task === 'captioning') {
  // The official captioning run's objective (get_started_for_captioning.md, run_beit3_finetuning.py defaults);
  // the MDM checkpoint's mlm_head goes under the captioning model's, as the official loader matches names.
  Object.assign(setup.finetune, {
    maskProb: 0.7,
    labelSmoothing: 0.1,
    dropWorstRatio: 0.2,
    dropWorstAfter: 12000,
    textLength: 24,
    numBeams: 3,
    lengthPenalty: 0.6,
    init: 'backbone + mlm_head',
  });
}

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

// The semantic teacher: a tiny CLIP trained on the same training scenes (`vl train clip`, its docs/coca.md
// recipe with 10 epochs), then the same k-means tokenizer over its vision tower's patch tokens.
const clipSetup = {
  command: 'vl train clip --data DATA --out WORK/clip --batch-size 32 --epochs 10 --lr 1e-3 --seed 0',
  preset: 'tiny',
  epochs: 10,
  batchSize: 32,
  lr: 1e-3,
  seed: 0,
};
let tokClip = null;
// Not in clipSetup (which keys the cached backbones): measured, not chosen.
let clipRetrieval = null;
if (a.arms.split(',').includes('mdm-clip')) {
  const clipDir = join(a.work, 'clip');
  if (!existsSync(join(clipDir, 'model', 'config.json'))) {
    const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'packages', 'cli', 'dist', 'bin.js');
    const args = ['train', 'clip', '--data', data, '--out', clipDir, '--batch-size', '32', '--epochs', '10', '--lr', '1e-3', '--seed', '0'];
    execFileSync(process.execPath, [bin, ...args, '--backend', a.backend, '--quiet'], { stdio: 'inherit' });
  }
  // The teacher's own retrieval on the test scenes: how much alignment the tokenizer could pass on.
  const evalFile = join(a.work, 'clip-eval.json');
  if (!existsSync(evalFile)) {
    const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'packages', 'cli', 'dist', 'bin.js');
    const args = ['eval', 'clip', '--checkpoint', clipDir, '--data', test, '--task', 'retrieval', '--out', evalFile];
    execFileSync(process.execPath, [bin, ...args, '--backend', a.backend, '--quiet'], { stdio: 'inherit' });
  }
  const ev = JSON.parse(readFileSync(evalFile, 'utf8')).retrieval;
  const [i2t, t2i] = [ev.imageToText.recall, ev.textToImage.recall];
  clipRetrieval = {
    tr1: i2t[1],
    tr5: i2t[5],
    ir1: t2i[1],
    ir5: t2i[5],
    rMean: [i2t[1], i2t[5], i2t[10], t2i[1], t2i[5], t2i[10]].reduce((x, y) => x + y, 0) / 6,
  };
  tokClip = await trainBeit3VisualTokenizer({
    train,
    val: test,
    out: join(a.work, 'tok-clip'),
    visualVocabSize: setup.tokenizer.visualVocab,
    seed: setup.tokenizer.seed,
    teacher: `clip:${clipDir}`,
  });
  console.log(`CLIP-teacher tokenizer: ${JSON.stringify(tokClip.file.usage)}`);
}

const arms = a.arms.split(',');
for (const arm of arms) if (!LABEL[arm]) throw new Error(`unknown arm ${arm}: ${ARM_ORDER.join(', ')}`);
// A pretrained backbone is kept in --work with the setup that made it and reused when the setup is the same
// (pretraining is deterministic for a seed and backend: the same run twice gives the same weights).
const pretrainKey = JSON.stringify({ data: setup.data, tokenizer: setup.tokenizer, pretrain: setup.pretrain, backend: setup.backend });
const pretrainKeyClip = JSON.stringify({
  data: setup.data,
  tokenizer: setup.tokenizer,
  clip: clipSetup,
  pretrain: setup.pretrain,
  backend: setup.backend,
});
const reused = a.reuse && existsSync(a.reuse) ? JSON.parse(readFileSync(a.reuse, 'utf8')) : null;
if (reused) {
  for (const k of ['data', 'tokenizer', 'pretrain', 'finetune']) {
    if (JSON.stringify(reused.setup[k]) !== JSON.stringify(setup[k])) throw new Error(`--reuse ${a.reuse}: setup.${k} differs`);
  }
}
const reusedArms = [...new Set((reused?.runs ?? []).map((r) => r.arm))].filter((arm) => arms.includes(arm));
const runs = (reused?.runs ?? []).filter((r) => reusedArms.includes(r.arm) && seeds.includes(r.seed));
for (const seed of seeds) {
  const pretrained = {};
  for (const arm of arms.filter((x) => x !== 'scratch' && !reusedArms.includes(x))) {
    const dir = join(a.work, `${arm}-${seed}`);
    const cached = join(dir, 'pretrain-summary.json');
    if (existsSync(cached)) {
      const c = JSON.parse(readFileSync(cached, 'utf8'));
      if (c.key === (arm === 'mdm-clip' ? pretrainKeyClip : pretrainKey)) {
        pretrained[arm] = { dir, p: c.p };
        console.log(`seed ${seed} ${arm}: pretrained backbone reused from ${dir}`);
        continue;
      }
    }
    const p = await pretrainBeit3Mdm({
      train,
      vocab,
      tokenizer: arm === 'mdm-clip' ? tokClip.dir : tok.dir,
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
    writeFileSync(
      cached,
      JSON.stringify(
        { key: arm === 'mdm-clip' ? pretrainKeyClip : pretrainKey, p: { seconds: p.seconds, first: p.first, last: p.last } },
        null,
        2,
      ) + '\n',
    );
    console.log(
      `seed ${seed} ${arm}: ${p.steps} steps ${p.seconds.toFixed(0)}s first ${JSON.stringify(p.first)} last ${JSON.stringify(p.last)}`,
    );
  }
  if (a['pretrain-only']) continue;
  for (const arm of arms.filter((x) => !reusedArms.includes(x))) {
    const pre = pretrained[arm];
    const common = {
      train,
      test,
      vocab,
      out: join(a.work, `ft-${a.task}-${arm}-${seed}`),
      init: pre?.dir,
      maxTrainRecords: setup.finetune.records,
      batchSize: setup.finetune.batchSize,
      maxSteps: setup.finetune.steps,
      lr: setup.finetune.lr,
      weightDecay: setup.finetune.weightDecay,
      seed,
    };
    const run = { seed, arm, pretrain: pre ? { seconds: pre.p.seconds, first: pre.p.first, last: pre.p.last } : null };
    if (a.task === 'retrieval') {
      const r = await finetuneBeit3Retrieval(common);
      Object.assign(run, {
        finetuneSeconds: r.seconds,
        firstLoss: r.firstLoss,
        lastLoss: r.lastLoss,
        tr1: r.recall.imageToText.recall[1],
        tr5: r.recall.imageToText.recall[5],
        ir1: r.recall.textToImage.recall[1],
        ir5: r.recall.textToImage.recall[5],
        rMean: r.recall.meanRecall,
      });
    } else {
      const s = setup.finetune;
      const r = await finetuneBeit3Captioning({
        ...common,
        textLength: s.textLength,
        maskProb: s.maskProb,
        labelSmoothing: s.labelSmoothing,
        dropWorstRatio: s.dropWorstRatio,
        dropWorstAfter: s.dropWorstAfter,
        numBeams: s.numBeams,
        lengthPenalty: s.lengthPenalty,
      });
      Object.assign(run, {
        finetuneSeconds: r.seconds,
        evalSeconds: r.evalSeconds,
        initTensors: r.initTensors,
        firstLoss: r.firstLoss,
        lastLoss: r.lastLoss,
        firstAcc: r.firstAcc,
        lastAcc: r.lastAcc,
        cider: r.cider,
        bleu4: r.bleu4,
        chance: r.chance,
        mismatched: r.mismatched,
        mismatchedCider: r.mismatched.cider,
        grounding: r.cider - r.mismatched.cider,
        // A few captions, to read what the numbers mean.
        samples: r.captions.slice(0, 3),
      });
    }
    runs.push(run);
    console.log(JSON.stringify(run));
  }
}
if (a['pretrain-only']) process.exit(0);

const command = `node scripts/beit3-mdm-ablation.mjs --out ${a.out} --task ${a.task} --arms ${a.arms}${a.reuse ? ` --reuse ${a.reuse}` : ''}`;
const results = {
  task: a.task,
  command,
  setup,
  runtime: { backend: runtime.backend, node: process.version, totalSeconds: (Date.now() - t0) / 1000 },
  reusedArms,
  tokenizer: tok.file,
  ...(tokClip
    ? { clipTeacher: { ...clipSetup, retrieval: clipRetrieval }, clipTokenizer: tokClip.file }
    : reused?.clipTokenizer
      ? { clipTeacher: reused.clipTeacher, clipTokenizer: reused.clipTokenizer }
      : {}),
  runs,
};
const { summary, comparisons } = analyse(results);
Object.assign(results, { summary, comparisons });
mkdirSync(a.out, { recursive: true });
writeFileSync(join(a.out, `${t.file}.json`), JSON.stringify(results, null, 2) + '\n');
render();
console.log(markdown(results, command).md);
