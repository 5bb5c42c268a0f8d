// `vl verify blip` on fixtures of Salesforce's original code (fixtures/blip-official): each output of
// expected.json recomputed as its `meta.calls` entry describes, from a checkpoint in the original layout loaded
// into the @vl/blip class that holds that original class (BLIP_Decoder → BlipForConditionalGeneration,
// BLIP_Retrieval → BlipForRetrievalTraining, BLIP_Pretrain → BlipForPretraining). The model's own ids are used
// where BLIP derives them ([DEC] and [ENC] in column 0, LM targets with pads and the prompt masked), so a wrong
// token id in the translated config shows up as a failed output.
import * as tf from '@tensorflow/tfjs-core';
import {
  type ActualOutput,
  checkGradients,
  compareOutputs,
  type DecodedTensor,
  decodeTensorJson,
  firstToken,
  generate,
  type GradientReplay,
  isTensorJson,
  lmLabels,
  lmLoss,
  type OutputCheck,
  type ParityReport,
  VlError,
} from '@vl/core';
import { readReferenceGradients, readTensorJsonFile } from '@vl/core/node';
import { type BlipContrastiveParts, blipItc, blipItm } from './contrastive.js';
import { textDecoderStep } from './decoder-step.js';
import { BlipForConditionalGeneration } from './modeling.js';
import { type OfficialBlipClass, officialToOurKey } from './official-keys.js';
import { BlipForPretraining } from './pretraining.js';
import { BlipForRetrievalTraining } from './retrieval-training.js';

/** The original class a fixture's meta.model_class names ("BLIP_Decoder (models/blip.py)"), or null. */
export function officialClassOfMeta(meta: Record<string, unknown>): OfficialBlipClass | null {
  const m = meta.model_class;
  if (typeof m !== 'string') return null;
  for (const c of ['BLIP_Decoder', 'BLIP_Retrieval', 'BLIP_Pretrain'] as const) if (m.startsWith(c)) return c;
  return null;
}

function input(inputs: Record<string, DecodedTensor>, name: string, path: string): DecodedTensor {
  const t = inputs[name];
  if (!t) throw new VlError('DATA_INVALID', `inputs.json has no '${name}'`, { subject: path });
  return t;
}

function toTensor(t: DecodedTensor): tf.Tensor {
  return tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');
}

async function host(t: tf.Tensor): Promise<ActualOutput> {
  return { shape: [...t.shape], data: await t.data() };
}

function idRows(rows: number[][]): ActualOutput {
  return { shape: [rows.length, rows[0]?.length ?? 0], data: rows.flat() };
}

/** Host ids [B, T] with column 0 replaced (BLIP: `[ENC]` for ITM, `[DEC]` for the decoder). */
function withFirstToken(ids: DecodedTensor, token: number): DecodedTensor {
  const data = Int32Array.from(ids.data);
  const t = ids.shape[1] as number;
  for (let r = 0; r < data.length; r += t) data[r] = token;
  return { kind: 'int', shape: [...ids.shape], data };
}

interface GenerateCall {
  numBeams: number;
  maxLength: number;
  minLength: number;
}

function generateCall(other: Record<string, unknown>, name: string, path: string): GenerateCall {
  const g = (other.generate as Record<string, Record<string, unknown>> | undefined)?.[name];
  if (!g || typeof g.max_length !== 'number')
    throw new VlError('DATA_INVALID', `inputs.json has no generate.${name} with max_length`, { subject: path });
  return {
    numBeams: typeof g.num_beams === 'number' ? g.num_beams : 1,
    maxLength: g.max_length,
    minLength: typeof g.min_length === 'number' ? g.min_length : 0,
  };
}

