// Synthetic VQA and NLVR2: answers and labels checked against scenes written out by hand, the planned
// sets against their scenes (every answer in the vocabulary, totals re-counted, labels balanced and
// re-derived), and the writer's files (answers.json, a vocabulary that tokenises every question).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BertTokenizer, parseVocabTxt } from '../tokenizer.js';
import { Rng } from '../../runtime/rng.js';
import { planSynthDataset, type Scene, synthVocabulary } from '../synth.js';
import {
  nlvr2Truth,
  planSynthNlvr2,
  planSynthVqa,
  renderNlvr2,
  SYNTH_VQA_ANSWERS,
  type SynthNlvr2Record,
  type SynthVqaRecord,
  VQA_QUESTION_KINDS,
  vqaQuestion,
} from '../synth-tasks.js';
import { writeSynthDataset } from '../../node/synth-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'vl-synth-tasks-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Two red circles (small, left) and one blue square (large, right) on gray.
const A: Scene = {
  background: 'gray',
  axis: 'horizontal',
  groups: [
    { color: 'red', shape: 'circle', count: 2, size: 'small', slot: 0 },
    { color: 'blue', shape: 'square', count: 1, size: 'large', slot: 2 },
  ],
};
// One green circle at the top, three red circles at the bottom, on white: no circle is unique by shape.
const B: Scene = {
  background: 'white',
  axis: 'vertical',
  groups: [
    { color: 'green', shape: 'circle', count: 1, size: 'large', slot: 0 },
    { color: 'red', shape: 'circle', count: 3, size: 'small', slot: 2 },
  ],
};

/** Every question each kind can ask about A, with the answer read off the scene above by hand. */
const HAND_A: Record<string, string> = {
  'what color are the circles?': 'red',
  'what color is the square?': 'blue',
  'what shape are the red ones?': 'circle',
  'what shape is the blue one?': 'square',
  'how many red circles are there?': 'two',
  'how many blue squares are there?': 'one',
  'how many shapes are there?': 'three',
  'what color is the background?': 'gray',
  'is there a red circle?': 'yes',
  'is there a blue square?': 'yes',
  'what size are the red circles?': 'small',
  'what size is the blue square?': 'large',
  'where are the red circles?': 'left',
  'where is the blue square?': 'right',
};

describe('synthetic VQA', () => {
  it('answers questions about a hand-written scene correctly, for every kind', () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 60; seed++) {
      for (const kind of VQA_QUESTION_KINDS) {
        const q = vqaQuestion(A, kind, new Rng(seed));
        expect(q).not.toBeNull();
        const { question, answer } = q!;
        seen.add(kind);
        if (question in HAND_A) expect(answer, question).toBe(HAND_A[question]);
        else if (kind === 'count')
          expect(answer, question).toBe('zero'); // a pair A lacks
        else if (kind === 'exists') expect(answer, question).toBe('no');
        else throw new Error(`unexpected question '${question}'`);
        if (answer === 'zero' || answer === 'no') {
          const [, color, shape] = /(\w+) (\w+?)s?\?$/.exec(question)!;
          expect(A.groups.some((g) => g.color === color && g.shape === shape)).toBe(false);
        }
      }
    }
    expect(seen.size).toBe(VQA_QUESTION_KINDS.length);
    // B has no shape only one group has: no colour question; its total is 4 and the red circles are at the bottom.
    expect(vqaQuestion(B, 'color', new Rng(0))).toBeNull();
    expect(vqaQuestion(B, 'total', new Rng(0))).toEqual({ question: 'how many shapes are there?', answer: 'four' });
    const where = [0, 1, 2, 3, 4, 5].map((s) => vqaQuestion(B, 'position', new Rng(s))!);
    for (const w of where) expect(w.answer).toBe(w.question.includes('red') ? 'bottom' : 'top');
  });

  it('plans distinct-kind questions per image whose answers follow from each scene', () => {
    const { records } = planSynthDataset({ out: '', images: 60, seed: 3 });
    const vqa = planSynthVqa(records, 3, new Rng(3));
    expect(vqa).toHaveLength(180);
    for (const r of vqa) {
      expect(SYNTH_VQA_ANSWERS).toContain(r.answers[0]!.answer);
      expect(r.answers).toEqual([{ answer: r.answers[0]!.answer, score: 1 }]);
      if (r.kind === 'total') {
        const n = r.scene.groups.reduce((s, g) => s + g.count, 0);
        expect(r.answers[0]!.answer).toBe(['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'][n]);
      }
      if (r.kind === 'background') expect(r.answers[0]!.answer).toBe(r.scene.background);
    }
    for (let i = 0; i < vqa.length; i += 3) expect(new Set(vqa.slice(i, i + 3).map((r) => r.kind)).size).toBe(3);
    // Deterministic by seed.
    expect(planSynthVqa(records, 3, new Rng(3))).toEqual(vqa);
  });
});

