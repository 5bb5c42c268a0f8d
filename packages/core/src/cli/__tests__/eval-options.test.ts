// A model's own `vl eval` switches (ModelSpec.evalOptions): declared once, parsed and checked by the
// command layer, and handed to `evaluate` by camelCase name; a model without them gets none.
import { captureLines } from '@vl/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { AnyModelSpec, EvalRequest } from '../../model/contract.js';
import { registerModel, unregisterModel } from '../../model/registry.js';
import { runModelCli } from '../program.js';

const seen: EvalRequest[] = [];

function spec(name: string, withOptions: boolean): AnyModelSpec {
  return {
    name,
    packageName: `@test/${name}`,
    description: 'test model',
    checkpoint: {
      configSchema: z.object({}),
      parseConfig: (raw) => raw,
      presets: { tiny: () => ({}) },
      build: () => {
        throw new Error('not built in this test');
      },
      fromPretrained: async () => {
        throw new Error('not loaded in this test');
      },
      savePretrained: async () => {},
      keyMap: { fromOfficial: (m) => new Map(m), toOfficial: () => new Map() },
    },
    objectives: [],
    tasks: ['retrieval', 'itm'],
    evalOptions: withOptions
      ? [
          { flags: '--rerank-k <k>', description: 'candidates re-ranked', kind: 'int', min: 0, default: 16 },
          { flags: '--no-fusion', description: 'dual encoder only' },
        ]
      : undefined,
    async evaluate(req) {
      seen.push(req);
      return { lines: ['ok'], json: {} };
    },
  };
}

registerModel(spec('zz-eval-opts', true));
registerModel(spec('zz-eval-plain', false));
afterAll(() => {
  unregisterModel('zz-eval-opts');
  unregisterModel('zz-eval-plain');
});

const base = ['eval', '--checkpoint', 'ck', '--data', 'test.jsonl', '--backend', 'cpu'];

describe('ModelSpec.evalOptions', () => {
  it('passes declared switches (given or defaulted) to evaluate by camelCase name', async () => {
    seen.length = 0;
    const c = captureLines();
    expect(await runModelCli('zz-eval-opts', [...base, '--rerank-k', '5', '--no-fusion'], c.io), c.lines.join('\n')).toBe(0);
    expect(seen[0]?.options).toEqual({ rerankK: 5, fusion: false });
    expect(await runModelCli('zz-eval-opts', base, c.io)).toBe(0);
    expect(seen[1]?.options).toEqual({ rerankK: 16, fusion: true });
    expect(seen[1]?.tasks).toEqual(['retrieval', 'itm']);
  });

  it('checks them like any option (exit 2), and a model without them neither lists nor accepts them', async () => {
    const c = captureLines();
    expect(await runModelCli('zz-eval-opts', [...base, '--rerank-k', '-1'], c.io)).toBe(2);
    expect(await runModelCli('zz-eval-opts', [...base, '--rerank-k', 'x'], c.io)).toBe(2);
    seen.length = 0;
    expect(await runModelCli('zz-eval-plain', [...base, '--rerank-k', '5'], c.io)).toBe(2);
    expect(await runModelCli('zz-eval-plain', base, c.io)).toBe(0);
    expect(seen[0]?.options).toEqual({});
    const help = captureLines();
    expect(await runModelCli('zz-eval-opts', ['eval', '--help'], help.io)).toBe(0);
    expect(help.lines.join('\n')).toMatch(/--rerank-k <k>\s+candidates re-ranked/);
  });
});