/** BLIP_Decoder: vision tower, teacher-forced decoder, LM loss, greedy and beam search from the prompt. */
async function decoderOutputs(
  model: BlipForConditionalGeneration,
  inputs: Record<string, DecodedTensor>,
  other: Record<string, unknown>,
  wanted: Set<string>,
  path: string,
): Promise<Record<string, ActualOutput>> {
  const out: Record<string, ActualOutput> = {};
  const t = model.config.textConfig;
  const ids = input(inputs, 'input_ids', path);
  const prompt = input(inputs, 'prompt_input_ids', path);
  const [b, len] = ids.shape as [number, number];
  const decIds = withFirstToken(ids, t.bosTokenId);
  const image = tf.tidy(() => model.visionForward(toTensor(input(inputs, 'image', path))).lastHiddenState);
  try {
    out.image_embeds = await host(image);
    const logits = tf.tidy(() =>
      model.text_decoder.forward({
        inputIds: toTensor(decIds),
        attentionMask: toTensor(input(inputs, 'attention_mask', path)),
        encoderHiddenStates: image,
      }),
    );
    out.decoder_logits = await host(logits);
    // BLIP_Decoder.forward: pads and the prompt ([DEC] a picture of) are not scored.
    const labels = lmLabels(decIds.data, [b, len], { padTokenId: t.padTokenId, promptLength: prompt.shape[1] as number });
    const loss = tf.tidy(() => lmLoss(logits, labels, { labelSmoothing: 0.1 }));
    out.loss_lm = await host(loss);
    tf.dispose([logits, loss]);
    const promptRows = Array.from({ length: b }, (_, r) =>
      Array.from(prompt.data.subarray(r * prompt.shape[1]!, (r + 1) * prompt.shape[1]!)),
    );
    for (const name of ['greedy_sequences', 'beam_sequences'] as const) {
      if (!wanted.has(name) && !(name === 'greedy_sequences' && wanted.has('greedy_sequence_logits'))) continue;
      const call = generateCall(other, name, path);
      const g = await generate(textDecoderStep(model.text_decoder.bert, model.text_decoder.predictions, image), {
        inputIds: promptRows,
        maxLength: call.maxLength,
        minLength: call.minLength,
        numBeams: call.numBeams,
        eosTokenId: t.sepTokenId,
        padTokenId: t.padTokenId,
        repetitionPenalty: 1.0,
      });
      out[name] = idRows(g.sequences);
      if (name === 'greedy_sequences' && wanted.has('greedy_sequence_logits')) {
        const seq = g.sequences;
        const s = tf.tidy(() => {
          const x = tf.tensor2d(seq.flat(), [seq.length, seq[0]?.length ?? 0], 'int32');
          return model.text_decoder.forward({ inputIds: x, attentionMask: tf.onesLike(x), encoderHiddenStates: image });
        });
        out.greedy_sequence_logits = await host(s);
        s.dispose();
      }
    }
  } finally {
    image.dispose();
  }
  return out;
}

