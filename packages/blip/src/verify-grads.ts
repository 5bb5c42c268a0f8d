// Gradient parity with transformers' BLIP classes (fixtures/blip-hf README, "Gradients"): the reference
// back-propagated each training loss on its own from a freshly loaded model, in eval mode —
//   lm  (BlipForConditionalGeneration): the decoder's shifted cross-entropy with label smoothing 0.1,
//       labels = input_ids with -100 where attention_mask is 0;
//   itm (BlipForImageTextRetrieval, use_itm_head=True): cross_entropy(itm_score, [1, 0, 0, …]);
//   itc (use_itm_head=False): (cross_entropy(s / 0.07, arange(B)) + cross_entropy(sᵀ / 0.07, arange(B))) / 2
//       of the image × text cosine similarities s.
// We compute the same losses through our classes' forwards and core's losses and compare the gradient
// of every parameter. `blip verify --grads` and the tests share this code path.
import * as tf from '@tensorflow/tfjs-core';
import {
  checkGradients,
  crossEntropy,
  type DecodedTensor,
  ensureRuntime,
  type GradientReplay,
  IGNORE_INDEX,
  itmLoss,
  type KeyMap,
  lmLoss,
  type ParityReport,
  VlError,
} from '@vl/core';
import { readReferenceGradients, readTensorJsonFile } from '@vl/core/node';
import { readBlipConfig, TIED_KEYS } from './checkpoint.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from './modeling.js';

/** The temperature of the fixture's ITC loss: a constant of the loss, not a parameter. */
export const BLIP_GRADIENT_ITC_TEMPERATURE = 0.07;

/** The losses the reference gradients file holds for each class. */
export const BLIP_GRADIENT_LOSSES = {
  BlipForConditionalGeneration: ['lm'],
  BlipForImageTextRetrieval: ['itm', 'itc'],
} as const;

interface BlipGradientInputs {
  pixelValues: DecodedTensor;
  inputIds: DecodedTensor;
  attentionMask: DecodedTensor;
}

function need(tensors: Record<string, DecodedTensor>, name: string, subject: string): DecodedTensor {
  const t = tensors[name];
  if (!t) throw new VlError('DATA_INVALID', `inputs has no '${name}' tensor`, { subject, hint: 'see fixtures/blip-hf/README.md' });
  return t;
}

const tensorOf = (t: DecodedTensor) => tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');

/** `input_ids.masked_fill(attention_mask == 0, -100)`. */
export function labelsFromMask(inputIds: ArrayLike<number>, attentionMask: ArrayLike<number>): Int32Array {
  return Int32Array.from(inputIds as ArrayLike<number>, (id, i) => (attentionMask[i] === 0 ? IGNORE_INDEX : id));
}

/** The fixture's ITC loss: symmetric cross-entropy of similarities [B, B] (image × text) over a constant temperature. */
export function symmetricItcLoss(similarity: tf.Tensor, temperature = BLIP_GRADIENT_ITC_TEMPERATURE): tf.Scalar {
  return tf.tidy(() => {
    const b = similarity.shape[0] as number;
    const targets = Int32Array.from({ length: b }, (_, i) => i);
    const logits = tf.div(similarity, temperature);
    const i2t = crossEntropy(logits, targets);
    const t2i = crossEntropy(tf.transpose(logits), targets);
    return tf.div(tf.add(i2t, t2i), 2) as tf.Scalar;
  });
}

/** Hugging Face's names are ours; the tied decoder bias, which the files never hold, lives once as `cls.predictions.bias`. */
const HF_KEY_MAP: GradientReplay<BlipModel>['keyMap'] = {
  fromOfficial(official) {
    const out = new Map(official);
    for (const tied of Object.keys(TIED_KEYS)) out.delete(tied);
    return out;
  },
};

/** The classes whose gradients are verified. */
export type BlipGradientModel = BlipForConditionalGeneration | BlipForImageTextRetrieval;
type BlipModel = BlipGradientModel;

/** A batch as the fixtures hold it: pixel values [B, 3, H, W], input ids and attention mask [B, T]. */
export interface BlipLossBatch {
  pixelValues: tf.Tensor;
  inputIds: tf.Tensor;
  attentionMask: tf.Tensor;
}

