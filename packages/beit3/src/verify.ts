// Reference outputs of a BEiT-3 model for a fixture's inputs, each from the call that
// fixtures/beit3-official/README.md names (`meta.calls`): the backbone alone (image only, text only,
// joint, masked patches), the retrieval heads and CLIP loss, the captioning forward, loss, accuracy and
// the official beam search, VQA, ImageNet classification and NLVR2; and `verifyBeit3`, which compares
// them with an expected.json. The parity tests, `vl verify beit3` and `beit3 verify` share this path.
import * as tf from '@tensorflow/tfjs-core';
import { type ActualOutput, compareOutputs, type DecodedTensor, ensureRuntime, type ParityReport, VlError } from '@vl/core';
import { readExpectedFile, readTensorJsonFile } from '@vl/core/node';
import { loadBeit3 } from './checkpoint.js';
import { generateCaptions } from './generation.js';
import {
  type Beit3ForCaptioning,
  type Beit3ForImageClassification,
  type Beit3ForRetrieval,
  type Beit3ForVisualQuestionAnswering,
  type Beit3ForVisualReasoning,
  type Beit3Model,
} from './model.js';
import { captioningTrainBatch } from './objectives.js';

/** What inputs.json holds (the official argument names). */
export interface Beit3ReferenceInputs {
  image: DecodedTensor;
  image2?: DecodedTensor;
  language_tokens?: DecodedTensor;
  padding_mask?: DecodedTensor;
  vision_masked_position?: DecodedTensor;
  masked_tokens?: DecodedTensor;
  language_masked_pos?: DecodedTensor;
  masked_labels?: DecodedTensor;
  /** `CaptioningHandler` arguments: one or more beam counts. */
  generate?: { numMaxBpeTokens: number; numBeams: number[]; lengthPenalty: number };
}

function parseGenerate(value: unknown, subject: string): Beit3ReferenceInputs['generate'] {
  if (value === undefined) return undefined;
  const g = value as Record<string, unknown>;
  const beams = Array.isArray(g.num_beams) ? g.num_beams : [g.num_beams];
  const ok =
    typeof g === 'object' &&
    Number.isInteger(g.num_max_bpe_tokens) &&
    typeof g.length_penalty === 'number' &&
    beams.length > 0 &&
    beams.every((b) => Number.isInteger(b) && (b as number) > 0);
  if (!ok) {
    throw new VlError(
      'DATA_INVALID',
      `'generate' must be { num_max_bpe_tokens, num_beams (int or list), length_penalty }, got ${JSON.stringify(value)}`,
      {
        subject,
      },
    );
  }
  return { numMaxBpeTokens: g.num_max_bpe_tokens as number, numBeams: beams as number[], lengthPenalty: g.length_penalty as number };
}

export function parseReferenceInputs(
  tensors: Record<string, DecodedTensor>,
  other: Record<string, unknown>,
  subject = 'inputs.json',
): Beit3ReferenceInputs {
  const image = tensors.image;
  if (!image) {
    throw new VlError('DATA_INVALID', "inputs has no 'image' tensor", {
      subject,
      hint: 'see fixtures/beit3-official/README.md for the inputs layout',
    });
  }
  return {
    image,
    image2: tensors.image2,
    language_tokens: tensors.language_tokens,
    padding_mask: tensors.padding_mask,
    vision_masked_position: tensors.vision_masked_position,
    masked_tokens: tensors.masked_tokens,
    language_masked_pos: tensors.language_masked_pos,
    masked_labels: tensors.masked_labels,
    generate: parseGenerate(other.generate, subject),
  };
}

function toTensor(t: DecodedTensor): tf.Tensor {
  return tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');
}

function need(t: DecodedTensor | undefined, name: string, task: string): tf.Tensor {
  if (!t) {
    throw new VlError('DATA_INVALID', `the ${task} outputs need the input '${name}'`, {
      subject: 'inputs.json',
      hint: 'see fixtures/beit3-official/README.md, "Outputs and the call behind each"',
    });
  }
  return toTensor(t);
}

type Sink = (name: string, t: tf.Tensor | null) => void;

