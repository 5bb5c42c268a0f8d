// BLIP's ITC and ITM as the original training classes compute them (salesforce/BLIP `blip_retrieval.py`
// BLIP_Retrieval.forward and `blip_pretrain.py` BLIP_Pretrain.forward), over the parts both of our training
// classes have (BlipForRetrievalTraining, BlipForPretraining): online towers, projections, ITM head, temperature,
// the momentum twins and core's MomentumContrastive block (EMA + queues). No momentum update and no enqueue here:
// the callers do that.
import * as tf from '@tensorflow/tfjs-core';
import {
  firstToken,
  itcLoss,
  itmLoss,
  type ItmNegatives,
  itmPairs,
  l2Normalize,
  type Linear,
  type MomentumContrastive,
  type TextTransformer,
  type VisionTransformer,
} from '@vl/core';

/** What ITC and ITM read of a BLIP training model (the reference's attribute names, in our tree). */
export interface BlipContrastiveParts {
  readonly vision_model: VisionTransformer;
  readonly text_encoder: TextTransformer;
  readonly vision_proj: Linear;
  readonly text_proj: Linear;
  readonly itm_head: Linear;
  readonly temp: tf.Variable;
  readonly vision_model_m: VisionTransformer | null;
  readonly vision_proj_m: Linear | null;
  readonly text_encoder_m: TextTransformer | null;
  readonly text_proj_m: Linear | null;
  /** The twins' EMA and the queues (`image_queue`, `text_queue` [E, Q], `idx_queue` [1, Q]); null: no twins. */
  readonly contrastive: MomentumContrastive | null;
}

export interface BlipItcInputs {
  /** [B, 3, H, W] (the twin's vision tower reads them too). */
  pixels: tf.Tensor;
  /** [B, T] caption ids, [CLS] first, and their padding mask. */
  inputIds: tf.Tensor;
  attentionMask: tf.Tensor;
  /**
   * BLIP_Retrieval's `idx`: captions of one image are positives of each other, in the batch and in the queue
   * (`idx_queue`). Absent: the diagonal is the only positive (BLIP_Pretrain).
   */
  imageIds?: ArrayLike<number>;
  /** Weight of the momentum targets: alpha·softmax(sim_m) + (1 − alpha)·positives. */
  alpha: number;
  /** Image embeddings already computed from `pixels` (saves a vision forward). */
  imageEmbeds?: tf.Tensor;
}

export interface BlipItcOutputs {
  /** [B, 1 + N, W] */
  imageEmbeds: tf.Tensor;
  /** [B, E] F.normalize(vision_proj(image_embeds[:, 0])) */
  imageFeat: tf.Tensor;
  /** [B, T, H] text encoder without cross-attention (mode 'text'). */
  textEmbeds: tf.Tensor;
  textFeat: tf.Tensor;
  /** The twins' features (the online ones when the model has no twins). */
  imageFeatM: tf.Tensor;
  textFeatM: tf.Tensor;
  /** [B, B + Q]: online rows against the twins' batch columns, then the queue, over temp. */
  simI2t: tf.Tensor;
  simT2i: tf.Tensor;
  /** [B, B + Q] the positives, each row summing to 1 (`sim_targets`). */
  targets: tf.Tensor;
  /** (loss_i2t + loss_t2i) / 2 */
  loss: tf.Scalar;
}

/** ITC as BLIP's training forward computes it, minus the momentum update and the enqueue. */
export function blipItc(parts: BlipContrastiveParts, inputs: BlipItcInputs): BlipItcOutputs {
  return tf.tidy(() => {
    const { pixels, inputIds, attentionMask } = inputs;
    const imageEmbeds = inputs.imageEmbeds ?? parts.vision_model.forward(pixels).lastHiddenState;
    const textEmbeds = parts.text_encoder.forward({ inputIds, attentionMask }).lastHiddenState;
    const imageFeat = l2Normalize(parts.vision_proj.forward(firstToken(imageEmbeds)));
    const textFeat = l2Normalize(parts.text_proj.forward(firstToken(textEmbeds)));
    const imageIds = inputs.imageIds ? Array.from(inputs.imageIds) : undefined;
    const { vision_model_m: vm, vision_proj_m: vp, text_encoder_m: tm, text_proj_m: tp, contrastive } = parts;
    if (!(contrastive && vm && vp && tm && tp)) {
      // No twins: in-batch ITC with hard targets.
      const itc = itcLoss({ imageFeat, textFeat, temp: parts.temp, imageIds });
      return { imageEmbeds, imageFeat, textEmbeds, textFeat, imageFeatM: imageFeat, textFeatM: textFeat, ...pick(itc) };
    }
    const imageFeatM = l2Normalize(vp.forward(firstToken(vm.forward(pixels).lastHiddenState)));
    const textFeatM = l2Normalize(tp.forward(firstToken(tm.forward({ inputIds, attentionMask }).lastHiddenState)));
    // Columns: the twins' batch features, then the queue; soft targets alpha·softmax(sim_m) + (1 − alpha)·positives.
    const itc = contrastive.itc({ imageFeat, textFeat, imageFeatM, textFeatM, temp: parts.temp, alpha: inputs.alpha, imageIds });
    return { imageEmbeds, imageFeat, textEmbeds, textFeat, imageFeatM, textFeatM, ...pick(itc) };
  });
}

function pick(itc: { simI2t: tf.Tensor; simT2i: tf.Tensor; targets: tf.Tensor; loss: tf.Scalar }) {
  return { simI2t: itc.simI2t, simT2i: itc.simT2i, targets: itc.targets, loss: itc.loss };
}

export interface BlipItmInputs {
  /** [B, 1 + N, W] */
  imageEmbeds: tf.Tensor;
  /** [B, T] caption ids with column 0 = [ENC], and their mask. */
  encInputIds: tf.Tensor;
  attentionMask: tf.Tensor;
  /** One negative image per text and one negative text per image (drawn by the caller, or given). */
  negatives: ItmNegatives;
}

export interface BlipItmOutputs {
  /** [B, T, H] the image-grounded encoder on the positive pairs (`itm_pos_embeds`). */
  posEmbeds: tf.Tensor;
  /** [3B, 2] `vl_output`: positives; (negative image, text b); (image b, negative text). */
  logits: tf.Tensor;
  /** Cross-entropy against [1]·B + [0]·2B. */
  loss: tf.Scalar;
  accuracy: number;
}

/** ITM over the positive pairs and the given negatives, as BLIP's training forward. */
export function blipItm(parts: BlipContrastiveParts, inputs: BlipItmInputs): BlipItmOutputs {
  const b = inputs.imageEmbeds.shape[0] as number;
  const pairs = itmPairs(inputs.negatives);
  let accuracy = 0;
  const out = tf.tidy(() => {
    const textIdx = tf.tensor1d(pairs.textIndex, 'int32');
    const h = parts.text_encoder.forward({
      inputIds: tf.gather(inputs.encInputIds, textIdx),
      attentionMask: tf.gather(inputs.attentionMask, textIdx),
      encoderHiddenStates: tf.gather(inputs.imageEmbeds, tf.tensor1d(pairs.imageIndex, 'int32')),
    }).lastHiddenState; // [3B, T, H]
    const [, t, d] = h.shape as [number, number, number];
    const logits = parts.itm_head.forward(firstToken(h)); // [3B, 2]
    const itm = itmLoss(logits, pairs.labels);
    accuracy = itm.accuracy;
    return { posEmbeds: tf.slice(h, [0, 0, 0], [b, t, d]), logits, loss: itm.loss };
  });
  return { ...out, accuracy };
}
