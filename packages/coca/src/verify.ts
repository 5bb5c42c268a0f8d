// Reference outputs of CoCa and CLIP for a fixture's inputs, each from the call that
// fixtures/coca-openclip/README.md names (`meta.calls`), and `verify`: compare them with expected.json.
// The parity tests, `vl verify coca|clip` and `coca verify` share this code.
import * as tf from '@tensorflow/tfjs-core';
import { type ActualOutput, compareOutputs, type DecodedTensor, ensureRuntime, type ParityReport, VlError } from '@vl/core';
import { readExpectedFile, readTensorJsonFile } from '@vl/core/node';
import { loadClip, loadCoca } from './checkpoint.js';
import { type CocaGenerateOptions, type GenerationType, generateCoca } from './generation.js';
import { contrastiveLogits, cocaLoss } from './loss.js';
import type { Clip, CoCa } from './model.js';

function need(tensors: Record<string, DecodedTensor>, name: string, subject: string): DecodedTensor {
  const t = tensors[name];
  if (!t) throw new VlError('DATA_INVALID', `inputs has no '${name}' tensor`, { subject, hint: 'see fixtures/coca-openclip/README.md' });
  return t;
}

function toTensor(t: DecodedTensor): tf.Tensor {
  return tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');
}

function rows(t: DecodedTensor): number[][] {
  const [b, l] = t.shape as [number, number];
  return Array.from({ length: b }, (_, i) => Array.from(t.data.subarray(i * l, (i + 1) * l)));
}