function intScalar(n: number): ActualOutput {
  return { shape: [], data: Int32Array.of(n) };
}

function retrievalOutputs(model: Beit3ForRetrieval, inputs: Beit3ReferenceInputs, host: Sink, out: Record<string, ActualOutput>): void {
  const image = toTensor(inputs.image);
  const ids = need(inputs.language_tokens, 'language_tokens', 'retrieval');
  const pad = need(inputs.padding_mask, 'padding_mask', 'retrieval');
  const img = model.encodeImage(image);
  host('image_encoder_out', img.encoderOut);
  out.image_multiway_split_position = intScalar(-1);
  host('vision_head_out', img.headOut);
  host('vision_cls', img.cls);
  const txt = model.encodeText(ids, pad);
  host('text_encoder_out', txt.encoderOut);
  out.text_multiway_split_position = intScalar(0);
  host('language_head_out', txt.headOut);
  host('language_cls', txt.cls);
  host('similarity', model.similarity(img.cls, txt.cls));
  host('logit_scale', model.logitScale);
  const clip = model.clipLoss(img.cls, txt.cls);
  host('logits_per_image', clip.logitsPerImage);
  host('logits_per_text', clip.logitsPerText);
  host('clip_loss', model.forward(image, ids, pad).loss);
  const joint = model.beit3.forward({ textTokens: ids, pixels: image, textPaddingPosition: pad, outputHiddenStates: true });
  host('joint_encoder_out', joint.encoderOut);
  out.joint_multiway_split_position = intScalar(joint.multiwaySplitPosition);
  host('joint_layer0_input', joint.hiddenStates![0]!);
  host('joint_layer0_out', joint.hiddenStates![1]!);
  if (inputs.vision_masked_position) {
    host(
      'image_masked_encoder_out',
      model.beit3.forward({ pixels: image, visionMaskedPosition: toTensor(inputs.vision_masked_position) }).encoderOut,
    );
  }
}

function captioningOutputs(model: Beit3ForCaptioning, inputs: Beit3ReferenceInputs, host: Sink, out: Record<string, ActualOutput>): void {
  const image = toTensor(inputs.image);
  const masked = need(inputs.masked_tokens, 'masked_tokens', 'captioning');
  const pad = need(inputs.padding_mask, 'padding_mask', 'captioning');
  const pos = need(inputs.language_masked_pos, 'language_masked_pos', 'captioning');
  const tokens = need(inputs.language_tokens, 'language_tokens', 'captioning');
  const res = captioningTrainBatch(
    model,
    { pixels: image, textIds: masked, paddingMask: pad, languageMaskedPos: pos, languageTokens: tokens },
    { step: 0 },
  );
  host('mlm_logits', res.logits);
  host('encoder_out', res.encoderOut);
  out.multiway_split_position = intScalar(res.multiwaySplitPosition);
  host('captioning_loss', res.loss);
  out.captioning_acc = { shape: [], data: Float32Array.of(res.acc) };
}

/** The beam searches of `CaptioningHandler.eval_batch` (async: generation reads logits back step by step). */
async function generationOutputs(
  model: Beit3ForCaptioning,
  inputs: Beit3ReferenceInputs,
  out: Record<string, ActualOutput>,
): Promise<void> {
  const g = inputs.generate;
  if (!g) return;
  const image = toTensor(inputs.image);
  try {
    for (const numBeams of g.numBeams) {
      const res = await generateCaptions(model, image, {
        numBeams,
        maxLength: g.numMaxBpeTokens,
        lengthPenalty: g.lengthPenalty,
        recordStepLogits: numBeams === 1,
      });
      const b = res.decoded.length;
      const ids = new Int32Array(b * g.numMaxBpeTokens);
      res.decoded.forEach((row, i) => ids.set(row, i * g.numMaxBpeTokens));
      out[`beam${numBeams}_decoded`] = { shape: [b, g.numMaxBpeTokens], data: ids };
      out[`beam${numBeams}_score`] = { shape: [b], data: Float32Array.from(res.scores) };
      if (numBeams === 1 && res.stepLogits) {
        const v = model.dims.vocabSize;
        const logits = new Float32Array(res.steps * b * v);
        res.stepLogits.forEach((step, s) => logits.set(step, s * b * v));
        const active = Int32Array.from(res.stepActive.flat());
        // Compared only where the step's logits reached the result (README, "Checker").
        const where = new Uint8Array(logits.length);
        for (let i = 0; i < active.length; i++) if (active[i]) where.fill(1, i * v, (i + 1) * v);
        out.beam1_step_logits = { shape: [res.steps, b, v], data: logits, compareWhere: where };
        out.beam1_step_active = { shape: [res.steps, b], data: active };
      }
    }
  } finally {
    image.dispose();
  }
}

