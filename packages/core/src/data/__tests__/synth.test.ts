// Synthetic captioned scenes: determinism by seed, exact noise fraction, noise labels that match the
// corruption applied, captions true to the scene, and pixels that show what the captions say.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../node/image-decode.js';
import {
  COLORS,
  BACKGROUNDS,
  type NoiseLabel,
  type Scene,
  type SynthRecord,
  type SynthSummary,
  planSynthDataset,
  renderCaption,
  splitCounts,
} from '../synth.js';
import { writeSynthDataset } from '../../node/synth-writer.js';

function hashTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else
        out[p] = createHash('sha256')
          .update(readFileSync(join(dir, p)))
          .digest('hex');
    }
  };
  walk('');
  return out;
}

function readRecords(dir: string): SynthRecord[] {
  return ['train', 'val', 'test'].flatMap((s) =>
    readFileSync(join(dir, `${s}.jsonl`), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as SynthRecord),
  );
}

function permutations(n: number): number[][] {
  if (n <= 1) return [[0].slice(0, n)];
  return permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
}

let dirA: string;
let summaryA: SynthSummary;

beforeAll(async () => {
  dirA = mkdtempSync(join(tmpdir(), 'vl-synth-a-'));
  summaryA = await writeSynthDataset({ out: dirA, images: 120, noise: 0.3, seed: 1 });
});

