// `vl train clip|coca` on the synthetic scenes through the CLI layer: losses finite and going down,
// logit_scale kept within open_clip's clamp, the run reloads, `vl eval` retrieval + zero-shot run on it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runModelCli } from '@vl/core/cli';
import { writeSynthDataset } from '@vl/core/node';
import { captureLines } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadClip } from '../checkpoint.js';
import '../index.js';
import { MAX_LOGIT_SCALE } from '../model.js';

const tmp = mkdtempSync(join(tmpdir(), 'coca-train-'));
const data = join(tmp, 'data');

beforeAll(async () => {
  await writeSynthDataset({ out: data, images: 40, seed: 3, imageSize: 32, captionsPerImage: 1, splits: [0.6, 0.1, 0.3] });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Step {
  loss: number;
  losses: Record<string, number>;
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function train(model: 'clip' | 'coca', extra: string[] = []): Promise<string> {
  const out = join(tmp, model);
  const c = captureLines();
  const args = [
    'train',
    '--data',
    data,
    '--out',
    out,
    '--batch-size',
    '8',
    '--max-steps',
    '10',
    '--lr',
    '2e-3',
    '--seed',
    '1',
    '--quiet',
    '--backend',
    'cpu',
  ];
  const code = await runModelCli(model, [...args, ...extra], c.io);
  expect(code, c.lines.join('\n')).toBe(0);
  const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Step);
  expect(steps).toHaveLength(10);
  for (const s of steps) for (const v of [s.loss, ...Object.values(s.losses)]) expect(Number.isFinite(v)).toBe(true);
  const first = mean(steps.slice(0, 3).map((s) => s.loss));
  const last = mean(steps.slice(-3).map((s) => s.loss));
  expect(last, `${first} → ${last}`).toBeLessThan(first);
  return c.lines.join('\n');
}

describe('vl train / eval clip and coca', () => {
  it('trains CLIP from scratch (symmetric CE, clamped temperature), then evaluates retrieval and zero-shot', async () => {
    const text = await train('clip');
    expect(text).toMatch(/CLIP: 10 steps/);
    const model = await loadClip(join(tmp, 'clip', 'model'));
    const scale = model.logitScale.dataSync()[0] as number;
    expect(scale).toBeGreaterThanOrEqual(0);
    expect(scale).toBeLessThanOrEqual(MAX_LOGIT_SCALE);
    model.dispose();
    const c = captureLines();
    const test = join(data, 'test.jsonl');
    const code = await runModelCli(
      'clip',
      ['eval', '--checkpoint', join(tmp, 'clip'), '--data', test, '--task', 'retrieval', '--task', 'zero-shot', '--quiet'],
      c.io,
    );
    expect(code, c.lines.join('\n')).toBe(0);
    expect(c.lines.join('\n')).toMatch(/zero-shot \(white \/ gray \/ black, 4 templates\): accuracy \d+\.\d%/);
    expect(c.lines.join('\n')).toMatch(/retrieval: image→text R@1/);
  }, 120_000);

  it('trains CoCa with both losses from one forward', async () => {
    const text = await train('coca');
    expect(text).toMatch(/CoCa: 10 steps/);
    expect(text).toMatch(/caption \d/);
    expect(text).toMatch(/contrastive \d/);
  }, 120_000);
});
