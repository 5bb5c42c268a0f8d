// Synthetic captioned scenes: coloured shapes drawn procedurally with compositional captions that
// only the image disambiguates, train/val/test JSONL + PNG/JPEG, and web-style caption noise
// recorded per caption so caption cleaning (CapFilt) is measurable. Deterministic by seed.
// Pure (scenes, pixels, captions, plans); `writeSynthDataset` in node/synth-writer.ts encodes and writes files.
import { VlError } from '../errors.js';
import { Rng } from '../runtime/rng.js';

export const COLORS = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [235, 205, 40],
  purple: [140, 60, 180],
  orange: [240, 130, 30],
} as const;
export const SHAPES = ['circle', 'square', 'triangle', 'diamond'] as const;
export const SIZES = ['small', 'large'] as const;
export const BACKGROUNDS = { white: [245, 245, 245], gray: [128, 128, 128], black: [20, 20, 20] } as const;
export const NOISE_KINDS = ['other_caption', 'keyword_soup', 'wrong_attribute'] as const;

export type ColorName = keyof typeof COLORS;
export type ShapeName = (typeof SHAPES)[number];
export type SizeName = (typeof SIZES)[number];
export type BackgroundName = keyof typeof BACKGROUNDS;
export type NoiseKind = (typeof NOISE_KINDS)[number];
export type Axis = 'horizontal' | 'vertical';
/** Third of the image along the layout axis: 0 = left/top, 1 = middle, 2 = right/bottom. */
export type Slot = 0 | 1 | 2;

export interface ShapeGroup {
  color: ColorName;
  shape: ShapeName;
  count: 1 | 2 | 3;
  size: SizeName;
  slot: Slot;
}

export interface Scene {
  background: BackgroundName;
  axis: Axis;
  /** Sorted by slot (left to right, or top to bottom); (color, shape) pairs are distinct. */
  groups: ShapeGroup[];
}

export type TemplateId = 'list_bg' | 'sizes' | 'positions' | 'relation' | 'relation_rev' | 'count' | 'there';

export type NoiseLabel =
  | { kind: 'other_caption'; clean: string; source: string }
  | { kind: 'keyword_soup'; clean: string }
  | {
      kind: 'wrong_attribute';
      clean: string;
      template: TemplateId;
      group: number;
      attribute: 'color' | 'shape' | 'size' | 'count';
      from: string;
      to: string;
    };

export interface SynthRecord {
  id: string;
  split: 'train' | 'val' | 'test';
  /** Relative to the dataset folder. */
  image: string;
  captions: string[];
  /** Template each clean caption was rendered from (same order as captions). */
  templates: TemplateId[];
  /** null for a clean caption, else how it was corrupted and what it was. */
  noise: (NoiseLabel | null)[];
  scene: Scene;
}

export interface SynthOptions {
  out: string;
  /** Total images over the three splits. */
  images: number;
  seed?: number;
  /** Fraction of training captions to corrupt (val/test stay clean). */
  noise?: number;
  /** Side in pixels; 64 keeps 2000 images to a couple of seconds and ~3 MB. */
  imageSize?: number;
  /** Captions per image, each from a different template (1–5; COCO has 5). */
  captionsPerImage?: number;
  /** train/val/test fractions. */
  splits?: readonly [number, number, number];
  format?: 'png' | 'jpeg';
  /** Image files written concurrently (sharp encodes on libuv's thread pool). */
  concurrency?: number;
  /**
   * What the split JSONL files hold: captioned images (default), VQA questions or NLVR2 image-pair
   * statements (synth-tasks.ts), over the same drawn scenes.
   */
  task?: 'captions' | 'vqa' | 'nlvr2';
  /** VQA: questions per image (default 3); NLVR2: statements with each image on the left (default 2). */
  perImage?: number;
}

export interface SynthSummary {
  out: string;
  seed: number;
  images: number;
  imageSize: number;
  captionsPerImage: number;
  format: 'png' | 'jpeg';
  noise: number;
  splits: Record<'train' | 'val' | 'test', number>;
  /** Corrupted training captions by kind; `total` = round(noise × training captions). */
  noisyCaptions: Record<NoiseKind | 'total', number>;
  trainCaptions: number;
  /** The split files' task ('captions' unless --task) and their record counts per split. */
  task: 'captions' | 'vqa' | 'nlvr2';
  records: Record<'train' | 'val' | 'test', number>;
  seconds: number;
}