describe('synthetic dataset', () => {
  it('writes splits, images and meta, and is byte-identical for the same seed', async () => {
    expect(summaryA.splits).toEqual({ train: 96, val: 12, test: 12 });
    const recs = readRecords(dirA);
    expect(recs).toHaveLength(120);
    expect(recs.filter((r) => r.split === 'val')).toHaveLength(12);
    expect(readdirSync(join(dirA, 'images', 'train'))).toHaveLength(96);
    const meta = JSON.parse(readFileSync(join(dirA, 'meta.json'), 'utf8'));
    expect(meta).toMatchObject({ seed: 1, images: 120, noise: 0.3, captionsPerImage: 3 });

    const dirB = mkdtempSync(join(tmpdir(), 'vl-synth-b-'));
    await writeSynthDataset({ out: dirB, images: 120, noise: 0.3, seed: 1, concurrency: 3 });
    expect(hashTree(dirB)).toEqual(hashTree(dirA));

    const other = planSynthDataset({ out: '', images: 120, noise: 0.3, seed: 2 });
    const same = planSynthDataset({ out: '', images: 120, noise: 0.3, seed: 1 });
    expect(same.records).toEqual(recs);
    expect(other.records.map((r) => r.captions[0])).not.toEqual(recs.map((r) => r.captions[0]));
  });

  it('corrupts exactly round(noise × train captions), only in train, kinds balanced', () => {
    const recs = readRecords(dirA);
    const labels = recs.flatMap((r) => r.noise.map((n) => ({ split: r.split, n })));
    const noisy = labels.filter((l) => l.n !== null);
    // 96 train images × 3 captions = 288; round(0.3 × 288) = round(86.4) = 86.
    expect(summaryA.trainCaptions).toBe(288);
    expect(noisy).toHaveLength(86);
    expect(noisy.every((l) => l.split === 'train')).toBe(true);
    const kinds = { other_caption: 0, keyword_soup: 0, wrong_attribute: 0 };
    for (const l of noisy) kinds[(l.n as NoiseLabel).kind]++;
    // Dealt round-robin: 86 = 29 + 29 + 28.
    expect(kinds).toEqual({ other_caption: 29, keyword_soup: 29, wrong_attribute: 28 });
    expect(summaryA.noisyCaptions).toEqual({ total: 86, ...kinds });
    const clean = planSynthDataset({ out: '', images: 50, noise: 0, seed: 1 });
    expect(clean.records.every((r) => r.noise.every((n) => n === null))).toBe(true);
    const all = planSynthDataset({ out: '', images: 50, noise: 1, seed: 1 });
    expect(all.summary.noisyCaptions.total).toBe(all.summary.trainCaptions);
  });

  it('records noise labels that match the corruption applied', () => {
    const recs = readRecords(dirA);
    const byId = new Map(recs.map((r) => [r.id, r]));
    const cleanOf = (r: SynthRecord) => r.captions.map((c, i) => r.noise[i]?.clean ?? c);
    let checked = 0;
    for (const r of recs) {
      r.noise.forEach((label, i) => {
        const caption = r.captions[i] as string;
        if (label === null) return;
        checked++;
        expect(caption).not.toBe(label.clean);
        // The clean caption was rendered from this scene with the recorded template.
        const renders = permutations(r.scene.groups.length).map((o) => renderCaption(r.scene, r.templates[i]!, o));
        expect(renders).toContain(label.clean);
        if (label.kind === 'other_caption') {
          const src = byId.get(label.source) as SynthRecord;
          expect(label.source).not.toBe(r.id);
          expect(src.split).toBe('train');
          expect(cleanOf(src)).toContain(caption);
          expect(cleanOf(r)).not.toContain(caption);
        } else if (label.kind === 'keyword_soup') {
          // Same content words (order shuffled, function words dropped) plus one or two fillers.
          const content = label.clean
            .replace(/[,:]/g, '')
            .split(' ')
            .filter((w) => !/^(a|an|and|of|on|in|at|is|are|there|from|to|shapes?|background|the)$/.test(w));
          const words = caption.split(' ');
          const extra = [...words];
          for (const w of content) {
            const k = extra.indexOf(w);
            expect(k).toBeGreaterThanOrEqual(0);
            extra.splice(k, 1);
          }
          expect(extra.length).toBeGreaterThanOrEqual(1);
          expect(extra.length).toBeLessThanOrEqual(2);
          for (const w of extra)
            expect(['image', 'photo', 'picture', 'stock', 'hd', 'free', 'download', 'wallpaper', 'graphic', 'clipart']).toContain(w);
        } else {
          // Re-render the scene with the one recorded change: it must give exactly this caption,
          // and the change must make the caption false (a (color, shape) not in the scene, or a
          // different count/size for that group).
          const g = r.scene.groups[label.group]!;
          expect(label.from).toBe(label.attribute === 'count' ? String(g.count) : g[label.attribute]);
          expect(label.to).not.toBe(label.from);
          const changed = { ...g, [label.attribute]: label.attribute === 'count' ? Number(label.to) : label.to };
          const wrong: Scene = { ...r.scene, groups: r.scene.groups.map((o, k) => (k === label.group ? changed : o)) };
          const wrongRenders = permutations(r.scene.groups.length).map((o) => renderCaption(wrong, label.template, o));
          expect(wrongRenders).toContain(caption);
          if (label.attribute === 'color' || label.attribute === 'shape') {
            expect(r.scene.groups.some((o) => o.color === changed.color && o.shape === changed.shape)).toBe(false);
          }
          if (label.attribute !== 'count') {
            // One word changed (plus "a"/"an" when the article follows the new word).
            const a = label.clean.split(' ');
            const b = caption.split(' ');
            expect(b).toHaveLength(a.length);
            const diff = a.map((w, k) => [w, b[k]]).filter(([x, y]) => x !== y && !(/^an?$/.test(x!) && /^an?$/.test(y!)));
            expect(diff).toHaveLength(1);
            expect(diff[0]![0]!.replace(/,$/, '').replace(/s$/, '')).toBe(label.from);
            expect(diff[0]![1]!.replace(/,$/, '').replace(/s$/, '')).toBe(label.to);
          }
        }
      });
    }
    expect(checked).toBe(86);
  });

  it('writes clean captions that describe the scene, and images that show it', async () => {
    const recs = readRecords(dirA).slice(0, 30);
    for (const r of recs) {
      r.captions.forEach((c, i) => {
        if (r.noise[i] !== null) return;
        for (const g of r.scene.groups) expect(c).toContain(`${g.color} ${g.shape}`);
      });
      if (r.scene.groups.length === 2 && r.templates.includes('relation')) {
        const c = r.captions[r.templates.indexOf('relation')] as string;
        if (r.noise[r.templates.indexOf('relation')] === null) {
          // The first-mentioned group is the left (or upper) one.
          const [a, b] = r.scene.groups;
          expect(c.indexOf(a!.shape)).toBeLessThan(c.lastIndexOf(b!.shape));
        }
      }
      // Pixels: every group's colour covers a patch, no other palette colour appears.
      const img = await decodeImage(readFileSync(join(dirA, r.image)));
      const near = (c: readonly number[]) => {
        let n = 0;
        for (let p = 0; p < img.data.length; p += 3) {
          if (Math.abs(img.data[p]! - c[0]!) <= 14 && Math.abs(img.data[p + 1]! - c[1]!) <= 14 && Math.abs(img.data[p + 2]! - c[2]!) <= 14)
            n++;
        }
        return n;
      };
      for (const [name, rgb] of Object.entries(COLORS)) {
        const groups = r.scene.groups.filter((g) => g.color === name);
        if (groups.length) expect(near(rgb)).toBeGreaterThan(15);
        else expect(near(rgb)).toBe(0);
      }
      // The top-left pixel is background (shapes stay inside their thirds, away from the corner).
      const bg = BACKGROUNDS[r.scene.background];
      expect(Math.abs(img.data[0]! - bg[0])).toBeLessThanOrEqual(10);
    }
  });

  it('validates options', () => {
    expect(splitCounts(2000, [0.8, 0.1, 0.1])).toEqual({ train: 1600, val: 200, test: 200 });
    expect(() => planSynthDataset({ out: '', images: 0 })).toThrow(/positive integer/);
    expect(() => planSynthDataset({ out: '', images: 10, noise: 1.5 })).toThrow(/noise/);
    expect(() => planSynthDataset({ out: '', images: 10, captionsPerImage: 6 })).toThrow(/1–5/);
  });
});

describe('synthetic vocabulary', () => {
  it('tokenises every caption, clean or noisy, without [UNK]', async () => {
    const { BertTokenizer } = await import('../tokenizer.js');
    const vocabTxt = readFileSync(join(dirA, 'vocab.txt'), 'utf8').trim().split('\n');
    const tok = BertTokenizer.fromVocab(vocabTxt);
    expect(vocabTxt.length).toBeLessThan(200);
    for (const r of readRecords(dirA)) {
      for (const c of [...r.captions, ...r.noise.flatMap((n) => (n ? [n.clean] : []))]) {
        expect(tok.encode(c).ids).not.toContain(tok.unkId);
      }
    }
    // Unseen words fall back to letters instead of [UNK].
    expect(tok.tokenize('zebra')).toEqual(['z', '##e', '##b', '##r', '##a']);
  });
});
