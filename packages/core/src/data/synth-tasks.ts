// Synthetic VQA and NLVR2 sets on the captioned scenes (synth.ts): questions about one scene and
// statements about two, whose answers and labels are computed from the scenes' metadata (colours,
// shapes, counts, sizes, positions, backgrounds), so they are right by construction. Pure: the records
// refer to the scene images `vl data synth` draws; node/synth-writer.ts writes them (`--task vqa|nlvr2`).
import { VlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';
import {
  BACKGROUNDS,
  type BackgroundName,
  COLORS,
  type ColorName,
  type Scene,
  type ShapeGroup,
  SHAPES,
  type ShapeName,
  SIZES,
  type SynthRecord,
} from './synth.js';

/** What `vl data synth --task` writes: captions (the default), VQA questions, or NLVR2 image-pair statements. */
export type SynthTask = 'captions' | 'vqa' | 'nlvr2';
export const SYNTH_TASKS: readonly SynthTask[] = ['captions', 'vqa', 'nlvr2'];

export const VQA_QUESTION_KINDS = ['color', 'shape', 'count', 'total', 'background', 'exists', 'size', 'position'] as const;
export type VqaQuestionKind = (typeof VQA_QUESTION_KINDS)[number];

const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'] as const;
const POSITION_WORDS = { horizontal: ['left', 'middle', 'right'], vertical: ['top', 'middle', 'bottom'] } as const;
const colorNames = Object.keys(COLORS) as ColorName[];
const bgNames = Object.keys(BACKGROUNDS) as BackgroundName[];

/** Every answer a synthetic question can have; a VQA head over them has this many outputs (the index is the label). */
export const SYNTH_VQA_ANSWERS: readonly string[] = [
  ...colorNames,
  ...SHAPES,
  ...SIZES,
  ...bgNames,
  'yes',
  'no',
  ...NUMBER_WORDS,
  'left',
  'middle',
  'right',
  'top',
  'bottom',
];

export interface VqaAnswer {
  answer: string;
  /** VQA v2's soft score min(1, agreeing annotators / 3); a synthetic answer is unambiguous: 1. */
  score: number;
}

export interface SynthVqaRecord {
  id: string;
  split: SynthRecord['split'];
  image: string;
  question: string;
  answers: VqaAnswer[];
  kind: VqaQuestionKind;
  scene: Scene;
}

export type Nlvr2StatementKind = 'both' | 'one' | 'side' | 'more' | 'background';

/** One NLVR2 statement before rendering: `nlvr2Truth` decides it from the two scenes. */
export interface Nlvr2Statement {
  kind: Nlvr2StatementKind;
  color?: ColorName;
  shape?: ShapeName;
  /** 'side': which image (0 left, 1 right). */
  side?: 0 | 1;
  background?: BackgroundName;
}

export interface SynthNlvr2Record {
  id: string;
  split: SynthRecord['split'];
  /** Left and right image. */
  images: [string, string];
  sentence: string;
  label: boolean;
  kind: Nlvr2StatementKind;
  scenes: [Scene, Scene];
}

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)] as T;
}

const has = (scene: Scene, color: ColorName, shape: ShapeName) => scene.groups.find((g) => g.color === color && g.shape === shape);
const total = (scene: Scene) => scene.groups.reduce((s, g) => s + g.count, 0);
const noun = (g: { shape: ShapeName; count: number }) => (g.count === 1 ? g.shape : `${g.shape}s`);
/** A (colour, shape) the scene does not have. */
function absent(scene: Scene, rng: Rng): { color: ColorName; shape: ShapeName } {
  for (;;) {
    const color = pick(rng, colorNames);
    const shape = pick(rng, SHAPES);
    if (!has(scene, color, shape)) return { color, shape };
  }
}

