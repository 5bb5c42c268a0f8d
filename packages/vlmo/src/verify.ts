// Reference outputs of a VLMo model for the fixture's inputs, each from the call that
// fixtures/vlmo-official/README.md names (infer_image, infer_text, compute_itc, infer, compute_mlm,
// the text-only MLM path, the relative position indices), and `verify`: compare them with an
// expected.json. The parity tests, `vl verify vlmo` and `vlmo verify` share this code path.
import * as tf from '@tensorflow/tfjs-core';
import {
  type ActualOutput,
  compareOutputs,
  crossEntropy,
  type DecodedTensor,
  ensureRuntime,
  mlmLoss,
  type ParityReport,
  VlError,
} from '@vl/core';
import { readExpectedFile, readTensorJsonFile } from '@vl/core/node';
import { loadVlmo } from './checkpoint.js';
import type { Vlmo } from './model.js';

/** What inputs.json holds (VLMo's batch keys). */
export interface VlmoReferenceInputs {
  image: DecodedTensor;
  text_ids: DecodedTensor;
  text_masks: DecodedTensor;
  text_ids_mlm?: DecodedTensor;
  text_labels_mlm?: DecodedTensor;
  image_token_type_idx: number;
}

function need(tensors: Record<string, DecodedTensor>, name: string, subject: string): DecodedTensor {
  const t = tensors[name];
  if (!t) {
    throw new VlError('DATA_INVALID', `inputs has no '${name}' tensor`, {
      subject,
      hint: 'see fixtures/vlmo-official/README.md for the inputs layout',
    });
  }
  return t;
}

export function parseReferenceInputs(
  tensors: Record<string, DecodedTensor>,
  other: Record<string, unknown>,
  subject = 'inputs.json',
): VlmoReferenceInputs {
  const idx = other.image_token_type_idx ?? 1;
  if (typeof idx !== 'number' || !Number.isInteger(idx)) {
    throw new VlError('DATA_INVALID', `'image_token_type_idx' must be an integer, got ${JSON.stringify(idx)}`, { subject });
  }
  return {
    image: need(tensors, 'image', subject),
    text_ids: need(tensors, 'text_ids', subject),
    text_masks: need(tensors, 'text_masks', subject),
    text_ids_mlm: tensors.text_ids_mlm,
    text_labels_mlm: tensors.text_labels_mlm,
    image_token_type_idx: idx,
  };
}

function toTensor(t: DecodedTensor): tf.Tensor {
  return tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');
}

/** CE of the row-i-matches-column-i targets (`F.cross_entropy(logits, arange(B))`). */
function diagonalCe(logits: tf.Tensor): tf.Tensor {
  const b = logits.shape[0] as number;
  return crossEntropy(
    logits,
    Int32Array.from({ length: b }, (_, i) => i),
  );
}

/**
 * VLMo's ITC loss (`objectives.compute_itc`): ½·(plain + VL-FFN), each the mean of the image→text and
 * text→image cross-entropies with the diagonal as targets.
 */
export function vlmoItcLoss(i2t: tf.Tensor, vlI2t: tf.Tensor | null): tf.Scalar {
  return tf.tidy(() => {
    const pair = (l: tf.Tensor) => tf.div(tf.add(diagonalCe(l), diagonalCe(tf.transpose(l))), 2);
    const plain = pair(i2t);
    return (vlI2t ? tf.mul(tf.add(plain, pair(vlI2t)), 0.5) : plain) as tf.Scalar;
  });
}

/** `compute_mlm` scales the image-conditioned MLM loss by 0.25; the text-only MLM loss is not scaled. */
export const VLMO_MLM_LOSS_SCALE = 0.25;

/**
 * Every output the official fixture records, computed by this port in eval mode. Host copies; no
 * tensors outlive the call. Outputs whose heads the model lacks are left out (and reported missing).
 */
