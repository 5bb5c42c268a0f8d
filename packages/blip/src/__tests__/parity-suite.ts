// The fixture parity suite, run once per backend by parity-cpu.test.ts and parity-wasm.test.ts:
// `verifyCheckpoint` (the code behind `blip verify`) must reproduce every output of both
// Hugging Face reference checkpoints within 1e-4, token ids exactly.
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendChoice, initRuntime } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyCheckpoint } from '../verify.js';
import { CAPTIONING, RETRIEVAL } from './helpers.js';

export function paritySuite(backend: BackendChoice): void {
  describe(`HF parity on ${backend}`, () => {
    beforeAll(async () => {
      await initRuntime({ backend });
      expect(tf.getBackend()).toBe(backend);
    });

    for (const [name, dir, outputs] of [
      [
        'captioning',
        CAPTIONING,
        [
          'decoder_logits',
          'image_embeds',
          'vision_pooler_output',
          'greedy_sequences',
          'greedy_scores',
          'beam_sequences',
          'beam_sequences_scores',
          'prompted_greedy_sequences',
        ],
      ],
      [
        'retrieval',
        RETRIEVAL,
        [
          'itm_logits',
          'image_embeds',
          'itm_question_embeds',
          'itc_similarity',
          'itc_question_embeds',
          'itc_image_feat',
          'itc_text_feat',
          'vision_pooler_output',
        ],
      ],
    ] as const) {
      it(`${name}: every output in expected.json within 1e-4 (ids exact)`, async () => {
        const { report } = await verifyCheckpoint({
          model: dir,
          inputs: join(dir, 'inputs.json'),
          expected: join(dir, 'expected.json'),
          tol: 1e-4,
        });
        expect(report.checks.map((c) => c.name).sort()).toEqual([...outputs].sort());
        for (const c of report.checks) {
          expect(c.passed, `${c.name}: max abs diff ${c.maxAbsDiff} ${c.note ?? ''}`).toBe(true);
          if (c.kind === 'int') expect(c.maxAbsDiff).toBe(0);
        }
        expect(report.passed).toBe(true);
      });
    }
  });
}