/** One question of `kind` about the scene with its answer, or null when the kind does not apply (e.g. no unique shape). */
export function vqaQuestion(scene: Scene, kind: VqaQuestionKind, rng: Rng): { question: string; answer: string } | null {
  const gs = scene.groups;
  const g = pick(rng, gs);
  const isAre = (x: ShapeGroup) => (x.count === 1 ? 'is' : 'are');
  switch (kind) {
    case 'color': {
      // Only a shape exactly one group has: "the circle" must name one group.
      const unique = gs.filter((x) => gs.filter((y) => y.shape === x.shape).length === 1);
      if (!unique.length) return null;
      const u = pick(rng, unique);
      return { question: `what color ${isAre(u)} the ${noun(u)}?`, answer: u.color };
    }
    case 'shape': {
      const unique = gs.filter((x) => gs.filter((y) => y.color === x.color).length === 1);
      if (!unique.length) return null;
      const u = pick(rng, unique);
      return { question: `what shape ${isAre(u)} the ${u.color} ${u.count === 1 ? 'one' : 'ones'}?`, answer: u.shape };
    }
    case 'count': {
      // A quarter of count questions ask about a pair the scene lacks: "zero".
      if (rng.uniform() < 0.25) {
        const a = absent(scene, rng);
        return { question: `how many ${a.color} ${a.shape}s are there?`, answer: 'zero' };
      }
      return { question: `how many ${g.color} ${g.shape}s are there?`, answer: NUMBER_WORDS[g.count] as string };
    }
    case 'total':
      return { question: 'how many shapes are there?', answer: NUMBER_WORDS[total(scene)] as string };
    case 'background':
      return { question: 'what color is the background?', answer: scene.background };
    case 'exists': {
      // Half yes (a pair the scene has), half no (one it lacks).
      if (rng.uniform() < 0.5) return { question: `is there a ${g.color} ${g.shape}?`, answer: 'yes' };
      const a = absent(scene, rng);
      return { question: `is there a ${a.color} ${a.shape}?`, answer: 'no' };
    }
    case 'size':
      return { question: `what size ${isAre(g)} the ${g.color} ${noun(g)}?`, answer: g.size };
    case 'position':
      return { question: `where ${isAre(g)} the ${g.color} ${noun(g)}?`, answer: POSITION_WORDS[scene.axis][g.slot] };
  }
}

/** `perImage` questions of distinct kinds about each record's scene (kinds drawn at random among those that apply). */
export function planSynthVqa(records: readonly SynthRecord[], perImage: number, rng: Rng): SynthVqaRecord[] {
  if (!Number.isInteger(perImage) || perImage < 1 || perImage > VQA_QUESTION_KINDS.length) {
    throw new VlError('INVALID_ARGUMENT', `questions per image must be 1–${VQA_QUESTION_KINDS.length}, got ${perImage}`);
  }
  const out: SynthVqaRecord[] = [];
  for (const rec of records) {
    const r = rng.fork(`vqa/${rec.id}`);
    let n = 0;
    for (const kind of r.shuffle([...VQA_QUESTION_KINDS])) {
      if (n === perImage) break;
      const q = vqaQuestion(rec.scene, kind, r);
      if (!q) continue;
      out.push({
        id: `${rec.id}-q${n++}`,
        split: rec.split,
        image: rec.image,
        question: q.question,
        answers: [{ answer: q.answer, score: 1 }],
        kind,
        scene: rec.scene,
      });
    }
  }
  return out;
}

/** Whether the statement holds for the left scene `a` and the right scene `b`. */
export function nlvr2Truth(s: Nlvr2Statement, a: Scene, b: Scene): boolean {
  const in_ = (x: Scene) => Boolean(has(x, s.color as ColorName, s.shape as ShapeName));
  switch (s.kind) {
    case 'both':
      return in_(a) && in_(b);
    case 'one':
      return in_(a) !== in_(b);
    case 'side':
      return in_(s.side === 1 ? b : a);
    case 'more':
      return total(a) > total(b);
    case 'background':
      return a.background === s.background && b.background === s.background;
  }
}