describe('synthetic NLVR2', () => {
  it('decides statements about a hand-written pair', () => {
    const t = (s: Parameters<typeof nlvr2Truth>[0]) => nlvr2Truth(s, A, B);
    expect(t({ kind: 'both', color: 'red', shape: 'circle' })).toBe(true);
    expect(t({ kind: 'both', color: 'blue', shape: 'square' })).toBe(false);
    expect(t({ kind: 'one', color: 'blue', shape: 'square' })).toBe(true);
    expect(t({ kind: 'one', color: 'red', shape: 'circle' })).toBe(false);
    expect(t({ kind: 'side', color: 'green', shape: 'circle', side: 1 })).toBe(true);
    expect(t({ kind: 'side', color: 'green', shape: 'circle', side: 0 })).toBe(false);
    expect(t({ kind: 'more' })).toBe(false); // 3 shapes vs 4
    expect(nlvr2Truth({ kind: 'more' }, B, A)).toBe(true);
    expect(t({ kind: 'background', background: 'gray' })).toBe(false);
    expect(nlvr2Truth({ kind: 'background', background: 'gray' }, A, A)).toBe(true);
    expect(renderNlvr2({ kind: 'side', color: 'green', shape: 'circle', side: 1 })).toBe('the right image contains a green circle');
  });

  it('plans exactly balanced labels per split that hold for the two scenes', () => {
    const { records } = planSynthDataset({ out: '', images: 50, seed: 4 });
    const pairs = planSynthNlvr2(records, 2, new Rng(4));
    expect(pairs).toHaveLength(100);
    for (const split of ['train', 'val', 'test']) {
      const s = pairs.filter((p) => p.split === split);
      expect(s.filter((p) => p.label)).toHaveLength(s.length / 2);
    }
    const image = new Map(records.map((r) => [r.image, r.scene]));
    for (const p of pairs) {
      expect(p.images[0]).not.toBe(p.images[1]);
      expect(p.scenes).toEqual([image.get(p.images[0]), image.get(p.images[1])]);
      // Re-derive the label from the sentence alone.
      const [a, b] = p.scenes;
      const has = (x: Scene, c: string, sh: string) => x.groups.some((g) => g.color === c && g.shape === sh);
      const total = (x: Scene) => x.groups.reduce((n, g) => n + g.count, 0);
      let m: RegExpExecArray | null;
      let truth: boolean;
      if ((m = /^both images contain a (\w+) (\w+)$/.exec(p.sentence))) truth = has(a, m[1]!, m[2]!) && has(b, m[1]!, m[2]!);
      else if ((m = /^exactly one image contains a (\w+) (\w+)$/.exec(p.sentence))) truth = has(a, m[1]!, m[2]!) !== has(b, m[1]!, m[2]!);
      else if ((m = /^the (left|right) image contains a (\w+) (\w+)$/.exec(p.sentence))) truth = has(m[1] === 'left' ? a : b, m[2]!, m[3]!);
      else if (p.sentence === 'the left image has more shapes than the right image') truth = total(a) > total(b);
      else if ((m = /^both images have a (\w+) background$/.exec(p.sentence))) truth = a.background === m[1] && b.background === m[1];
      else throw new Error(`unexpected sentence '${p.sentence}'`);
      expect(p.label, p.sentence).toBe(truth);
    }
  });
});

describe('writeSynthDataset with a task', () => {
  it('writes VQA and NLVR2 splits, answers.json and a vocabulary without [UNK] for them', async () => {
    const vqaDir = join(tmp, 'vqa');
    const s = await writeSynthDataset({ out: vqaDir, images: 20, seed: 5, imageSize: 24, task: 'vqa', perImage: 2 });
    expect(s.task).toBe('vqa');
    expect(s.records).toEqual({ train: 32, val: 4, test: 4 });
    expect(JSON.parse(readFileSync(join(vqaDir, 'answers.json'), 'utf8'))).toEqual(SYNTH_VQA_ANSWERS);
    const vocab = readFileSync(join(vqaDir, 'vocab.txt'), 'utf8');
    // The caption vocabulary first, ids unchanged; the question words after it.
    expect(vocab.startsWith(`${synthVocabulary().join('\n')}\n`)).toBe(true);
    const tok = BertTokenizer.fromVocab(parseVocabTxt(vocab));
    const rows = readFileSync(join(vqaDir, 'train.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as SynthVqaRecord);
    expect(rows).toHaveLength(32);
    for (const r of rows) expect(tok.encode(r.question).ids).not.toContain(tok.unkId);
    const nlvrDir = join(tmp, 'nlvr2');
    await writeSynthDataset({ out: nlvrDir, images: 20, seed: 5, imageSize: 24, task: 'nlvr2' });
    const pairs = readFileSync(join(nlvrDir, 'test.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as SynthNlvr2Record);
    expect(pairs).toHaveLength(4);
    for (const p of pairs) expect(tok.encode(p.sentence).ids).not.toContain(tok.unkId);
  });
});