/** BLIP_Retrieval and BLIP_Pretrain: ITC against the twins and the queue, ITM on the given negatives, and (pretrain) LM. */
async function contrastiveOutputs(
  model: BlipContrastiveParts & { encTokenId: number | null; config: BlipForPretraining['config'] },
  decoder: BlipForPretraining['text_decoder'] | null,
  inputs: Record<string, DecodedTensor>,
  other: Record<string, unknown>,
  withIds: boolean,
  path: string,
): Promise<Record<string, ActualOutput>> {
  const out: Record<string, ActualOutput> = {};
  if (typeof other.alpha !== 'number') throw new VlError('DATA_INVALID', "inputs.json has no number 'alpha'", { subject: path });
  const alpha = other.alpha;
  const ids = input(inputs, 'input_ids', path);
  const [b, len] = ids.shape as [number, number];
  const enc = model.encTokenId;
  if (enc === null) throw new VlError('CONFIG_INVALID', 'the model has no [ENC] token id', { subject: path });
  const t = model.config.textConfig;
  const negImage = input(inputs, 'itm_neg_image_idx', path);
  const negText = input(inputs, 'itm_neg_text_idx', path);
  const result = tf.tidy(() => {
    const pixels = toTensor(input(inputs, 'image', path));
    const inputIds = toTensor(ids);
    const attentionMask = toTensor(input(inputs, 'attention_mask', path));
    const itc = blipItc(model, {
      pixels,
      inputIds,
      attentionMask,
      imageIds: withIds ? input(inputs, 'idx', path).data : undefined,
      alpha,
    });
    const itm = blipItm(model, {
      imageEmbeds: itc.imageEmbeds,
      encInputIds: toTensor(withFirstToken(ids, enc)),
      attentionMask,
      negatives: { imageForText: Int32Array.from(negImage.data), textForImage: Int32Array.from(negText.data) },
    });
    const r: Record<string, tf.Tensor> = {
      image_embeds: itc.imageEmbeds,
      image_feat: itc.imageFeat,
      text_embeds: itc.textEmbeds,
      text_feat: itc.textFeat,
      sim_i2t: itc.simI2t,
      sim_t2i: itc.simT2i,
      loss_ita_static: itc.loss,
      itm_pos_embeds: itm.posEmbeds,
      itm_logits_pos: model.itm_head.forward(firstToken(itm.posEmbeds)),
      itm_logits_all: itm.logits,
      loss_itm_static: itm.loss,
    };
    if (withIds) r.sim_targets = itc.targets;
    if (decoder) {
      // BLIP_Pretrain.forward: column 0 = [DEC], targets = ids with pads → -100.
      const decIds = withFirstToken(ids, t.bosTokenId);
      const logits = decoder.forward({ inputIds: toTensor(decIds), attentionMask, encoderHiddenStates: itc.imageEmbeds });
      r.decoder_logits = logits;
      r.loss_lm_static = lmLoss(logits, lmLabels(decIds.data, [b, len], { padTokenId: t.padTokenId }), { labelSmoothing: 0.1 });
    }
    return r;
  });
  for (const [name, tensor] of Object.entries(result)) out[name] = await host(tensor);
  tf.dispose(Object.values(result));
  return out;
}

export interface OfficialVerifyResult {
  modelClass: OfficialBlipClass;
  report: ParityReport;
}

/** The LM head's weight, a parameter of its own here, is BLIP_Pretrain's word embeddings (one tensor, first named so). */
const LM_HEAD_WEIGHT = 'text_decoder.cls.predictions.decoder.weight';
const WORD_EMBEDDINGS = 'text_encoder.embeddings.word_embeddings.weight';

/**
 * BLIP_Pretrain's three losses (`grads.safetensors`, keys `<loss>/<official parameter name>`) replayed for core's
 * gradient comparison: each loss recomputed from a freshly loaded model's parts with the hard negatives the
 * reference drew (`expected.json` → `informative`); official names mapped through the checkpoint key map; the LM
 * head's gradient added onto the word embeddings it is tied to in BLIP.
 */
function pretrainReplay(
  checkpoint: string,
  inputs: Record<string, DecodedTensor>,
  other: Record<string, unknown>,
  informative: Record<string, DecodedTensor>,
  inputsPath: string,
): GradientReplay<BlipForPretraining> {
  if (typeof other.alpha !== 'number') throw new VlError('DATA_INVALID', "inputs.json has no number 'alpha'", { subject: inputsPath });
  const alpha = other.alpha;
  const ids = input(inputs, 'input_ids', inputsPath);
  const [b, len] = ids.shape as [number, number];
  const negImage = informative.forward_neg_image_idx ?? input(inputs, 'itm_neg_image_idx', inputsPath);
  const negText = informative.forward_neg_text_idx ?? input(inputs, 'itm_neg_text_idx', inputsPath);
  // Made inside variableGrads' scope, so they are freed with it.
  const feed = () => ({
    pixels: toTensor(input(inputs, 'image', inputsPath)),
    inputIds: toTensor(ids),
    attentionMask: toTensor(input(inputs, 'attention_mask', inputsPath)),
    alpha,
  });
  return {
    losses: ['ita', 'itm', 'lm'],
    load: async () => (await BlipForPretraining.fromPretrained(checkpoint)).eval(),
    loss(model, name) {
      const t = model.config.textConfig;
      if (name === 'ita') return blipItc(model, feed()).loss;
      if (name === 'itm') {
        const f = feed();
        const itc = blipItc(model, f);
        return blipItm(model, {
          imageEmbeds: itc.imageEmbeds,
          encInputIds: toTensor(withFirstToken(ids, model.encTokenId ?? t.vocabSize - 1)),
          attentionMask: f.attentionMask,
          negatives: { imageForText: Int32Array.from(negImage.data), textForImage: Int32Array.from(negText.data) },
        }).loss;
      }
      const f = feed();
      const decIds = withFirstToken(ids, t.bosTokenId);
      const image = model.vision_model.forward(f.pixels).lastHiddenState;
      const logits = model.text_decoder.forward({ inputIds: toTensor(decIds), attentionMask: f.attentionMask, encoderHiddenStates: image });
      return lmLoss(logits, lmLabels(decIds.data, [b, len], { padTokenId: t.padTokenId }), { labelSmoothing: 0.1 }) as tf.Scalar;
    },
    keyMap: {
      // Rows for a gradient only we have are named by our key; every other row by the reference's.
      fromOfficial: (official) => new Map([...official].map(([k, v]) => [officialToOurKey(k), v] as const)),
    },
    tied: { [LM_HEAD_WEIGHT]: WORD_EMBEDDINGS },
  };
}