export function vlmoReferenceOutputs(model: Vlmo, inputs: VlmoReferenceInputs): Record<string, ActualOutput> {
  const wasTraining = model.training;
  model.eval();
  const out: Record<string, ActualOutput> = {};
  const host = (name: string, t: tf.Tensor | null) => {
    if (t) out[name] = { shape: [...t.shape], data: t.dataSync().slice() };
  };
  try {
    tf.tidy(() => {
      const image = toTensor(inputs.image);
      const ids = toTensor(inputs.text_ids);
      const mask = toTensor(inputs.text_masks);
      const tokenTypeIdx = inputs.image_token_type_idx;
      const b = image.shape[0] as number;

      // Image only (infer_image) and text only (infer_text).
      host('image_embed_tokens', model.embedImageTokens(image));
      const img = model.encodeImage(image, { tokenTypeIdx });
      host('image_feats', img.feats);
      host('image_raw_cls_feats', img.rawClsFeats);
      host('image_cls_feats', img.clsFeats);
      host('image_cls_vlffn_feats', img.clsVlffnFeats);
      host('text_embeddings', model.embedTextTokens(ids));
      const txt = model.encodeText(ids, mask);
      host('text_feats', txt.feats);
      host('text_raw_cls_feats', txt.rawClsFeats);
      host('text_cls_feats', txt.clsFeats);
      host('text_cls_vlffn_feats', txt.clsVlffnFeats);

      // ITC (compute_itc).
      if (img.clsFeats && txt.clsFeats) {
        host('itc_logit_scale', model.itcScale());
        const i2t = model.itcLogits(img.clsFeats, txt.clsFeats);
        host('itc_i2t_logits', i2t);
        host('itc_t2i_logits', tf.transpose(i2t));
        let vl: tf.Tensor | null = null;
        if (img.clsVlffnFeats && txt.clsVlffnFeats) {
          host('itc_logit_vl_scale', model.itcScale(true));
          vl = model.itcLogits(img.clsVlffnFeats, txt.clsVlffnFeats, true);
          host('itc_vl_i2t_logits', vl);
        }
        host('itc_loss', vlmoItcLoss(i2t, vl));
      }

      // Fusion (infer) and ITM, also with text i paired with image (i − 1) mod B.
      const fused = model.fuse(image, ids, mask, { tokenTypeIdx });
      host('fusion_text_feats', fused.textFeats);
      host('fusion_image_feats', fused.imageFeats);
      host('fusion_raw_cls_feats', fused.rawClsFeats);
      host('fusion_cls_feats', fused.clsFeats);
      if (model.itm_score) {
        host('itm_logits', model.itmLogits(fused.clsFeats));
        const rolled = tf.gather(
          image,
          Int32Array.from({ length: b }, (_, i) => (i - 1 + b) % b),
        );
        host('itm_logits_rolled_images', model.itmLogits(model.fuse(rolled, ids, mask, { tokenTypeIdx }).clsFeats));
      }

      // MLM: image-conditioned (compute_mlm, fused route) and text-only (infer_text_mlm).
      if (model.mlm_score && inputs.text_ids_mlm && inputs.text_labels_mlm) {
        const mlmIds = toTensor(inputs.text_ids_mlm);
        const labels = Int32Array.from(inputs.text_labels_mlm.data);
        const logits = model.mlmLogits(model.fuse(image, mlmIds, mask, { tokenTypeIdx }).textFeats);
        host('mlm_logits', logits);
        host('mlm_loss', tf.mul(mlmLoss(logits, labels), VLMO_MLM_LOSS_SCALE));
        const textLogits = model.mlmLogits(model.encodeText(mlmIds, mask, { vlffn: false }).feats);
        host('textmlm_logits', textLogits);
        host('textmlm_loss', mlmLoss(textLogits, labels));
      }
    });
    const indices = model.relativePositionIndices();
    if (indices) {
      for (const [name, index] of [
        ['relative_position_index', indices.image],
        ['text_relative_position_index', indices.text],
        ['text_imag_relative_position_index', indices.fusion],
      ] as const) {
        out[name] = { shape: [index.size, index.size], data: index.data };
      }
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
}

export interface VerifyVlmoOptions {
  /** A VLMo folder, or a weights file next to its config.json. */
  checkpoint: string;
  inputs: string;
  expected: string;
  /** Max abs diff per float output; default the expected file's `meta.tolerance_max_abs`, else 1e-4. */
  tol?: number;
}

/** Loads the checkpoint, computes the outputs, compares every output expected.json names. */
export async function verifyVlmo(options: VerifyVlmoOptions): Promise<ParityReport & { notes: string[] }> {
  await ensureRuntime();
  const { tensors, other } = await readTensorJsonFile(options.inputs);
  const inputs = parseReferenceInputs(tensors, other, options.inputs);
  const expected = await readExpectedFile(options.expected);
  const metaTol = expected.meta.tolerance_max_abs;
  const tol = options.tol ?? (typeof metaTol === 'number' ? metaTol : 1e-4);
  const model = await loadVlmo(options.checkpoint);
  try {
    return { ...compareOutputs(expected.outputs, vlmoReferenceOutputs(model, inputs), tol), notes: model.loadNotes };
  } finally {
    model.dispose();
  }
}