/**
 * Every output the official fixture of the model's task records, computed by this port in eval mode.
 * Host copies; no tensors outlive the call.
 */
export async function beit3ReferenceOutputs(model: Beit3Model, inputs: Beit3ReferenceInputs): Promise<Record<string, ActualOutput>> {
  const wasTraining = model.training;
  model.eval();
  const out: Record<string, ActualOutput> = {};
  const host: Sink = (name, t) => {
    if (t) out[name] = { shape: [...t.shape], data: t.dataSync().slice() };
  };
  try {
    tf.tidy(() => {
      switch (model.task) {
        case 'retrieval':
          retrievalOutputs(model, inputs, host, out);
          break;
        case 'captioning':
          captioningOutputs(model, inputs, host, out);
          break;
        case 'vqa': {
          const m = model as Beit3ForVisualQuestionAnswering;
          const res = m.forward(
            toTensor(inputs.image),
            need(inputs.language_tokens, 'language_tokens', 'vqa'),
            need(inputs.padding_mask, 'padding_mask', 'vqa'),
          );
          host('logits', res.logits);
          host('pooler_out', res.pooled);
          host('encoder_out', res.encoderOut);
          out.multiway_split_position = intScalar(res.multiwaySplitPosition);
          break;
        }
        case 'classification': {
          const res = (model as Beit3ForImageClassification).forward(toTensor(inputs.image));
          host('logits', res.logits);
          host('fc_norm_out', res.fcNormOut);
          host('encoder_out', res.encoderOut);
          out.multiway_split_position = intScalar(res.multiwaySplitPosition);
          break;
        }
        case 'nlvr2': {
          const res = (model as Beit3ForVisualReasoning).forward(
            toTensor(inputs.image),
            need(inputs.image2, 'image2', 'nlvr2'),
            need(inputs.language_tokens, 'language_tokens', 'nlvr2'),
            need(inputs.padding_mask, 'padding_mask', 'nlvr2'),
          );
          host('logits', res.logits);
          host('head_input', res.headInput);
          host('encoder_out', res.encoderOut);
          out.multiway_split_position = intScalar(res.multiwaySplitPosition);
          break;
        }
      }
    });
    if (model.task === 'captioning') await generationOutputs(model, inputs, out);
  } finally {
    model.train(wasTraining);
  }
  return out;
}

export interface VerifyBeit3Options {
  /** A BEiT-3 folder, or a weights file next to its config.json. */
  checkpoint: string;
  inputs: string;
  expected: string;
  /** Max abs diff per float output; default the expected file's `meta.tolerance_max_abs`, else 1e-4. */
  tol?: number;
}

/** Loads the checkpoint, computes the outputs, compares every output expected.json names. */
export async function verifyBeit3(options: VerifyBeit3Options): Promise<ParityReport & { notes: string[]; task: string }> {
  await ensureRuntime();
  const { tensors, other } = await readTensorJsonFile(options.inputs);
  const inputs = parseReferenceInputs(tensors, other, options.inputs);
  const expected = await readExpectedFile(options.expected);
  const metaTol = expected.meta.tolerance_max_abs;
  const tol = options.tol ?? (typeof metaTol === 'number' ? metaTol : 1e-4);
  const model = await loadBeit3(options.checkpoint);
  try {
    const actual = await beit3ReferenceOutputs(model, inputs);
    return { ...compareOutputs(expected.outputs, actual, tol), notes: model.loadNotes, task: model.task };
  } finally {
    model.dispose();
  }
}
