// Reading VQA and NLVR2 data for `vl train vlmo --task vqa|nlvr2` and `vl eval vlmo --task vqa|nlvr2`:
// JSONL files as `vl data synth --task vqa|nlvr2` writes them (core's SynthVqaRecord / SynthNlvr2Record; the
// official NLVR2 "True"/"False" labels are read too), the answer list (answers.json), the images decoded
// once each into VLMo's input planes, and the texts tokenised to max_text_len. The sets are read into
// memory: they are the small synthetic ones (a few thousand images at 32 px are a few MB).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { VlError, type VqaAnswer } from '@vl/core';
import { preprocessImage, readImageFile } from '@vl/core/node';
import { VLMO_IMAGE_NORM } from './config.js';

export type VlmoFinetuneTask = 'vqa' | 'nlvr2';

export interface VlmoVqaExample {
  id: string;
  /** Absolute image path. */
  image: string;
  question: string;
  answers: VqaAnswer[];
  /** The question kind (synthetic sets), for per-kind accuracy. */
  kind: string;
}

export interface VlmoNlvr2Example {
  id: string;
  /** Absolute paths of the left and right image. */
  images: [string, string];
  sentence: string;
  label: boolean;
  kind: string;
}

function bad(path: string, line: number, message: string): VlError {
  return new VlError('DATA_INVALID', message, {
    subject: `${path}:${line}`,
    hint: 'write the set with `vl data synth --task vqa|nlvr2` (see docs/vlmo.md, "VQA and NLVR2 on synthetic scenes")',
  });
}

function readJsonl(path: string): { line: number; value: Record<string, unknown> }[] {
  if (!existsSync(path)) throw new VlError('INVALID_ARGUMENT', 'no such file', { subject: path });
  const rows: { line: number; value: Record<string, unknown> }[] = [];
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (!text.trim()) return;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw bad(path, i + 1, `not JSON: ${(err as Error).message}`);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(path, i + 1, 'a record must be a JSON object');
      rows.push({ line: i + 1, value: value as Record<string, unknown> });
    });
  if (rows.length === 0) throw new VlError('DATA_INVALID', 'no records', { subject: path });
  return rows;
}

const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** VQA records: `image`, `question`, `answers` [{ answer, score }] (score in [0, 1]); `id` and `kind` optional. */
export function readVqaFile(path: string): VlmoVqaExample[] {
  const root = dirname(resolve(path));
  return readJsonl(path).map(({ line, value: r }) => {
    if (!str(r.image)) throw bad(path, line, 'missing "image" (a path relative to the file)');
    if (!str(r.question)) throw bad(path, line, 'missing "question"');
    const answers = r.answers;
    if (
      !Array.isArray(answers) ||
      !answers.every((a) => a && str((a as VqaAnswer).answer) && (a as VqaAnswer).score >= 0 && (a as VqaAnswer).score <= 1)
    ) {
      throw bad(path, line, '"answers" must be a list of { answer, score } with scores in [0, 1]');
    }
    return {
      id: str(r.id) ? r.id : String(line),
      image: resolve(root, r.image),
      question: r.question,
      answers: answers as VqaAnswer[],
      kind: str(r.kind) ? r.kind : 'all',
    };
  });
}

/** NLVR2 records: `images` [left, right], `sentence`, `label` (true/false, or NLVR2's "True"/"False"). */
export function readNlvr2File(path: string): VlmoNlvr2Example[] {
  const root = dirname(resolve(path));
  return readJsonl(path).map(({ line, value: r }) => {
    const images = r.images;
    if (!Array.isArray(images) || images.length !== 2 || !images.every(str)) throw bad(path, line, '"images" must be two image paths');
    if (!str(r.sentence)) throw bad(path, line, 'missing "sentence"');
    const label = r.label === 'True' ? true : r.label === 'False' ? false : r.label;
    if (typeof label !== 'boolean') throw bad(path, line, `"label" must be true or false, got ${JSON.stringify(r.label)}`);
    return {
      id: str(r.id) ? r.id : String(line),
      images: [resolve(root, images[0] as string), resolve(root, images[1] as string)],
      sentence: r.sentence,
      label,
      kind: str(r.kind) ? r.kind : 'all',
    };
  });
}

/** The answer list (index = label): `path`, or answers.json next to the data file. */
export function readAnswerList(pathOrDataFile: string, explicit = false): string[] {
  const path = explicit ? pathOrDataFile : join(dirname(pathOrDataFile), 'answers.json');
  if (!existsSync(path)) {
    throw new VlError('INVALID_ARGUMENT', 'no answer list (answers.json)', {
      subject: path,
      hint: '`vl data synth --task vqa` writes answers.json next to the splits; else give --answers FILE (a JSON list of strings)',
    });
  }
  const list = JSON.parse(readFileSync(path, 'utf8')) as unknown;
  if (!Array.isArray(list) || list.length < 2 || !list.every(str) || new Set(list).size !== list.length) {
    throw new VlError('DATA_INVALID', 'an answer list is a JSON array of at least two distinct strings', { subject: path });
  }
  return list as string[];
}

/** Dense soft-score targets [N, A] (VQA v2's labels/scores); answers outside the list get no target and are counted. */
export function vqaTargets(examples: readonly VlmoVqaExample[], answers: readonly string[]): { targets: Float32Array; unknown: number } {
  const index = new Map(answers.map((a, i) => [a, i]));
  const targets = new Float32Array(examples.length * answers.length);
  let unknown = 0;
  examples.forEach((ex, n) => {
    for (const a of ex.answers) {
      const i = index.get(a.answer);
      if (i === undefined) unknown++;
      else targets[n * answers.length + i] = Math.max(targets[n * answers.length + i]!, a.score);
    }
  });
  return { targets, unknown };
}

/** Each distinct image decoded once, resized (bicubic, square) and normalised as VLMo's transforms: planes [K, 3, S, S]. */
export async function loadImagePlanes(
  paths: readonly string[],
  size: number,
): Promise<{ index: Map<string, number>; pixels: Float32Array }> {
  const index = new Map<string, number>();
  for (const p of paths) if (!index.has(p)) index.set(p, index.size);
  const plane = 3 * size * size;
  const pixels = new Float32Array(index.size * plane);
  for (const [path, i] of index) {
    await preprocessImage(
      await readImageFile(path),
      { size, mode: 'squash', interpolation: 'bicubic', norm: VLMO_IMAGE_NORM, subject: path },
      pixels,
      i * plane,
    );
  }
  return { index, pixels };
}