/** open_clip generate kwargs (snake_case, from inputs.json) → ours. */
export function generateOptionsFromJson(
  raw: Record<string, unknown>,
  prompts: Record<string, number[][]>,
  subject: string,
): CocaGenerateOptions {
  const o: CocaGenerateOptions = {};
  const num = (k: string) => {
    const v = raw[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number') throw new VlError('DATA_INVALID', `generate.${k} must be a number`, { subject });
    return v;
  };
  o.seqLen = num('seq_len');
  o.minSeqLen = num('min_seq_len');
  o.sotTokenId = num('sot_token_id');
  o.eosTokenId = num('eos_token_id');
  o.padTokenId = num('pad_token_id');
  o.topK = num('top_k');
  o.topP = num('top_p');
  o.temperature = num('temperature');
  o.numBeams = num('num_beams');
  o.numBeamGroups = num('num_beam_groups');
  o.repetitionPenalty = num('repetition_penalty');
  if (raw.generation_type !== undefined) o.generationType = raw.generation_type as GenerationType;
  if (typeof raw.text === 'string') {
    const p = prompts[raw.text];
    if (!p) throw new VlError('DATA_INVALID', `generate.text names '${raw.text}', which inputs.json lacks`, { subject });
    o.text = p;
  }
  for (const k of Object.keys(o) as (keyof CocaGenerateOptions)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/** Every CoCa output of the fixture (host copies), generation included. */
export async function cocaReferenceOutputs(
  model: CoCa,
  tensors: Record<string, DecodedTensor>,
  other: Record<string, unknown>,
  subject = 'inputs.json',
  options: { cache?: boolean } = {},
): Promise<Record<string, ActualOutput>> {
  const out: Record<string, ActualOutput> = {};
  const host = (name: string, t: tf.Tensor) => {
    out[name] = { shape: [...t.shape], data: t.dataSync().slice() };
  };
  const imageT = need(tensors, 'image', subject);
  const textT = need(tensors, 'text', subject);
  const lossKw = (other.loss ?? {}) as Record<string, number>;
  model.eval();
  const image = toTensor(imageT);
  try {
    tf.tidy(() => {
      const text = toTensor(textT) as tf.Tensor2D;
      const f = model.forward(image, text);
      host('image_features', f.imageFeatures);
      host('text_features', f.textFeatures);
      host('logits', f.logits);
      host('labels', f.labels as tf.Tensor);
      host('logit_scale', f.logitScale);
      const img = model.encodeImageTokens(image, { normalize: false });
      host('image_embs', img.tokens);
      host('image_features_unnormalized', img.latent);
      const trunk = model.visual.trunk(image);
      host('vision_trunk_tokens', trunk);
      host('attn_pool_out', model.visual.pool(trunk));
      const txt = model.encodeTextTokens(text, { normalize: false });
      host('text_features_unnormalized', txt.latent);
      host('text_token_embs', txt.tokens);
      const { logitsPerImage, logitsPerText } = contrastiveLogits(f.imageFeatures, f.textFeatures, f.logitScale);
      host('logits_per_image', logitsPerImage);
      host('logits_per_text', logitsPerText);
      const loss = cocaLoss(
        {
          imageFeatures: f.imageFeatures,
          textFeatures: f.textFeatures,
          logits: f.logits,
          labels: f.labels as tf.Tensor,
          logitScale: f.logitScale,
        },
        { captionLossWeight: lossKw.caption_loss_weight, clipLossWeight: lossKw.clip_loss_weight, padId: lossKw.pad_id },
      );
      host('contrastive_loss', loss.contrastive);
      host('caption_loss', loss.caption);
      host('total_loss', loss.total);
    });
    const prompts: Record<string, number[][]> = {};
    for (const [k, t] of Object.entries(tensors)) if (t.kind === 'int' && t.shape.length === 2) prompts[k] = rows(t);
    const gen = (other.generate ?? {}) as Record<string, Record<string, unknown>>;
    for (const [name, kwargs] of Object.entries(gen)) {
      const opts = generateOptionsFromJson(kwargs, prompts, `${subject}: generate.${name}`);
      const ids = await generateCoca(model, image, { ...opts, cache: options.cache ?? true });
      out[name] = { shape: [ids.length, (ids[0] as number[]).length], data: ids.flat() };
      if (name === 'greedy_sequences') {
        tf.tidy(() =>
          host('greedy_sequence_logits', model.forward(image, tf.tensor2d(ids, undefined, 'int32'), { outputLabels: false }).logits),
        );
      }
    }
  } finally {
    image.dispose();
  }
  return out;
}

/** Every CLIP output of the fixture. */
export function clipReferenceOutputs(
  model: Clip,
  tensors: Record<string, DecodedTensor>,
  subject = 'inputs.json',
): Record<string, ActualOutput> {
  const out: Record<string, ActualOutput> = {};
  const host = (name: string, t: tf.Tensor) => {
    out[name] = { shape: [...t.shape], data: t.dataSync().slice() };
  };
  model.eval();
  tf.tidy(() => {
    const image = toTensor(need(tensors, 'image', subject));
    const text = toTensor(need(tensors, 'text', subject)) as tf.Tensor2D;
    host('image_features', model.encodeImage(image));
    host('text_features', model.encodeText(text));
    const f = model.forward(image, text);
    host('image_features_normalized', f.imageFeatures);
    host('text_features_normalized', f.textFeatures);
    host('logit_scale', f.logitScale);
    const { logitsPerImage, logitsPerText } = contrastiveLogits(f.imageFeatures, f.textFeatures, f.logitScale);
    host('logits_per_image', logitsPerImage);
    host('logits_per_text', logitsPerText);
    host('vision_trunk_tokens', model.visual.trunk(image));
  });
  return out;
}

export interface VerifyOptions {
  /** A folder (config.json + weights) or a weights file next to its config.json. */
  checkpoint: string;
  inputs: string;
  expected: string;
  tol?: number;
  /** CoCa generation with the KV cache (default true). */
  cache?: boolean;
}

async function prepare(options: VerifyOptions) {
  await ensureRuntime();
  const inputs = await readTensorJsonFile(options.inputs);
  const expected = await readExpectedFile(options.expected);
  const metaTol = expected.meta.tolerance_max_abs;
  const tol = options.tol ?? (typeof metaTol === 'number' ? metaTol : 1e-4);
  return { inputs, expected, tol };
}

export async function verifyCoca(options: VerifyOptions): Promise<ParityReport & { notes: string[] }> {
  const { inputs, expected, tol } = await prepare(options);
  const model = await loadCoca(options.checkpoint);
  try {
    const actual = await cocaReferenceOutputs(model, inputs.tensors, inputs.other, options.inputs, { cache: options.cache });
    return { ...compareOutputs(expected.outputs, actual, tol), notes: model.loadNotes };
  } finally {
    model.dispose();
  }
}

export async function verifyClip(options: VerifyOptions): Promise<ParityReport & { notes: string[] }> {
  const { inputs, expected, tol } = await prepare(options);
  const model = await loadClip(options.checkpoint);
  try {
    return {
      ...compareOutputs(expected.outputs, clipReferenceOutputs(model, inputs.tensors, options.inputs), tol),
      notes: model.loadNotes,
    };
  } finally {
    model.dispose();
  }
}
