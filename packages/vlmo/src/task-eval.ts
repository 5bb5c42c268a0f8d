// `vl eval vlmo --task vqa|nlvr2`: a fine-tuned VLMo folder (`vl train vlmo --task vqa|nlvr2`'s --out) on a
// held-out JSONL set. VQA: VQA-score accuracy (the soft score of the top answer), per question kind, with
// the blind baselines chance (1 / answers), the majority answer and the majority answer per question kind;
// NLVR2: accuracy with chance 50% and the majority label. The baselines' guesses come from the training
// split next to the data (train.jsonl, as a blind model would learn them), else from the evaluated set
// itself (then they are upper bounds of any constant guess); `baselineFrom` says which.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { VlError } from '@vl/core';
import { loadVlmo } from './checkpoint.js';
import { vlmoTokenizer } from './evaluate.js';
import { majority, nlvr2Accuracy, vqaAccuracy } from './finetune.js';
import { readAnswerList, readNlvr2File, readVqaFile, type VlmoFinetuneTask } from './task-data.js';
import { loadVlmoTaskSet, vlmoTaskLogits } from './task-train.js';
import { vlmoModelDir } from './train.js';

export interface VlmoTaskEvalOptions {
  checkpoint: string;
  data: string;
  task: VlmoFinetuneTask;
  batchSize?: number;
  out?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface VlmoTaskEvalReport {
  task: VlmoFinetuneTask;
  checkpoint: string;
  examples: number;
  /** Percent. */
  accuracy: number;
  byKind: Record<string, { examples: number; accuracy: number }>;
  baselines: {
    chance: number;
    /** The most frequent answer (label) of the baseline set, always guessed. */
    majority: { guess: string; accuracy: number };
    /** VQA: the most frequent answer of each question kind. */
    majorityByKind?: number;
  };
  baselineFrom: string;
}

const pct = (x: number) => 100 * x;

/** The model's logits for every example, in batches. */
async function logitsOf(o: VlmoTaskEvalOptions) {
  if (!existsSync(o.checkpoint)) throw new VlError('INVALID_ARGUMENT', 'no such folder', { subject: o.checkpoint });
  const dir = vlmoModelDir(o.checkpoint);
  const model = (await loadVlmo(dir)).eval();
  try {
    const has = o.task === 'vqa' ? model.vqa_classifier : model.nlvr2_classifier;
    if (!has) {
      throw new VlError('TASK_UNSUPPORTED', `this VLMo has no ${o.task} head`, {
        subject: dir,
        hint: `fine-tune it first: vl train vlmo --task ${o.task} --init ${o.checkpoint} --data DIR`,
      });
    }
    const tok = await vlmoTokenizer(dir);
    const answers = o.task === 'vqa' ? readAnswerList(join(dir, 'answers.json'), true) : undefined;
    if (answers && answers.length !== model.dims.vqaLabels) {
      throw new VlError('CONFIG_INVALID', `answers.json has ${answers.length} answers, the VQA head ${model.dims.vqaLabels}`, {
        subject: dir,
      });
    }
    const set = await loadVlmoTaskSet(model, tok, o.task, o.data, answers);
    const width = o.task === 'vqa' ? answers!.length : 2;
    const logits = new Float32Array(set.count * width);
    const b = o.batchSize ?? 64;
    for (let s = 0; s < set.count; s += b) {
      const rows = Array.from({ length: Math.min(b, set.count - s) }, (_, k) => s + k);
      const t = vlmoTaskLogits(model, set, rows);
      logits.set(t.dataSync(), s * width);
      t.dispose();
      o.onProgress?.(Math.min(set.count, s + b), set.count);
    }
    return { dir, set, logits, width, answers };
  } finally {
    model.dispose();
  }
}

export async function evaluateVlmoTask(o: VlmoTaskEvalOptions): Promise<VlmoTaskEvalReport> {
  const { dir, set, logits, width, answers } = await logitsOf(o);
  const beside = join(dirname(o.data), 'train.jsonl');
  const baselineFrom = existsSync(beside) && beside !== o.data ? beside : o.data;
  let report: VlmoTaskEvalReport;
  if (o.task === 'vqa') {
    const ex = readVqaFile(o.data);
    const top = (e: (typeof ex)[number]) => [...e.answers].sort((x, y) => y.score - x.score)[0]!.answer;
    const scoreOf = (e: (typeof ex)[number], guess: string) => e.answers.find((a) => a.answer === guess)?.score ?? 0;
    const base = baselineFrom === o.data ? ex : readVqaFile(baselineFrom);
    const guess = majority(base.map(top)).value;
    const kinds = [...new Set(ex.map((e) => e.kind))].sort();
    const guessByKind = new Map(kinds.map((k) => [k, majority(base.filter((e) => e.kind === k).map(top)).value ?? guess]));
    const byKind: VlmoTaskEvalReport['byKind'] = {};
    for (const k of kinds) {
      const rows = ex.map((e, i) => (e.kind === k ? i : -1)).filter((i) => i >= 0);
      const sub = (arr: Float32Array) => Float32Array.from(rows.flatMap((r) => Array.from(arr.subarray(r * width, (r + 1) * width))));
      byKind[k] = { examples: rows.length, accuracy: pct(vqaAccuracy(sub(logits), sub(set.vqaTargets!), width)) };
    }
    report = {
      task: 'vqa',
      checkpoint: dir,
      examples: set.count,
      accuracy: pct(vqaAccuracy(logits, set.vqaTargets!, width)),
      byKind,
      baselines: {
        chance: pct(1 / answers!.length),
        majority: { guess, accuracy: pct(ex.reduce((s, e) => s + scoreOf(e, guess), 0) / ex.length) },
        majorityByKind: pct(ex.reduce((s, e) => s + scoreOf(e, guessByKind.get(e.kind) ?? guess), 0) / ex.length),
      },
      baselineFrom,
    };
  } else {
    const ex = readNlvr2File(o.data);
    const base = baselineFrom === o.data ? ex : readNlvr2File(baselineFrom);
    const guess = majority(base.map((e) => e.label)).value;
    const kinds = [...new Set(ex.map((e) => e.kind))].sort();
    const byKind: VlmoTaskEvalReport['byKind'] = {};
    for (const k of kinds) {
      const rows = ex.map((e, i) => (e.kind === k ? i : -1)).filter((i) => i >= 0);
      const sub = Float32Array.from(rows.flatMap((r) => [logits[2 * r]!, logits[2 * r + 1]!]));
      byKind[k] = {
        examples: rows.length,
        accuracy: pct(
          nlvr2Accuracy(
            sub,
            rows.map((r) => ex[r]!.label),
          ),
        ),
      };
    }
    report = {
      task: 'nlvr2',
      checkpoint: dir,
      examples: set.count,
      accuracy: pct(nlvr2Accuracy(logits, set.labels!)),
      byKind,
      baselines: { chance: 50, majority: { guess: String(guess), accuracy: pct(ex.filter((e) => e.label === guess).length / ex.length) } },
      baselineFrom,
    };
  }
  if (o.out) {
    await mkdir(dirname(o.out), { recursive: true });
    await writeFile(o.out, `${JSON.stringify(report, null, 2)}\n`);
  }
  return report;
}
