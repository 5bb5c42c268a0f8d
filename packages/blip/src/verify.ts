// `blip verify`: runs a checkpoint on inputs in the reference fixture format and compares every
// output that expected.json names with the call its `meta.calls` describes (max abs diff per
// output; token ids exact). The parity tests call `verifyCheckpoint` too, so they test this path.
// Fixtures of Hugging Face's classes are computed here; those of Salesforce's original classes
// (meta.model_class BLIP_Decoder / BLIP_Retrieval / BLIP_Pretrain) in verify-official.ts.
import * as tf from '@tensorflow/tfjs-core';
import { compareOutputs, type ActualOutput, type DecodedTensor, type ParityReport } from '@vl/core';
import { readExpectedFile, readTensorJsonFile } from '@vl/core/node';
import { readBlipConfig } from './checkpoint.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from './modeling.js';
import { verifyBlipGradients } from './verify-grads.js';
import type { OfficialBlipClass } from './official-keys.js';
import { officialClassOfMeta, verifyOfficial } from './verify-official.js';

export interface VerifyOptions {
  model: string;
  inputs: string;
  expected: string;
  /** Max abs diff allowed on float outputs (default 1e-4); ids must match exactly. */
  tol?: number;
  /**
   * Expected gradients: `grads.safetensors` of fixtures/blip-official's pretrain folder (verify-official.ts), or
   * of the Hugging Face fixtures (verify-grads.ts).
   */
  grads?: string;
}

export interface VerifyResult {
  /** The Hugging Face class of a `fixtures/blip-hf` fixture, or the original class of a `fixtures/blip-official` one. */
  modelClass: 'BlipForConditionalGeneration' | 'BlipForImageTextRetrieval' | OfficialBlipClass;
  report: ParityReport;
}

function toTensor(t: DecodedTensor | undefined, name: string): tf.Tensor {
  if (!t) throw new Error(`inputs.json has no '${name}'`);
  return tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');
}

async function host(t: tf.Tensor): Promise<ActualOutput> {
  return { shape: [...t.shape], data: await t.data() };
}

function ids(rows: number[][]): ActualOutput {
  return { shape: [rows.length, rows[0]?.length ?? 0], data: rows.flat() };
}

/** Which class the fixture is for: meta.model_class, else config.json's architectures. */
async function modelClassOf(
  meta: Record<string, unknown>,
  dir: string,
): Promise<'BlipForConditionalGeneration' | 'BlipForImageTextRetrieval'> {
  const fromMeta = typeof meta.model_class === 'string' ? meta.model_class : undefined;
  const arch = fromMeta ?? (await readBlipConfig(dir)).architectures?.[0];
  if (arch === 'BlipForConditionalGeneration' || arch === 'BlipForImageTextRetrieval') return arch;
  throw new Error(`cannot verify model class '${String(arch)}': expected BlipForConditionalGeneration or BlipForImageTextRetrieval`);
}

interface GenerateParams {
  maxLength?: number;
  numBeams: number;
}

function generateParams(other: Record<string, unknown>): GenerateParams {
  const g = (other.generate ?? {}) as Record<string, unknown>;
  return {
    maxLength: typeof g.max_length === 'number' ? g.max_length : undefined,
    numBeams: typeof g.num_beams === 'number' ? g.num_beams : 3,
  };
}

/** Captioning outputs, each from the call named in the fixture's meta.calls. */
async function captioningOutputs(
  model: BlipForConditionalGeneration,
  inputs: Record<string, DecodedTensor>,
  gen: GenerateParams,
  wanted: Set<string>,
): Promise<Record<string, ActualOutput>> {
  const out: Record<string, ActualOutput> = {};
  const pixels = toTensor(inputs.pixel_values, 'pixel_values');
  try {
    if (wanted.has('decoder_logits') || wanted.has('image_embeds')) {
      const inputIds = toTensor(inputs.input_ids, 'input_ids');
      const mask = inputs.attention_mask ? toTensor(inputs.attention_mask, 'attention_mask') : null;
      const r = model.forward({ pixelValues: pixels, inputIds, attentionMask: mask });
      out.decoder_logits = await host(r.decoderLogits);
      out.image_embeds = await host(r.imageEmbeds);
      tf.dispose([inputIds, r.decoderLogits, r.imageEmbeds]);
      mask?.dispose();
    }
    if (wanted.has('vision_pooler_output')) {
      const v = model.visionForward(pixels);
      out.vision_pooler_output = await host(v.poolerOutput);
      tf.dispose([v.lastHiddenState, v.poolerOutput]);
    }
    const maxLength = gen.maxLength;
    if (wanted.has('greedy_sequences') || wanted.has('greedy_scores')) {
      const g = await model.generate(pixels, { maxLength, outputScores: true });
      out.greedy_sequences = ids(g.sequences);
      const steps = g.stepScores ?? [];
      const rows = steps[0]?.length ?? 0;
      const vocab = steps[0]?.[0]?.length ?? 0;
      const flat = new Float32Array(steps.length * rows * vocab);
      steps.forEach((step, s) => step.forEach((row, r) => flat.set(row, (s * rows + r) * vocab)));
      out.greedy_scores = { shape: [steps.length, rows, vocab], data: flat };
    }
    if (wanted.has('beam_sequences') || wanted.has('beam_sequences_scores')) {
      const g = await model.generate(pixels, { maxLength, numBeams: gen.numBeams, outputScores: true });
      out.beam_sequences = ids(g.sequences);
      out.beam_sequences_scores = { shape: [g.scores?.length ?? 0], data: g.scores ?? [] };
    }
    if (wanted.has('prompted_greedy_sequences')) {
      const prompt = toTensor(inputs.prompt_input_ids, 'prompt_input_ids') as tf.Tensor2D;
      try {
        const g = await model.generate(pixels, { maxLength, inputIds: prompt });
        out.prompted_greedy_sequences = ids(g.sequences);
      } finally {
        prompt.dispose();
      }
    }
  } finally {
    pixels.dispose();
  }
  return out;
}

