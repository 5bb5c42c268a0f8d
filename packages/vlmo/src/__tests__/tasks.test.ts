// VQA and NLVR2 on the synthetic scenes: the readers (fields checked, errors naming file:line, NLVR2's
// "True"/"False"), soft-score targets, the accuracies on hand-made logits, a tiny fine-tuning run per
// task that lowers the loss, and `vl eval`'s report against the accuracy recomputed from the logits.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng, SYNTH_VQA_ANSWERS } from '@vl/core';
import { loadBertTokenizer, writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { majority, nlvr2Accuracy, vqaAccuracy } from '../finetune.js';
import { readNlvr2File, readVqaFile, vqaTargets } from '../task-data.js';
import { evaluateVlmoTask } from '../task-eval.js';
import { loadVlmo, saveVlmo } from '../checkpoint.js';
import { vlmoDims, vlmoPreset } from '../config.js';
import { Vlmo } from '../model.js';
import { vlmoTokenizer } from '../evaluate.js';
import { finetuneVlmo, loadVlmoTaskSet, vlmoTaskConfig, vlmoTaskForward } from '../task-train.js';

const tmp = mkdtempSync(join(tmpdir(), 'vlmo-tasks-'));
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  await writeSynthDataset({ out: join(tmp, 'vqa'), images: 40, seed: 1, imageSize: 32, task: 'vqa', perImage: 2 });
  await writeSynthDataset({ out: join(tmp, 'nlvr2'), images: 40, seed: 1, imageSize: 32, task: 'nlvr2', perImage: 1 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('VQA / NLVR2 data', () => {
  it('reads the synthetic files; bad records are DATA_INVALID naming file:line', () => {
    const vqa = readVqaFile(join(tmp, 'vqa', 'train.jsonl'));
    expect(vqa).toHaveLength(64);
    expect(vqa[0]!.image).toBe(join(tmp, 'vqa', 'images', 'train', '000000.png'));
    const nlvr2 = readNlvr2File(join(tmp, 'nlvr2', 'test.jsonl'));
    expect(nlvr2).toHaveLength(4);
    expect(nlvr2.filter((e) => e.label)).toHaveLength(2);
    const bad = join(tmp, 'bad.jsonl');
    writeFileSync(
      bad,
      `${JSON.stringify({ image: 'a.png', question: 'q?', answers: [{ answer: 'red', score: 1 }] })}\n{"image": "a.png"}\n`,
    );
    expect(() => readVqaFile(bad)).toThrow(/bad\.jsonl:2.*question|question.*/);
    try {
      readVqaFile(bad);
    } catch (err) {
      expect((err as { code: string; subject: string }).code).toBe('DATA_INVALID');
      expect((err as { subject: string }).subject).toBe(`${bad}:2`);
    }
    const official = join(tmp, 'official.jsonl');
    writeFileSync(official, `${JSON.stringify({ images: ['l.png', 'r.png'], sentence: 's', label: 'False' })}\n`);
    expect(readNlvr2File(official)[0]!.label).toBe(false);
    writeFileSync(official, `${JSON.stringify({ images: ['l.png', 'r.png'], sentence: 's', label: 'maybe' })}\n`);
    expect(() => readNlvr2File(official)).toThrow(/label/);
  });

  it('builds soft-score targets over the answer list and counts answers outside it', () => {
    const ex = [
      { id: '1', image: '', question: '', kind: 'a', answers: [{ answer: 'red', score: 1 }] },
      {
        id: '2',
        image: '',
        question: '',
        kind: 'a',
        answers: [
          { answer: 'blue', score: 0.6 },
          { answer: 'teal', score: 0.3 },
        ],
      },
    ];
    const { targets, unknown } = vqaTargets(ex, ['blue', 'red', 'green']);
    expect(Array.from(targets).map((x) => Number(x.toFixed(4)))).toEqual([0, 1, 0, 0.6, 0, 0]);
    expect(unknown).toBe(1);
  });
});

describe('accuracy on hand-made logits', () => {
  it('VQA: the soft score of the top answer, averaged', () => {
    // Three questions, three answers; targets: q0 → a1 (1), q1 → a0 (0.6) and a2 (0.3), q2 → a2 (1).
    const targets = [0, 1, 0, 0.6, 0, 0.3, 0, 0, 1];
    // Top answers: q0 a1 (score 1), q1 a2 (0.3), q2 a0 (0).
    const logits = [0.1, 2, -1, -3, 0, 5, 4, 1, 3.9];
    expect(vqaAccuracy(logits, targets, 3)).toBeCloseTo((1 + 0.3 + 0) / 3, 6);
    expect(() => vqaAccuracy(logits, targets.slice(1), 3)).toThrow(/targets/);
  });

  it('NLVR2: column 1 means true; majority is the most frequent label and its share', () => {
    const logits = [0, 1, 2, -1, 0.5, 0.4, -1, 3];
    expect(nlvr2Accuracy(logits, [true, false, true, true])).toBe(0.75);
    expect(majority([true, false, true, true])).toEqual({ value: true, share: 0.75 });
    expect(majority(['no', 'yes', 'no'])).toEqual({ value: 'no', share: 2 / 3 });
  });
});

describe('fine-tuning on the synthetic sets', () => {
  const arch = { transformerKwargs: { layerScaleInitValues: null }, vlmoConfig: { dropPathRate: 0 } };

  it('--init: the task config keeps the architecture, drops the pretraining heads and adds a fresh task head', async () => {
    const dir = join(tmp, 'vqa');
    const tok = await loadBertTokenizer(join(dir, 'vocab.txt'));
    const pretrained = join(tmp, 'pretrained');
    const base = vlmoPreset('tiny', { vocabSize: tok.vocabSize, maxTextLen: 12 });
    const model = new Vlmo(base, new Rng(3));
    await saveVlmo(model, pretrained);
    model.dispose();
    const task = vlmoTaskConfig(base, 'vqa', SYNTH_VQA_ANSWERS.length);
    expect(vlmoDims(task)).toMatchObject({ vqaLabels: 32, nlvr2: false, heads: { itc: false, itm: false, mlm: false } });
    const s = await finetuneVlmo({
      task: 'vqa',
      train: join(dir, 'train.jsonl'),
      vocab: join(dir, 'vocab.txt'),
      out: join(tmp, 'vqa-init'),
      init: pretrained,
      batchSize: 8,
      maxSteps: 1,
      resume: false,
    });
    expect(s.init!.fresh.every((k) => k.startsWith('vqa_classifier.'))).toBe(true);
    expect(s.init!.fresh).toHaveLength(6);
    expect(s.init!.unused.some((k) => k.startsWith('itm_score.'))).toBe(true);
    await expect(
      finetuneVlmo({
        task: 'vqa',
        train: join(dir, 'train.jsonl'),
        vocab: join(dir, 'vocab.txt'),
        out: join(tmp, 'x'),
        init: pretrained,
        initStd: 0.2,
      }),
    ).rejects.toThrow(/fresh model/);
  }, 60_000);

  it('VQA: a tiny run lowers the loss; eval reports the accuracy of its logits with the baselines', async () => {
    const dir = join(tmp, 'vqa');
    const out = join(tmp, 'vqa-run');
    const s = await finetuneVlmo({
      task: 'vqa',
      train: join(dir, 'train.jsonl'),
      vocab: join(dir, 'vocab.txt'),
      out,
      maxTextLen: 12,
      imageSize: 16,
      architecture: arch,
      initStd: 0.2,
      batchSize: 8,
      maxSteps: 10,
      lr: 2e-3,
      warmupSteps: 2,
      resume: false,
    });
    expect(s.steps).toBe(10);
    expect(s.unknownAnswers).toBe(0);
    expect(s.last.loss).toBeLessThan(0.8 * s.first.loss!);
    const before = tf.memory().numTensors;
    const r = await evaluateVlmoTask({ checkpoint: out, data: join(dir, 'test.jsonl'), task: 'vqa', batchSize: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.examples).toBe(8);
    expect(r.baselines.chance).toBeCloseTo(100 / SYNTH_VQA_ANSWERS.length, 6);
    expect(r.baselineFrom).toBe(join(dir, 'train.jsonl'));
    // The majority answer of train.jsonl, scored on the test questions by hand.
    const train = readVqaFile(join(dir, 'train.jsonl'));
    const test = readVqaFile(join(dir, 'test.jsonl'));
    const guess = majority(train.map((e) => e.answers[0]!.answer)).value;
    expect(r.baselines.majority.guess).toBe(guess);
    expect(r.baselines.majority.accuracy).toBeCloseTo((100 * test.filter((e) => e.answers[0]!.answer === guess).length) / 8, 6);
    const kinds = Object.values(r.byKind);
    expect(kinds.reduce((n, k) => n + k.examples, 0)).toBe(8);
    // Overall accuracy = the per-kind accuracies weighted by their counts (every score is 0 or 1 here).
    expect(r.accuracy).toBeCloseTo(kinds.reduce((x, k) => x + k.accuracy * k.examples, 0) / 8, 4);
  }, 120_000);

  it('NLVR2: training lowers the loss over the training set (against the same init, untrained); eval has chance 50%', async () => {
    const dir = join(tmp, 'nlvr2');
    const train = join(dir, 'train.jsonl');
    const run = (out: string, lr: number, maxSteps: number) =>
      finetuneVlmo({
        task: 'nlvr2',
        train,
        vocab: join(dir, 'vocab.txt'),
        out,
        maxTextLen: 12,
        architecture: arch,
        initStd: 0.2,
        imageSize: 16, // 2 × 2 patches: the test is about the loop, not the images
        batchSize: 8,
        maxSteps,
        lr,
        warmupSteps: 1,
        resume: false,
      });
    /** Mean NLVR2 cross-entropy of a saved model over every training statement, in eval mode. */
    const setLoss = async (out: string) => {
      const model = (await loadVlmo(join(out, 'model'))).eval();
      const set = await loadVlmoTaskSet(model, await vlmoTokenizer(join(out, 'model')), 'nlvr2', train);
      const r = vlmoTaskForward(
        model,
        set,
        Array.from({ length: set.count }, (_, i) => i),
      );
      const loss = r.loss.dataSync()[0]!;
      tf.dispose([r.loss, ...Object.values(r.losses)]);
      model.dispose();
      return loss;
    };
    await run(join(tmp, 'nlvr2-init'), 0, 1); // lr 0: the init, saved
    const s = await run(join(tmp, 'nlvr2-run'), 2e-3, 12);
    expect(s.steps).toBe(12);
    const [untrained, trained] = [await setLoss(join(tmp, 'nlvr2-init')), await setLoss(join(tmp, 'nlvr2-run'))];
    expect(trained).toBeLessThan(untrained);
    expect(trained).toBeLessThan(0.69); // below ln 2, the loss of a constant 50/50 guess on balanced labels
    const r = await evaluateVlmoTask({ checkpoint: join(tmp, 'nlvr2-run'), data: join(dir, 'test.jsonl'), task: 'nlvr2' });
    expect(r.examples).toBe(4);
    expect(r.baselines.chance).toBe(50);
    expect([0, 25, 50, 75, 100]).toContain(r.accuracy);
  }, 120_000);
});