const COUNT_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
const TOTAL_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
const SOUP_FILLERS = ['image', 'photo', 'picture', 'stock', 'hd', 'free', 'download', 'wallpaper', 'graphic', 'clipart'];
const SOUP_STOPWORDS = new Set([
  'a',
  'an',
  'and',
  'of',
  'on',
  'in',
  'at',
  'is',
  'are',
  'there',
  'from',
  'to',
  'shapes',
  'shape',
  'background',
  'the',
]);

const colorNames = Object.keys(COLORS) as ColorName[];
const bgNames = Object.keys(BACKGROUNDS) as BackgroundName[];

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)] as T;
}

// ---------------------------------------------------------------------------------------------
// Scenes

/** One random scene: 1–3 groups in distinct thirds along a random axis, distinct (color, shape). */
export function sampleScene(rng: Rng): Scene {
  const n = 1 + rng.int(3);
  const slots = rng
    .shuffle([0, 1, 2] as Slot[])
    .slice(0, n)
    .sort((a, b) => a - b);
  const used = new Set<string>();
  const groups: ShapeGroup[] = slots.map((slot) => {
    let color: ColorName;
    let shape: ShapeName;
    do {
      color = pick(rng, colorNames);
      shape = pick(rng, SHAPES);
    } while (used.has(`${color} ${shape}`));
    used.add(`${color} ${shape}`);
    return { color, shape, count: (1 + rng.int(3)) as 1 | 2 | 3, size: pick(rng, SIZES), slot };
  });
  return { background: pick(rng, bgNames), axis: rng.uniform() < 0.5 ? 'horizontal' : 'vertical', groups };
}

// ---------------------------------------------------------------------------------------------
// Drawing: a tiny rasteriser (2×2 supersampled edges) instead of SVG, so pixels are identical on
// every machine whatever librsvg version sharp bundles.

function inside(shape: ShapeName, dx: number, dy: number, r: number): boolean {
  switch (shape) {
    case 'circle':
      return dx * dx + dy * dy <= r * r;
    case 'square':
      // 0.85 r half-side: about the circle's area, so "large" means the same for every shape.
      return Math.abs(dx) <= 0.85 * r && Math.abs(dy) <= 0.85 * r;
    case 'diamond':
      return Math.abs(dx) + Math.abs(dy) <= 1.15 * r;
    case 'triangle': {
      // Apex up at (0, -r), base from (-r, 0.75 r) to (r, 0.75 r).
      if (dy < -r || dy > 0.75 * r) return false;
      return Math.abs(dx) <= (r * (dy + r)) / (1.75 * r);
    }
  }
}

/** Radius in pixels: absolute (not relative to the slot), so "small" and "large" mean the same in every image. */
export function shapeRadius(size: SizeName, imageSize: number): number {
  return (size === 'small' ? 0.075 : 0.14) * imageSize;
}

/** Draws a scene as 8-bit RGB (HWC). `rng` jitters colours and positions. */
export function drawScene(scene: Scene, imageSize: number, rng: Rng): Uint8Array {
  const S = imageSize;
  const px = new Uint8Array(S * S * 3);
  const bg = BACKGROUNDS[scene.background];
  // One brightness offset per image (±10 levels), not per pixel: per-pixel noise would make the
  // PNGs incompressible (~10 KB instead of ~1 KB at 64 px) without making the task harder.
  const j = rng.int(21) - 10;
  const bgJ = bg.map((v) => clamp(v + j));
  for (let i = 0; i < S * S; i++) {
    px[i * 3] = bgJ[0] as number;
    px[i * 3 + 1] = bgJ[1] as number;
    px[i * 3 + 2] = bgJ[2] as number;
  }
  const third = S / 3;
  for (const g of scene.groups) {
    const r = shapeRadius(g.size, S);
    const base = COLORS[g.color];
    const col = base.map((v) => clamp(v + rng.int(25) - 12));
    for (let k = 0; k < g.count; k++) {
      // Along the axis: the group's third; across it: one of `count` equal cells.
      const cell = S / g.count;
      const along = g.slot * third + third / 2 + (rng.uniform() - 0.5) * Math.max(0, third - 2 * r - 2);
      const across = k * cell + cell / 2 + (rng.uniform() - 0.5) * Math.max(0, cell - 2 * r - 2);
      const [cx, cy] = scene.axis === 'horizontal' ? [along, across] : [across, along];
      const x0 = Math.max(0, Math.floor(cx - r - 1));
      const x1 = Math.min(S - 1, Math.ceil(cx + r + 1));
      const y0 = Math.max(0, Math.floor(cy - r - 1));
      const y1 = Math.min(S - 1, Math.ceil(cy + r + 1));
      for (let y = y0; y <= y1; y++) {
        for (let x = x0; x <= x1; x++) {
          let cover = 0;
          for (const [sx, sy] of SUBPIXELS) if (inside(g.shape, x + sx - cx, y + sy - cy, r)) cover++;
          if (cover === 0) continue;
          const a = cover / 4;
          const o = (y * S + x) * 3;
          for (let c = 0; c < 3; c++) px[o + c] = Math.round((px[o + c] as number) * (1 - a) + (col[c] as number) * a);
        }
      }
    }
  }
  return px;
}

