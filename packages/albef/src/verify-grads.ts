// Gradient parity with salesforce/ALBEF (fixtures/albef-official README, "Gradients"): the reference
// back-propagated each loss of one official `ALBEF.forward(image, text, alpha)` on its own — ITA, ITM,
// MLM — from a fresh model. We replay the same call through our pretraining forward (`Albef.forward`,
// the path `vl train albef` takes) with that call's recorded draws (ITM hard negatives, MLM masking from
// expected.json → informative), one objective switched on at a time, and compare the gradient of every
// parameter. `albef verify --grads` and the tests share this code path.
import type * as tf from '@tensorflow/tfjs-core';
import {
  checkGradients,
  decodeTensorJson,
  ensureRuntime,
  type GradientReplay,
  isTensorJson,
  type ParityReport,
  Rng,
  VlError,
} from '@vl/core';
import { readReferenceGradients, readTensorJsonFile } from '@vl/core/node';
import { fromOfficialStateDict, loadAlbef, toOfficialStateDict } from './checkpoint.js';
import type { Albef, AlbefBatch, AlbefDraws } from './model.js';
import { type AlbefReferenceInputs, parseReferenceInputs } from './verify.js';

/** The reference's loss names (grads.safetensors keys) → our objectives. */
export const ALBEF_GRADIENT_LOSSES: Readonly<Record<string, 'itc' | 'itm' | 'mlm'>> = { ita: 'itc', itm: 'itm', mlm: 'mlm' };

/** The draws `ALBEF.forward` made in the recorded call (expected.json → informative). */
export function recordedDraws(informative: unknown, subject: string): AlbefDraws {
  const get = (name: string): Int32Array => {
    const raw = (informative as Record<string, unknown> | undefined)?.[name];
    if (!isTensorJson(raw)) {
      throw new VlError(
        'DATA_INVALID',
        `expected.json has no informative.${name}: the recorded draws of forward() are needed for gradients`,
        {
          subject,
          hint: 'see fixtures/albef-official/README.md, "Gradients"',
        },
      );
    }
    return Int32Array.from(decodeTensorJson(raw, `${subject}: informative.${name}`).data);
  };
  return {
    negatives: { imageForText: get('forward_neg_image_idx'), textForImage: get('forward_neg_text_idx') },
    mlm: { inputIds: get('forward_mlm_input_ids'), labels: get('forward_mlm_labels') },
  };
}

/**
 * The replay of one recorded `ALBEF.forward`: each loss from a freshly loaded model in eval mode,
 * after the forward's opening `afterStep()` (temp clamp, momentum update), with only that objective on.
 */
export function albefGradientReplay(checkpoint: string, inputs: AlbefReferenceInputs, draws: AlbefDraws): GradientReplay<Albef> {
  const [b, t] = inputs.input_ids.shape as [number, number];
  const image = inputs.image;
  const batch: AlbefBatch = {
    pixels: { data: Float32Array.from(image.data), shape: image.shape as [number, number, number, number] },
    inputIds: Int32Array.from(inputs.input_ids.data),
    attentionMask: Int32Array.from(inputs.attention_mask.data),
    seqLength: t,
  };
  if (draws.negatives && draws.negatives.imageForText.length !== b) {
    throw new VlError('DATA_INVALID', `${draws.negatives.imageForText.length} recorded negatives for a batch of ${b}`, {
      subject: 'expected.json informative',
    });
  }
  return {
    losses: Object.keys(ALBEF_GRADIENT_LOSSES),
    keyMap: { fromOfficial: (official, subject) => fromOfficialStateDict(official, subject), toOfficial: toOfficialStateDict },
    async load() {
      const model = await loadAlbef(checkpoint);
      model.eval();
      // ALBEF.forward opens with the temp clamp and the momentum update (under no_grad).
      model.afterStep();
      return model;
    },
    loss(model, name): tf.Scalar {
      const on = ALBEF_GRADIENT_LOSSES[name];
      model.options = {
        ...model.options,
        objectives: { itc: { enabled: on === 'itc' }, itm: { enabled: on === 'itm' }, mlm: { enabled: on === 'mlm' } },
      };
      // The losses come out of Albef.forward's own tidy; variableGrads' scope disposes all but the total.
      return model.forward(batch, { rng: new Rng(0), alpha: inputs.alpha }, draws).loss;
    },
  };
}

export interface VerifyGradientsOptions {
  model: string;
  inputs: string;
  expected: string;
  /** grads.safetensors of the fixture. */
  grads: string;
  /** Max abs diff per gradient tensor; default grads.json's tolerance_max_abs, else 1e-4. */
  tol?: number;
}

/** Replays ITA, ITM and MLM with the recorded draws and compares every gradient the file holds. */
export async function verifyAlbefGradients(options: VerifyGradientsOptions): Promise<ParityReport> {
  await ensureRuntime();
  const reference = await readReferenceGradients(options.grads);
  const { tensors, other } = await readTensorJsonFile(options.inputs);
  const inputs = parseReferenceInputs(tensors, other, options.inputs);
  const expected = await readTensorJsonFile(options.expected);
  const draws = recordedDraws(expected.other.informative, options.expected);
  const tol = options.tol ?? reference.tolerance ?? 1e-4;
  const checks = await checkGradients(albefGradientReplay(options.model, inputs, draws), reference, tol);
  return { checks, passed: checks.every((c) => c.passed) };
}