/**
 * The loss named as the fixture README defines it, through the class's own forward: 'lm' for
 * BlipForConditionalGeneration; 'itm' (row 0 a match, the others not) and 'itc' for BlipForImageTextRetrieval.
 */
export function blipReferenceLoss(model: BlipGradientModel, name: string, batch: BlipLossBatch): tf.Scalar {
  if (model instanceof BlipForConditionalGeneration && name === 'lm') {
    const { decoderLogits } = model.forward(batch);
    const labels = labelsFromMask(batch.inputIds.dataSync(), batch.attentionMask.dataSync());
    return lmLoss(decoderLogits, labels, { labelSmoothing: 0.1 }) as tf.Scalar;
  }
  if (model instanceof BlipForImageTextRetrieval && name === 'itm') {
    const { itmScore } = model.forwardItm(batch);
    const b = itmScore.shape[0] as number;
    return itmLoss(
      itmScore,
      Int32Array.from({ length: b }, (_, i) => (i === 0 ? 1 : 0)),
    ).loss;
  }
  if (model instanceof BlipForImageTextRetrieval && name === 'itc') return symmetricItcLoss(model.forwardItc(batch).itmScore);
  throw new VlError('TASK_UNSUPPORTED', `${model.constructor.name} has no '${name}' loss to replay`, {
    subject: name,
    hint: 'lm on BlipForConditionalGeneration; itm and itc on BlipForImageTextRetrieval',
  });
}

function replayFor(
  modelClass: keyof typeof BLIP_GRADIENT_LOSSES,
  checkpoint: string,
  inputs: BlipGradientInputs,
  keyMap: GradientReplay<BlipModel>['keyMap'],
): GradientReplay<BlipModel> {
  const batch = () => ({
    pixelValues: tensorOf(inputs.pixelValues),
    inputIds: tensorOf(inputs.inputIds),
    attentionMask: tensorOf(inputs.attentionMask),
  });
  return {
    losses: BLIP_GRADIENT_LOSSES[modelClass],
    keyMap,
    load: async () =>
      modelClass === 'BlipForImageTextRetrieval'
        ? BlipForImageTextRetrieval.fromPretrained(checkpoint, { tokenizer: null })
        : BlipForConditionalGeneration.fromPretrained(checkpoint, { tokenizer: null }),
    loss: (model, name) => blipReferenceLoss(model, name, batch()), // the batch is made inside variableGrads' scope: freed with it
  };
}

export interface VerifyBlipGradientsOptions {
  model: string;
  inputs: string;
  /** grads.safetensors of the fixture. */
  grads: string;
  /** Max abs diff per gradient tensor; default grads.json's tolerance_max_abs, else 1e-4. */
  tol?: number;
  /** The reference's parameter names onto ours; default Hugging Face's (= ours, the tied decoder bias dropped). */
  keyMap?: Pick<KeyMap<BlipModel>, 'fromOfficial'> & Partial<Pick<KeyMap<BlipModel>, 'toOfficial'>>;
}

/** Computes the losses the gradients file holds for the checkpoint's class and compares every gradient. */
export async function verifyBlipGradients(options: VerifyBlipGradientsOptions): Promise<ParityReport> {
  await ensureRuntime();
  const config = await readBlipConfig(options.model);
  const arch = config.architectures?.[0] ?? 'BlipForConditionalGeneration';
  if (arch !== 'BlipForConditionalGeneration' && arch !== 'BlipForImageTextRetrieval') {
    throw new VlError('TASK_UNSUPPORTED', `no gradient replay for '${arch}'`, {
      subject: options.model,
      hint: 'gradients are verified for BlipForConditionalGeneration (lm) and BlipForImageTextRetrieval (itm, itc)',
    });
  }
  const reference = await readReferenceGradients(options.grads);
  const { tensors } = await readTensorJsonFile(options.inputs);
  const inputs: BlipGradientInputs = {
    pixelValues: need(tensors, 'pixel_values', options.inputs),
    inputIds: need(tensors, 'input_ids', options.inputs),
    attentionMask: need(tensors, 'attention_mask', options.inputs),
  };
  const tol = options.tol ?? reference.tolerance ?? 1e-4;
  const checks = await checkGradients(replayFor(arch, options.model, inputs, options.keyMap ?? HF_KEY_MAP), reference, tol);
  return { checks, passed: checks.every((c) => c.passed) };
}
