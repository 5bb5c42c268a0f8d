// Reference outputs of an ALBEF model for the fixture's inputs (fixtures/albef-official README:
// each output is one call of salesforce/ALBEF's model_pretrain.py), and `verify`: compare them
// with an expected.json. The parity tests and `npx @vl/albef verify` share this code path.
import * as tf from '@tensorflow/tfjs-core';
import {
  type ActualOutput,
  compareOutputs,
  type DecodedTensor,
  ensureRuntime,
  itcLoss,
  itcMomentumTargets,
  itmLoss,
  itmPairs,
  mlmDistillLoss,
  mlmLoss,
  type ParityReport,
  Rng,
  sampleItmNegatives,
  VlError,
} from '@vl/core';
import { readExpectedFile, readTensorJsonFile } from '@vl/core/node';
import { loadAlbef } from './checkpoint.js';
import type { Albef } from './model.js';

/** The inputs.json entries the reference calls read. */
export interface AlbefReferenceInputs {
  image: DecodedTensor;
  input_ids: DecodedTensor;
  attention_mask: DecodedTensor;
  mlm_input_ids?: DecodedTensor;
  mlm_labels?: DecodedTensor;
  alpha: number;
}

function need(tensors: Record<string, DecodedTensor>, name: string, subject: string): DecodedTensor {
  const t = tensors[name];
  if (!t)
    throw new VlError('DATA_INVALID', `inputs has no '${name}' tensor`, {
      subject,
      hint: 'see fixtures/albef-official/README.md for the inputs layout',
    });
  return t;
}

export function parseReferenceInputs(
  tensors: Record<string, DecodedTensor>,
  other: Record<string, unknown>,
  subject = 'inputs.json',
): AlbefReferenceInputs {
  const alpha = other.alpha ?? 0.4;
  if (typeof alpha !== 'number') throw new VlError('DATA_INVALID', `'alpha' must be a number, got ${JSON.stringify(alpha)}`, { subject });
  return {
    image: need(tensors, 'image', subject),
    input_ids: need(tensors, 'input_ids', subject),
    attention_mask: need(tensors, 'attention_mask', subject),
    mlm_input_ids: tensors.mlm_input_ids,
    mlm_labels: tensors.mlm_labels,
    alpha,
  };
}

function toTensor(t: DecodedTensor): tf.Tensor {
  return tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');
}

/**
 * Every output the official fixture records, computed by this port in eval mode from the loaded
 * weights (no momentum update: `*_static`). Host copies; no tensors outlive the call.
 */
export function albefReferenceOutputs(model: Albef, inputs: AlbefReferenceInputs): Record<string, ActualOutput> {
  const wasTraining = model.training;
  model.eval();
  const out: Record<string, ActualOutput> = {};
  const host = (name: string, t: tf.Tensor) => {
    out[name] = { shape: [...t.shape], data: t.dataSync().slice() };
  };
  try {
    tf.tidy(() => {
      const image = toTensor(inputs.image);
      const ids = toTensor(inputs.input_ids);
      const mask = toTensor(inputs.attention_mask);
      const b = image.shape[0] as number;
      const alpha = inputs.alpha;
      const imageEmbeds = model.encodeImage(image);
      const imageFeat = model.imageFeat(imageEmbeds);
      const textEmbeds = model.encodeText(ids, mask);
      const textFeat = model.textFeat(textEmbeds);
      host('image_embeds', imageEmbeds);
      host('image_feat', imageFeat);
      host('text_embeds', textEmbeds);
      host('text_feat', textFeat);

      // ITC against momentum features + queue (the twins as loaded, no update).
      const imageEmbedsM = model.encodeImage(image, { momentum: true });
      const imageFeatM = model.imageFeat(imageEmbedsM, { momentum: true });
      const textFeatM = model.textFeat(model.encodeText(ids, mask, { momentum: true }), { momentum: true });
      const imageAll = model.candidates(imageFeatM, 'image_queue', true);
      const textAll = model.candidates(textFeatM, 'text_queue', true);
      const soft = itcMomentumTargets(imageFeatM, textFeatM, imageAll, textAll, model.temp);
      const itc = itcLoss({
        imageFeat,
        textFeat,
        temp: model.temp,
        imageFeatAll: imageAll,
        textFeatAll: textAll,
        softTargets: soft,
        alpha,
      });
      host('sim_i2t', itc.simI2t);
      host('sim_t2i', itc.simT2i);
      host('loss_ita_static', itc.loss);

      // ITM: positives, then mined negatives (forced when B = 2).
      const fused = model.fuse(textEmbeds, mask, imageEmbeds);
      host('fusion_pos_embeds', fused);
      const [, , d] = fused.shape as [number, number, number];
      host('fusion_pos_cls', tf.reshape(tf.slice(fused, [0, 0, 0], [b, 1, d]), [b, d]));
      host('itm_logits_pos', model.itmLogits(fused));
      const pairs = itmPairs(sampleItmNegatives({ simI2t: itc.simI2t, simT2i: itc.simT2i, rng: new Rng(0) }));
      const itmAll = model.itmLogitsForPairs(textEmbeds, mask, imageEmbeds, pairs);
      host('itm_logits_all', itmAll);
      const itm = itmLoss(itmAll, pairs.labels);
      host('loss_itm_static', itm.loss);

      // MLM on the fixed masked input, conditioned on the image; distilled against the twin.
      if (inputs.mlm_input_ids && inputs.mlm_labels) {
        const mlmIds = toTensor(inputs.mlm_input_ids);
        const labels = Int32Array.from(inputs.mlm_labels.data);
        const v = model.config.bertConfig.vocabSize;
        const logits = model.mlmLogits(mlmIds, mask, imageEmbeds);
        host('mlm_logits', logits);
        const logitsM = model.mlmLogits(mlmIds, mask, imageEmbedsM, { momentum: true });
        host('mlm_loss', mlmDistillLoss(tf.reshape(logits, [-1, v]), tf.reshape(logitsM, [-1, v]), labels, alpha));
        host('mlm_loss_ce', mlmLoss(logits, labels));
      }
    });
  } finally {
    model.train(wasTraining);
  }
  return out;
}

export interface VerifyOptions {
  model: string;
  inputs: string;
  expected: string;
  /** Max abs diff allowed per output; default the expected file's `meta.tolerance_max_abs`, else 1e-4. */
  tol?: number;
}

/** Loads the model folder, computes the outputs, compares every output expected.json names. */
export async function verifyAlbef(options: VerifyOptions): Promise<ParityReport> {
  await ensureRuntime();
  const { tensors, other } = await readTensorJsonFile(options.inputs);
  const inputs = parseReferenceInputs(tensors, other, options.inputs);
  const expected = await readExpectedFile(options.expected);
  const metaTol = expected.meta.tolerance_max_abs;
  const tol = options.tol ?? (typeof metaTol === 'number' ? metaTol : 1e-4);
  const model = await loadAlbef(options.model);
  try {
    return compareOutputs(expected.outputs, albefReferenceOutputs(model, inputs), tol);
  } finally {
    model.dispose();
  }
}
