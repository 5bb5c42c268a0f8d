// Test helper: reads the tiny BLIP reference checkpoints in /fixtures (safetensors header and
// tensors with plain fs, JSON inputs/outputs) and builds BLIP-style module trees from core pieces.
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { BertLMPredictionHead, ProjectionHead } from '../heads.js';
import { TextTransformer, type TextTransformerConfig } from '../text-transformer.js';
import { VisionTransformer, type VisionTransformerNames } from '../vision-transformer.js';
import { Container } from '../../blocks/path-module.js';
import { Linear } from '../../nn/layers.js';
import { Module, type StateValue } from '../../nn/module.js';
import { Rng } from '../../runtime/rng.js';
import { camelizeKeys } from '../../io/config-case.js';

// HF BlipVisionModel's names (the model package's BLIP_VISION_NAMES; core cannot import @vl/blip).
const BLIP_VISION_NAMES: VisionTransformerNames = {
  classEmbedding: 'embeddings.class_embedding',
  positionEmbedding: 'embeddings.position_embedding',
  patchEmbedding: 'embeddings.patch_embedding',
  layers: 'encoder.layers',
  preNorm: 'pre_layrnorm',
  postNorm: 'post_layernorm',
  layer: {
    norm1: 'layer_norm1',
    attn: 'self_attn',
    norm2: 'layer_norm2',
    attention: { qkv: 'qkv', out: 'projection' },
  },
};

export const FIXTURES = new URL('../../../../../fixtures/blip-hf/', import.meta.url);

export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The 8-byte little-endian header length, then the JSON header, then the data. */
export function readSafetensors(path: URL): { header: Map<string, SafetensorsEntry>; tensors: Map<string, StateValue> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const json = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, SafetensorsEntry>;
  const header = new Map(Object.entries(json).filter(([k]) => k !== '__metadata__'));
  const tensors = new Map<string, StateValue>();
  for (const [key, e] of header) {
    const bytes = buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    const copy = new Uint8Array(bytes).buffer; // aligned copy
    if (e.dtype === 'F32') tensors.set(key, { shape: e.shape, dtype: 'float32', data: new Float32Array(copy) });
    else if (e.dtype === 'I64')
      tensors.set(key, { shape: e.shape, dtype: 'int32', data: Int32Array.from(new BigInt64Array(copy), Number) });
    else throw new Error(`unexpected dtype ${e.dtype} for ${key}`);
  }
  return { header, tensors };
}

interface JsonTensor {
  dtype: string;
  shape: number[];
  data: unknown;
}

export function readJson(path: URL): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

export function jsonTensor(t: unknown): tf.Tensor {
  const { dtype, shape, data } = t as JsonTensor;
  const flat = (data as unknown[]).flat(Infinity) as number[];
  return tf.tensor(flat, shape, dtype === 'int64' ? 'int32' : 'float32');
}

interface BlipConfigJson {
  visionConfig: {
    hiddenSize: number;
    imageSize: number;
    patchSize: number;
    numHiddenLayers: number;
    numAttentionHeads: number;
    intermediateSize: number;
    layerNormEps: number;
  };
  textConfig: TextTransformerConfig;
  imageTextHiddenSize: number;
}

export function blipConfig(dir: string): BlipConfigJson {
  return camelizeKeys<BlipConfigJson>(readJson(new URL(`${dir}/config.json`, FIXTURES)));
}

export function blipVision(cfg: BlipConfigJson['visionConfig'], rng: Rng): VisionTransformer {
  return new VisionTransformer(
    {
      imageSize: cfg.imageSize,
      patchSize: cfg.patchSize,
      hiddenSize: cfg.hiddenSize,
      numLayers: cfg.numHiddenLayers,
      numHeads: cfg.numAttentionHeads,
      intermediateSize: cfg.intermediateSize,
      layerNormEps: cfg.layerNormEps,
      pooler: 'clsNorm',
      names: BLIP_VISION_NAMES,
    },
    rng,
  );
}

/** HF BlipForConditionalGeneration's tree: vision_model, text_decoder.{bert, cls.predictions}. */
export class TinyBlipCaptioner extends Module {
  readonly vision: VisionTransformer;
  readonly bert: TextTransformer;
  readonly lmHead: BertLMPredictionHead;

  constructor(config: BlipConfigJson, rng = new Rng(0)) {
    super();
    this.vision = this.registerModule('vision_model', blipVision(config.visionConfig, rng));
    const decoder = this.registerModule('text_decoder', new Container());
    this.bert = decoder.registerModule('bert', new TextTransformer(config.textConfig, rng, { causal: true, crossAttentionFrom: 0 }));
    const cls = decoder.registerModule('cls', new Container());
    this.lmHead = cls.registerModule('predictions', new BertLMPredictionHead(config.textConfig, rng));
  }
}

/** HF BlipForImageTextRetrieval's tree: vision_model, text_encoder, vision_proj, text_proj, itm_head. */
export class TinyBlipRetrieval extends Module {
  readonly vision: VisionTransformer;
  readonly text: TextTransformer;
  readonly visionProj: ProjectionHead;
  readonly textProj: ProjectionHead;
  readonly itmHead: Linear;

  constructor(config: BlipConfigJson, rng = new Rng(0)) {
    super();
    const d = config.textConfig.hiddenSize;
    const e = config.imageTextHiddenSize;
    this.vision = this.registerModule('vision_model', blipVision(config.visionConfig, rng));
    // Bidirectional, cross-attention in every layer, no pooler (add_pooling_layer=False).
    this.text = this.registerModule('text_encoder', new TextTransformer(config.textConfig, rng, { crossAttentionFrom: 0 }));
    this.visionProj = this.registerModule('vision_proj', new ProjectionHead(config.visionConfig.hiddenSize, e, rng, { normalize: true }));
    this.textProj = this.registerModule('text_proj', new ProjectionHead(d, e, rng, { normalize: true }));
    this.itmHead = this.registerModule('itm_head', new Linear(d, 2, rng));
  }
}