const SUBPIXELS: ReadonlyArray<readonly [number, number]> = [
  [0.25, 0.25],
  [0.75, 0.25],
  [0.25, 0.75],
  [0.75, 0.75],
];

function clamp(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// ---------------------------------------------------------------------------------------------
// Captions

function groupPhrase(g: ShapeGroup, withSize: boolean): string {
  const noun = g.count === 1 ? g.shape : `${g.shape}s`;
  const rest = [withSize ? g.size : null, g.color, noun].filter(Boolean).join(' ');
  // "an orange circle", "a large orange circle": the article follows the next word's sound.
  const count = g.count === 1 ? (/^[aeiou]/.test(rest) ? 'an' : 'a') : COUNT_WORDS[g.count];
  return `${count} ${rest}`;
}

function joinAnd(parts: string[]): string {
  if (parts.length <= 1) return parts.join('');
  return `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`;
}

const SLOT_WORDS: Record<Axis, [string, string, string]> = {
  horizontal: ['on the left', 'in the middle', 'on the right'],
  vertical: ['at the top', 'in the middle', 'at the bottom'],
};

/** Templates that apply to a scene (relations need two or more groups). */
export function templatesFor(scene: Scene): TemplateId[] {
  const all: TemplateId[] = ['list_bg', 'sizes', 'positions', 'count', 'there'];
  return scene.groups.length > 1 ? [...all, 'relation', 'relation_rev'] : all;
}

/**
 * Renders one template. `order` permutes the groups where the template lists them without
 * positions (so wording varies but a re-render of the same scene and order is identical).
 */
export function renderCaption(scene: Scene, template: TemplateId, order?: readonly number[]): string {
  const gs = scene.groups;
  const listed = (order ?? gs.map((_, i) => i)).map((i) => gs[i] as ShapeGroup);
  const horiz = scene.axis === 'horizontal';
  switch (template) {
    case 'list_bg':
      return `${joinAnd(listed.map((g) => groupPhrase(g, false)))} on a ${scene.background} background`;
    case 'sizes':
      return joinAnd(listed.map((g) => groupPhrase(g, true)));
    case 'positions':
      return joinAnd(gs.map((g) => `${groupPhrase(g, false)} ${SLOT_WORDS[scene.axis][g.slot]}`));
    case 'relation': {
      const p = gs.map((g) => groupPhrase(g, false));
      if (p.length === 2) return `${p[0]} ${horiz ? 'left of' : 'above'} ${p[1]}`;
      return `${joinAnd(p)} from ${horiz ? 'left to right' : 'top to bottom'}`;
    }
    case 'relation_rev': {
      const p = gs.map((g) => groupPhrase(g, false)).reverse();
      if (p.length === 2) return `${p[0]} ${horiz ? 'right of' : 'below'} ${p[1]}`;
      return `${joinAnd(p)} from ${horiz ? 'right to left' : 'bottom to top'}`;
    }
    case 'count': {
      const total = gs.reduce((s, g) => s + g.count, 0);
      return `${TOTAL_WORDS[total]} ${total === 1 ? 'shape' : 'shapes'}: ${joinAnd(listed.map((g) => groupPhrase(g, false)))}`;
    }
    case 'there': {
      const first = listed[0] as ShapeGroup;
      return `there ${first.count === 1 ? 'is' : 'are'} ${joinAnd(listed.map((g) => groupPhrase(g, false)))}`;
    }
  }
}

interface CleanCaption {
  text: string;
  template: TemplateId;
  order: number[];
}

function sampleCaptions(scene: Scene, k: number, rng: Rng): CleanCaption[] {
  const templates = rng.shuffle(templatesFor(scene)).slice(0, k);
  return templates.map((template) => {
    const order = rng.shuffle(scene.groups.map((_, i) => i));
    return { text: renderCaption(scene, template, order), template, order };
  });
}

// ---------------------------------------------------------------------------------------------
// Noise

/** Content words shuffled with a filler or two, the way scraped alt-text lists keywords. */
export function keywordSoup(clean: string, rng: Rng): string {
  const words = clean
    .replace(/[,:]/g, '')
    .split(/\s+/)
    .filter((w) => w && !SOUP_STOPWORDS.has(w));
  const fillers = 1 + rng.int(2);
  for (let i = 0; i < fillers; i++) words.push(pick(rng, SOUP_FILLERS));
  return rng.shuffle(words).join(' ');
}

/** Templates that mention sizes; changing a size elsewhere would not change the caption. */
const SIZE_TEMPLATES: ReadonlySet<TemplateId> = new Set(['sizes']);

/**
 * Changes one attribute of one group so the rendered caption is false for the image: a new colour
 * or shape never collides with another group's (color, shape), a new count or size differs.
 */
export function wrongAttribute(
  scene: Scene,
  clean: CleanCaption,
  rng: Rng,
): { text: string; label: Extract<NoiseLabel, { kind: 'wrong_attribute' }> } {
  const attrs: Array<'color' | 'shape' | 'size' | 'count'> = ['color', 'shape', 'count'];
  if (SIZE_TEMPLATES.has(clean.template)) attrs.push('size');
  const gi = rng.int(scene.groups.length);
  const g = scene.groups[gi] as ShapeGroup;
  const attribute = pick(rng, attrs);
  const taken = new Set(scene.groups.filter((_, i) => i !== gi).map((o) => `${o.color} ${o.shape}`));
  let options: string[];
  if (attribute === 'color') options = colorNames.filter((c) => c !== g.color && !taken.has(`${c} ${g.shape}`));
  else if (attribute === 'shape') options = SHAPES.filter((s) => s !== g.shape && !taken.has(`${g.color} ${s}`));
  else if (attribute === 'size') options = SIZES.filter((s) => s !== g.size);
  else options = ['1', '2', '3'].filter((c) => Number(c) !== g.count);
  const to = pick(rng, options);
  const changed: ShapeGroup = { ...g };
  if (attribute === 'color') changed.color = to as ColorName;
  else if (attribute === 'shape') changed.shape = to as ShapeName;
  else if (attribute === 'size') changed.size = to as SizeName;
  else changed.count = Number(to) as 1 | 2 | 3;
  const wrongScene: Scene = { ...scene, groups: scene.groups.map((o, i) => (i === gi ? changed : o)) };
  const text = renderCaption(wrongScene, clean.template, clean.order);
  const from = attribute === 'count' ? String(g.count) : g[attribute];
  return { text, label: { kind: 'wrong_attribute', clean: clean.text, template: clean.template, group: gi, attribute, from, to } };
}

// ---------------------------------------------------------------------------------------------
// The dataset

const pad = (i: number, width: number) => String(i).padStart(width, '0');

export function splitCounts(images: number, fractions: readonly [number, number, number]): Record<'train' | 'val' | 'test', number> {
  const total = fractions[0] + fractions[1] + fractions[2];
  if (!(total > 0) || fractions.some((f) => f < 0)) throw new VlError('INVALID_ARGUMENT', `bad split fractions ${fractions.join(',')}`);
  const val = Math.round((images * fractions[1]) / total);
  const test = Math.round((images * fractions[2]) / total);
  return { train: images - val - test, val, test };
}

/** Builds the records (scenes, captions, noise) without drawing or writing anything. */
export function planSynthDataset(options: SynthOptions): { records: SynthRecord[]; summary: Omit<SynthSummary, 'seconds' | 'out'> } {
  const images = options.images;
  const seed = options.seed ?? 0;
  const noise = options.noise ?? 0;
  const k = options.captionsPerImage ?? 3;
  const imageSize = options.imageSize ?? 64;
  const format = options.format ?? 'png';
  if (!Number.isInteger(images) || images < 1) throw new VlError('INVALID_ARGUMENT', `images must be a positive integer, got ${images}`);
  if (!(noise >= 0 && noise <= 1)) throw new VlError('INVALID_ARGUMENT', `noise must be in [0, 1], got ${noise}`);
  if (!Number.isInteger(k) || k < 1 || k > 5) {
    throw new VlError('INVALID_ARGUMENT', `captionsPerImage must be 1–5, got ${k}`, { hint: 'one-group scenes have 5 templates' });
  }
  if (!Number.isInteger(imageSize) || imageSize < 24 || imageSize > 1024) {
    throw new VlError('INVALID_ARGUMENT', `imageSize must be an integer in 24–1024, got ${imageSize}`);
  }
  const splits = splitCounts(images, options.splits ?? [0.8, 0.1, 0.1]);
  const root = new Rng(seed);
  const width = Math.max(6, String(images - 1).length);
  const ext = format === 'png' ? 'png' : 'jpg';

  const records: SynthRecord[] = [];
  const clean: CleanCaption[][] = [];
  for (let i = 0; i < images; i++) {
    // One generator per image, derived from (seed, index): any image can be redrawn alone.
    const rng = root.fork(`scene/${i}`);
    const scene = sampleScene(rng);
    const caps = sampleCaptions(scene, k, rng);
    const split = i < splits.train ? 'train' : i < splits.train + splits.val ? 'val' : 'test';
    const id = pad(i, width);
    clean.push(caps);
    records.push({
      id,
      split,
      image: `images/${split}/${id}.${ext}`,
      captions: caps.map((c) => c.text),
      templates: caps.map((c) => c.template),
      noise: caps.map(() => null),
      scene,
    });
  }

  // Noise: exactly round(noise × train captions) of them, positions drawn without replacement and
  // kinds dealt round-robin over that random order, so the three kinds are equally frequent.
  const nrng = root.fork('noise');
  const trainCaptions = splits.train * k;
  const corrupt = Math.round(noise * trainCaptions);
  const positions = nrng.shuffle(Array.from({ length: trainCaptions }, (_, i) => i)).slice(0, corrupt);
  const noisy: Record<NoiseKind | 'total', number> = { total: corrupt, other_caption: 0, keyword_soup: 0, wrong_attribute: 0 };
  positions.forEach((pos, n) => {
    const i = Math.floor(pos / k);
    const c = pos % k;
    const rec = records[i] as SynthRecord;
    const cap = (clean[i] as CleanCaption[])[c] as CleanCaption;
    const kind = NOISE_KINDS[n % NOISE_KINDS.length] as NoiseKind;
    noisy[kind]++;
    if (kind === 'keyword_soup') {
      rec.captions[c] = keywordSoup(cap.text, nrng);
      rec.noise[c] = { kind, clean: cap.text };
    } else if (kind === 'wrong_attribute') {
      const { text, label } = wrongAttribute(rec.scene, cap, nrng);
      rec.captions[c] = text;
      rec.noise[c] = label;
    } else {
      // Another training image's clean caption that says something else than all of this image's.
      const own = new Set((clean[i] as CleanCaption[]).map((x) => x.text));
      let text = cap.text;
      let source = rec.id;
      for (let attempt = 0; attempt < 20 && own.has(text); attempt++) {
        const j = splits.train > 1 ? (i + 1 + nrng.int(splits.train - 1)) % splits.train : i;
        text = pick(nrng, clean[j] as CleanCaption[]).text;
        source = (records[j] as SynthRecord).id;
      }
      if (own.has(text)) {
        // No other training image to borrow from (a one-image train split): fall back to soup so
        // the caption is still corrupted and labelled with what was actually done.
        noisy.other_caption--;
        noisy.keyword_soup++;
        rec.captions[c] = keywordSoup(cap.text, nrng);
        rec.noise[c] = { kind: 'keyword_soup', clean: cap.text };
      } else {
        rec.captions[c] = text;
        rec.noise[c] = { kind, clean: cap.text, source };
      }
    }
  });

  return {
    records,
    summary: {
      seed,
      images,
      imageSize,
      captionsPerImage: k,
      format,
      noise,
      splits,
      noisyCaptions: noisy,
      trainCaptions,
      task: 'captions',
      records: { ...splits },
    },
  };
}

/**
 * A BERT-style vocab.txt covering every word the captions (clean and noisy) can contain, plus single
 * letters and `##` letters so any other word still tokenises without [UNK]. ~150 entries: the
 * right size for the tiny text towers tests and demos train on this dataset.
 */
export function synthVocabulary(): string[] {
  const words = new Set<string>();
  const add = (text: string) => text.split(/[\s]+/).forEach((w) => w && words.add(w));
  for (const c of colorNames) add(c);
  for (const sh of SHAPES) add(`${sh} ${sh}s`);
  for (const sz of SIZES) add(sz);
  for (const bg of bgNames) add(bg);
  COUNT_WORDS.forEach((w) => add(w));
  TOTAL_WORDS.forEach((w) => add(w));
  SOUP_FILLERS.forEach((w) => add(w));
  Object.values(SLOT_WORDS).forEach((ws) => ws.forEach(add));
  add('a an and on of is are there from to shape shapes background left right top bottom above below middle in at the');
  const letters = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  return [
    ...specials,
    ',',
    ':',
    '.',
    ...[...letters],
    ...[...letters].map((l) => `##${l}`),
    ...[...words].filter((w) => w.length > 1).sort(),
  ];
}