/** Retrieval outputs: the ITM call (use_itm_head=True) and the ITC call (use_itm_head=False). */
async function retrievalOutputs(
  model: BlipForImageTextRetrieval,
  inputs: Record<string, DecodedTensor>,
): Promise<Record<string, ActualOutput>> {
  const out: Record<string, ActualOutput> = {};
  const pixels = toTensor(inputs.pixel_values, 'pixel_values');
  const inputIds = toTensor(inputs.input_ids, 'input_ids');
  const mask = inputs.attention_mask ? toTensor(inputs.attention_mask, 'attention_mask') : null;
  try {
    const itm = model.forwardItm({ pixelValues: pixels, inputIds, attentionMask: mask });
    out.itm_logits = await host(itm.itmScore);
    out.image_embeds = await host(itm.imageEmbeds);
    out.itm_question_embeds = await host(itm.questionEmbeds);
    tf.dispose([itm.itmScore, itm.imageEmbeds, itm.questionEmbeds]);
    const itc = model.forwardItc({ pixelValues: pixels, inputIds, attentionMask: mask });
    out.itc_similarity = await host(itc.itmScore);
    out.itc_question_embeds = await host(itc.questionEmbeds);
    out.itc_image_feat = await host(itc.imageFeat);
    out.itc_text_feat = await host(itc.textFeat);
    tf.dispose([itc.itmScore, itc.imageEmbeds, itc.questionEmbeds, itc.imageFeat, itc.textFeat]);
    const v = model.visionForward(pixels);
    out.vision_pooler_output = await host(v.poolerOutput);
    tf.dispose([v.lastHiddenState, v.poolerOutput]);
  } finally {
    tf.dispose([pixels, inputIds]);
    mask?.dispose();
  }
  return out;
}

/** Loads the checkpoint, computes every expected output, compares. */
export async function verifyCheckpoint(options: VerifyOptions): Promise<VerifyResult> {
  const expected = await readExpectedFile(options.expected);
  const { tensors: inputs, other } = await readTensorJsonFile(options.inputs);
  const official = officialClassOfMeta(expected.meta);
  if (official) {
    return verifyOfficial({
      checkpoint: options.model,
      modelClass: official,
      inputs: { tensors: inputs, other },
      inputsPath: options.inputs,
      expected: expected.outputs,
      expectedPath: options.expected,
      tol: options.tol ?? 1e-4,
      grads: options.grads,
    });
  }
  const modelClass = await modelClassOf(expected.meta, options.model);
  const wanted = new Set(Object.keys(expected.outputs));
  let actual: Record<string, ActualOutput>;
  if (modelClass === 'BlipForConditionalGeneration') {
    const model = await BlipForConditionalGeneration.fromPretrained(options.model, { tokenizer: null });
    try {
      actual = await captioningOutputs(model, inputs, generateParams(other), wanted);
    } finally {
      model.dispose();
    }
  } else {
    const model = await BlipForImageTextRetrieval.fromPretrained(options.model, { tokenizer: null });
    try {
      actual = await retrievalOutputs(model, inputs);
    } finally {
      model.dispose();
    }
  }
  const report = compareOutputs(expected.outputs, actual, options.tol ?? 1e-4);
  if (options.grads === undefined) return { modelClass, report };
  // The Hugging Face fixtures' LM, or ITM and ITC, each back-propagated on its own (verify-grads.ts).
  const grads = await verifyBlipGradients({ model: options.model, inputs: options.inputs, grads: options.grads, tol: options.tol });
  return { modelClass, report: { checks: [...report.checks, ...grads.checks], passed: report.passed && grads.passed } };
}
