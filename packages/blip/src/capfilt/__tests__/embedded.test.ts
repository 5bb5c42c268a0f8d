// The embedded `scenes-tiny` models (shipped in packages/blip/models/, trained by
// scripts/pretrain-scenes.mjs): loadable by name, an unknown name refused with the known ones, and
// `blip capfilt --captioner scenes-tiny --filter scenes-tiny` applying BLIP's rule as stated — every
// caption's score is the filter's ITM P(match) and it is kept exactly when that is ≥ 0.5.
// Loads the committed weights; trains nothing.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, isVlError } from '@vl/core';
import { writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_MODELS, embeddedModelPath, resolveCheckpoint } from '../../embedded.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../../modeling.js';
import { runCapfiltCli } from '../cli.js';

let dir: string;
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  dir = mkdtempSync(join(tmpdir(), 'capfilt-embedded-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return isVlError(err) ? err.code : 'not a VlError';
  }
  return undefined;
}

describe('embedded models', () => {
  it('loads scenes-tiny by name, as a captioner and as a filter, without leaking tensors', async () => {
    expect(EMBEDDED_MODELS).toContain('scenes-tiny');
    const before = tf.memory().numTensors;
    const cap = await BlipForConditionalGeneration.fromPretrained(resolveCheckpoint('scenes-tiny', 'captioner'));
    const filt = await BlipForImageTextRetrieval.fromPretrained(resolveCheckpoint('scenes-tiny', 'filter'));
    expect(cap.tokenizer?.tokenToId('[DEC]')).toBeDefined();
    expect(filt.tokenizer?.tokenToId('[ENC]')).toBeDefined();
    expect(filt.config.visionConfig.imageSize).toBe(32);
    cap.dispose();
    filt.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses an unknown name with a typed error listing the known ones; paths pass through', () => {
    expect(codeOf(() => resolveCheckpoint('scenes-huge', 'filter'))).toBe('MODEL_UNKNOWN');
    expect(() => embeddedModelPath('scenes-huge', 'captioner')).toThrow(
      /no embedded captioner named 'scenes-huge'.*embedded models: scenes-tiny/,
    );
    expect(resolveCheckpoint('./scenes-huge', 'filter')).toBe('./scenes-huge');
    expect(resolveCheckpoint('/ckpt/retrieval', 'filter')).toBe('/ckpt/retrieval');
    expect(resolveCheckpoint(dir, 'filter')).toBe(dir);
  });

  it('capfilt with scenes-tiny: unknown names exit 2 naming the known ones', async () => {
    const errs: string[] = [];
    const io = { out: () => {}, err: (l: string) => errs.push(l) };
    const code = await runCapfiltCli(
      ['--data', join(dir, 'x.jsonl'), '--out', join(dir, 'o'), '--captioner', 'nosuch', '--filter', 'scenes-tiny'],
      io,
    );
    expect(code).toBe(2);
    expect(errs.join('\n')).toMatch(/MODEL_UNKNOWN \[--captioner\].*scenes-tiny/);
  });

  it("applies BLIP's rule: score = the filter's ITM P(match), kept exactly when ≥ 0.5", async () => {
    const data = join(dir, 'data');
    await writeSynthDataset({ out: data, images: 16, seed: 5, imageSize: 32, captionsPerImage: 3, noise: 0.3, splits: [1, 0, 0] });
    const out = join(dir, 'out');
    const io = { out: () => {}, err: () => {} };
    const argv = ['--data', join(data, 'train.jsonl'), '--out', out, '--captioner', 'scenes-tiny', '--filter', 'scenes-tiny'];
    expect(await runCapfiltCli([...argv, '--num-captions', '1', '--seed', '0', '--quiet', '--backend', 'cpu'], io)).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { threshold: number };
    expect(report.threshold).toBe(0.5);
    type Scored = { text: string; score: number; kept: boolean };
    const recs = readFileSync(join(out, 'journal.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .slice(1)
      .flatMap((l) => (JSON.parse(l) as { p: { records: { key: string; original?: Scored[]; synthetic?: Scored[] }[] } }).p.records);
    const scored = recs.flatMap((r) => [...(r.original ?? []), ...(r.synthetic ?? [])]);
    expect(scored.length).toBe(16 * 4);
    for (const c of scored) expect(c.kept, `${c.text}: ${c.score}`).toBe(c.score >= 0.5);
    // Not vacuous: the trained filter keeps some captions and removes others.
    expect(scored.some((c) => c.kept)).toBe(true);
    expect(scored.some((c) => !c.kept)).toBe(true);
    // The score is the ITM head's P(match), as `BlipForImageTextRetrieval.match` computes it.
    const first = JSON.parse(readFileSync(join(data, 'train.jsonl'), 'utf8').split('\n')[0] as string) as {
      image: string;
      captions: string[];
    };
    const filt = await BlipForImageTextRetrieval.fromPretrained(resolveCheckpoint('scenes-tiny', 'filter'));
    const m = await filt.match(join(data, first.image), first.captions);
    filt.dispose();
    const journaled = recs.find((r) => r.key === 'train.jsonl:1')?.original ?? [];
    expect(journaled.map((c) => c.text)).toEqual(first.captions);
    journaled.forEach((c, i) => expect(c.score).toBeCloseTo(m.itm[0]?.[i] as number, 4));
  });
});