/** expected.json → `informative`'s tensors (the reference's random draws), decoded. */
async function informativeOf(expectedPath: string): Promise<Record<string, DecodedTensor>> {
  const raw = (await readTensorJsonFile(expectedPath)).other.informative;
  const out: Record<string, DecodedTensor> = {};
  if (typeof raw === 'object' && raw !== null) {
    for (const [k, v] of Object.entries(raw)) if (isTensorJson(v)) out[k] = decodeTensorJson(v, `${expectedPath}: informative.${k}`);
  }
  return out;
}

/**
 * Loads `checkpoint` (either weights format, official layout) into the class holding `modelClass` and compares
 * every output in `expected` (max abs diff ≤ tol on floats, token ids exact); with `grads` (BLIP_Pretrain only),
 * also the gradients of its three losses.
 */
export async function verifyOfficial(options: {
  checkpoint: string;
  modelClass: OfficialBlipClass;
  inputs: { tensors: Record<string, DecodedTensor>; other: Record<string, unknown> };
  inputsPath: string;
  expected: Record<string, DecodedTensor>;
  expectedPath: string;
  tol: number;
  grads?: string;
}): Promise<OfficialVerifyResult> {
  const { checkpoint, modelClass, inputs, inputsPath, expected, tol } = options;
  if (options.grads !== undefined && modelClass !== 'BLIP_Pretrain') {
    throw new VlError('TASK_UNSUPPORTED', `gradient fixtures exist for BLIP_Pretrain only, not ${modelClass}`, { subject: options.grads });
  }
  const wanted = new Set(Object.keys(expected));
  let actual: Record<string, ActualOutput>;
  let gradChecks: OutputCheck[] = [];
  if (modelClass === 'BLIP_Decoder') {
    const model = await BlipForConditionalGeneration.fromPretrained(checkpoint, { tokenizer: null });
    try {
      actual = await decoderOutputs(model, inputs.tensors, inputs.other, wanted, inputsPath);
    } finally {
      model.dispose();
    }
  } else if (modelClass === 'BLIP_Retrieval') {
    const model = await BlipForRetrievalTraining.fromPretrained(checkpoint);
    try {
      actual = await contrastiveOutputs(model, null, inputs.tensors, inputs.other, true, inputsPath);
    } finally {
      model.dispose();
    }
  } else {
    const model = (await BlipForPretraining.fromPretrained(checkpoint)).eval();
    try {
      actual = await contrastiveOutputs(model, model.text_decoder, inputs.tensors, inputs.other, false, inputsPath);
      if (options.grads !== undefined) {
        const informative = await informativeOf(options.expectedPath);
        const reference = await readReferenceGradients(options.grads);
        gradChecks = await checkGradients(
          pretrainReplay(checkpoint, inputs.tensors, inputs.other, informative, inputsPath),
          reference,
          tol,
        );
      }
    } finally {
      model.dispose();
    }
  }
  const report = compareOutputs(expected, actual, tol);
  const checks = [...report.checks, ...gradChecks];
  return { modelClass, report: { checks, passed: checks.every((c) => c.passed) } };
}