export function renderNlvr2(s: Nlvr2Statement): string {
  switch (s.kind) {
    case 'both':
      return `both images contain a ${s.color} ${s.shape}`;
    case 'one':
      return `exactly one image contains a ${s.color} ${s.shape}`;
    case 'side':
      return `the ${s.side === 1 ? 'right' : 'left'} image contains a ${s.color} ${s.shape}`;
    case 'more':
      return 'the left image has more shapes than the right image';
    case 'background':
      return `both images have a ${s.background} background`;
  }
}

/** A random statement about the pair; colours and shapes mostly from the two scenes, so both truths are common. */
function sampleStatement(a: Scene, b: Scene, rng: Rng): Nlvr2Statement {
  const kind = pick(rng, ['both', 'one', 'side', 'more', 'background'] as const);
  if (kind === 'more') return { kind };
  if (kind === 'background') return { kind, background: rng.uniform() < 0.7 ? pick(rng, [a, b]).background : pick(rng, bgNames) };
  const groups = [...a.groups, ...b.groups];
  const { color, shape } = rng.uniform() < 0.75 ? pick(rng, groups) : { color: pick(rng, colorNames), shape: pick(rng, SHAPES) };
  return kind === 'side' ? { kind, color, shape, side: rng.uniform() < 0.5 ? 0 : 1 } : { kind, color, shape };
}

/**
 * `perImage` statements with each record as the left image and another image of its split (at random) as
 * the right one. Labels are balanced exactly: within a split, half are true (dealt in a shuffled order),
 * and a statement is drawn until its truth is the label wanted.
 */
export function planSynthNlvr2(records: readonly SynthRecord[], perImage: number, rng: Rng): SynthNlvr2Record[] {
  if (!Number.isInteger(perImage) || perImage < 1)
    throw new VlError('INVALID_ARGUMENT', `statements per image must be ≥ 1, got ${perImage}`);
  const out: SynthNlvr2Record[] = [];
  for (const split of ['train', 'val', 'test'] as const) {
    const recs = records.filter((r) => r.split === split);
    if (recs.length < 2) continue;
    const n = recs.length * perImage;
    const labels = rng.fork(`nlvr2/labels/${split}`).shuffle(Array.from({ length: n }, (_, i) => i % 2 === 0));
    recs.forEach((left, i) => {
      const r = rng.fork(`nlvr2/${left.id}`);
      for (let k = 0; k < perImage; k++) {
        const label = labels[i * perImage + k] as boolean;
        // Some pairs cannot make some labels likely (e.g. "both" needs a shared pair): redraw the partner too.
        let found: { right: SynthRecord; s: Nlvr2Statement } | null = null;
        for (let attempt = 0; attempt < 1000 && !found; attempt++) {
          const right = recs[(i + 1 + r.int(recs.length - 1)) % recs.length] as SynthRecord;
          const s = sampleStatement(left.scene, right.scene, r);
          if (nlvr2Truth(s, left.scene, right.scene) === label) found = { right, s };
        }
        if (!found) throw new VlError('DATA_INVALID', `no ${label} statement found for image ${left.id}`, { subject: 'planSynthNlvr2' });
        out.push({
          id: `${left.id}-${found.right.id}-s${k}`,
          split,
          images: [left.image, found.right.image],
          sentence: renderNlvr2(found.s),
          label,
          kind: found.s.kind,
          scenes: [left.scene, found.right.scene],
        });
      }
    });
  }
  return out;
}

/** Words the questions and statements add to the caption vocabulary (synthTaskVocabulary appends them). */
export const SYNTH_TASK_WORDS: readonly string[] = [
  '?',
  'what',
  'color',
  'how',
  'many',
  'where',
  'size',
  'one',
  'ones',
  'yes',
  'no',
  'both',
  'images',
  'image',
  'contain',
  'contains',
  'exactly',
  'has',
  'have',
  'more',
  'than',
];

/** The caption vocabulary (synthVocabulary, ids unchanged) with the question and statement words appended. */
export function synthTaskVocabulary(captionVocabulary: readonly string[]): string[] {
  const known = new Set(captionVocabulary);
  return [...captionVocabulary, ...SYNTH_TASK_WORDS.filter((w) => !known.has(w))];
}
