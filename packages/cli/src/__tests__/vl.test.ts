// The `vl` command over the model registry: help lists every command, `vl verify NAME` passes on the
// shared fixtures (exit 0), fails a perturbed expected file with a table (exit 1), and usage errors,
// unknown models exit 2; `vl convert` writes a folder that verifies like the original.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { captureIo } from '@vl/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { runVl } from '../program.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/', import.meta.url));
const BLIP = join(FIXTURES, 'blip-hf', 'blip-retrieval-seed0');
const ALBEF = join(FIXTURES, 'albef-official', 'albef-seed0');
const VLMO = join(FIXTURES, 'vlmo-official', 'vlmo-seed0');
const VLMO_PLUS = join(FIXTURES, 'vlmo-official', 'vlmo-plus-seed4');
const BEIT3 = (task: string) => join(FIXTURES, 'beit3-official', `beit3-${task}-seed0`);
const tmp = mkdtempSync(join(tmpdir(), 'vl-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const verify = (model: string, dir: string, expected = join(dir, 'expected.json')) => [
  'verify',
  model,
  '--checkpoint',
  dir,
  '--inputs',
  join(dir, 'inputs.json'),
  '--expected',
  expected,
  '--backend',
  'cpu',
];

describe('vl --help', () => {
  it('lists every command', async () => {
    const c = captureIo();
    expect(await runVl(['--help'], c.io)).toBe(0);
    const text = c.out.join('\n');
    for (const cmd of ['verify', 'train', 'eval', 'ablate', 'caption', 'match', 'convert', 'capfilt', 'data', 'bench'])
      expect(text).toMatch(new RegExp(`^  ${cmd} `, 'm'));
  });

  it('has help for each model command, with the same flags for every model', async () => {
    const helps = await Promise.all(
      ['blip', 'albef', 'vlmo'].map(async (m) => {
        const c = captureIo();
        expect(await runVl(['verify', m, '--help'], c.io)).toBe(0);
        return c.out.join('\n').replace(m, 'MODEL');
      }),
    );
    expect(helps[0]).toContain('--checkpoint <dir>');
    expect(helps[0]).toBe(helps[1]);
    expect(helps[0]).toBe(helps[2]);
  });
});

describe('vl verify', () => {
  it('passes on the BLIP, ALBEF and both VLMo fixtures with exit 0', async () => {
    for (const [model, dir] of [
      ['blip', BLIP],
      ['albef', ALBEF],
      ['vlmo', VLMO],
      ['vlmo', VLMO_PLUS],
    ] as const) {
      const c = captureIo();
      expect(await runVl(verify(model, dir), c.io), c.err.join('\n')).toBe(0);
      expect(c.out.join('\n')).toContain('all outputs within tolerance');
    }
  });

  it('passes on the five BEiT-3 fixtures (folder, and the .pth next to its config) with exit 0', async () => {
    for (const task of ['retrieval', 'captioning', 'vqa', 'classification', 'nlvr2']) {
      const dir = BEIT3(task);
      const c = captureIo();
      const argv = verify('beit3', dir);
      if (task === 'captioning') argv[3] = join(dir, 'pytorch_model.pth');
      expect(await runVl(argv, c.io), `${task}: ${c.err.join('\n')}`).toBe(0);
      expect(c.out.join('\n')).toContain('all outputs within tolerance');
    }
  });

  it('exits 1 on a perturbed BEiT-3 expected file (one caption id), naming the output', async () => {
    const dir = BEIT3('captioning');
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { outputs: Record<string, { data: unknown }> };
    const ids = expected.outputs.beam3_decoded as { data: number[][] };
    (ids.data[1] as number[])[2] = ((ids.data[1] as number[])[2] as number) + 1;
    const perturbed = join(tmp, 'beit3-perturbed.json');
    writeFileSync(perturbed, JSON.stringify(expected));
    const c = captureIo();
    expect(await runVl(verify('beit3', dir, perturbed), c.io)).toBe(1);
    const text = c.out.join('\n');
    expect(text).toMatch(/beam3_decoded\s+\[2,10\]\s+1\.00e\+0\s+0\s+FAIL/);
    expect(text).toMatch(/beam1_step_logits .* ok \(compared at 1089 of 1782 elements\)/);
    expect(text).toContain('1 output(s) out of tolerance');
  });

  it('exits 1 with a table naming the output that differs', async () => {
    const expected = JSON.parse(readFileSync(join(ALBEF, 'expected.json'), 'utf8')) as { outputs: Record<string, { data: unknown }> };
    const itm = expected.outputs.itm_logits_pos as { data: number[][] };
    (itm.data[0] as number[])[0] = ((itm.data[0] as number[])[0] as number) + 0.01;
    const perturbed = join(tmp, 'albef-perturbed.json');
    writeFileSync(perturbed, JSON.stringify(expected));
    const c = captureIo();
    expect(await runVl(verify('albef', ALBEF, perturbed), c.io)).toBe(1);
    const text = c.out.join('\n');
    expect(text).toMatch(/itm_logits_pos\s+\[2,2\]\s+1\.00e-2\s+0\.0001\s+FAIL/);
    expect(text).toMatch(/image_embeds .* ok/);
    expect(text).toContain('1 output(s) out of tolerance');
  });

  it('exits 1 on a perturbed VLMo expected file (vl verify vlmo)', async () => {
    const expected = JSON.parse(readFileSync(join(VLMO_PLUS, 'expected.json'), 'utf8')) as { outputs: Record<string, { data: unknown }> };
    const feats = expected.outputs.fusion_cls_feats as { data: number[][] };
    (feats.data[1] as number[])[3] = ((feats.data[1] as number[])[3] as number) - 0.01;
    const perturbed = join(tmp, 'vlmo-perturbed.json');
    writeFileSync(perturbed, JSON.stringify(expected));
    const c = captureIo();
    expect(await runVl(verify('vlmo', VLMO_PLUS, perturbed), c.io)).toBe(1);
    const text = c.out.join('\n');
    expect(text).toMatch(/fusion_cls_feats\s+\[2,30\]\s+1\.00e-2\s+0\.0001\s+FAIL/);
    expect(text).toContain('1 output(s) out of tolerance');
  });

  it('exits 2 on usage errors and unknown models', async () => {
    const cases: [string[], RegExp][] = [
      [['verify', 'blip', '--checkpoint', BLIP], /--inputs is required/],
      [['verify', 'blip', '--bogus'], /unknown option '--bogus'/],
      [['verify', 'blip', ...verify('blip', BLIP).slice(2), '--tol', 'abc'], /must be a number/],
      [['verify', 'nosuch', '--checkpoint', BLIP], /unknown model 'nosuch'.*albef, beit3, blip, clip, coca, vlmo/],
      [['verify', 'coca', '--checkpoint', BLIP], /--inputs is required/],
      [['caption', 'albef', 'x.png'], /'albef' does not support caption/],
      [['verify'], /give the model first/],
      [['nope'], /unknown command 'nope'/],
    ];
    for (const [argv, message] of cases) {
      const c = captureIo();
      expect(await runVl(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err.join('\n'), argv.join(' ')).toMatch(message);
    }
  });
});

describe('vl convert', () => {
  it('writes the folder layout from a weights file (.safetensors, or BEiT-3\'s {"model": …} .pth) + config; the result verifies like the original', async () => {
    for (const [model, dir] of [
      ['blip', BLIP],
      ['albef', ALBEF],
      ['vlmo', VLMO_PLUS],
      ['beit3', BEIT3('vqa')],
    ] as const) {
      const out = join(tmp, `${model}-converted`);
      const c = captureIo();
      expect(
        await runVl(
          [
            'convert',
            model,
            '--in',
            join(dir, model === 'beit3' ? 'pytorch_model.pth' : 'model.safetensors'),
            '--config',
            join(dir, 'config.json'),
            '--out',
            out,
            '--backend',
            'cpu',
          ],
          c.io,
        ),
        c.err.join('\n'),
      ).toBe(0);
      expect(c.out.join('\n')).toMatch(/unused keys: none/);
      const v = captureIo();
      const args = [
        'verify',
        model,
        '--checkpoint',
        out,
        '--inputs',
        join(dir, 'inputs.json'),
        '--expected',
        join(dir, 'expected.json'),
        '--backend',
        'cpu',
      ];
      expect(await runVl(args, v.io), v.err.join('\n')).toBe(0);
    }
    const c = captureIo();
    expect(await runVl(['convert', 'blip', '--in', join(tmp, 'missing.pth'), '--out', join(tmp, 'x')], c.io)).toBe(2);
  });
});

describe('bin/vl.js', () => {
  it('prints the help from the committed bin', () => {
    const r = spawnSync(process.execPath, [fileURLToPath(new URL('../../bin/vl.js', import.meta.url)), '--help'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/capfilt/);
  });
});
