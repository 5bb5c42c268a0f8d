// BLIP models under Hugging Face's key names (transformers v4.30 `modeling_blip.py`,
// `modeling_blip_text.py`): the ViT image encoder, the BERT text encoder (unimodal for ITC,
// image-grounded with cross-attention for ITM), the causal image-grounded decoder for captioning,
// and the two classes users load: BlipForConditionalGeneration and BlipForImageTextRetrieval.
import * as tf from '@tensorflow/tfjs-core';
import {
  BertLMPredictionHead,
  type BertTokenizer,
  Container,
  ensureRuntime,
  firstToken,
  generate,
  type GenerateOptions,
  type GenerateOutput,
  l2Normalize,
  Linear,
  Module,
  reserveWasmHeapFor,
  Rng,
  TextTransformer,
  type TextTransformerConfig,
  VisionTransformer,
  type VisionTransformerOutput,
  weightInitSkipped,
  withoutWeightInit,
} from '@vl/core';
import { BLIP_VISION_NAMES } from './vision-names.js';
import type { BlipConfig, BlipTextConfig, BlipVisionConfig } from './config.js';
import { applyBlipCheckpoint, type BlipCheckpointReport, readBlipCheckpoint, saveBlipFolder } from './checkpoint.js';
import { inferenceConfig } from './official-config.js';
import type { BlipTarget } from './official-keys.js';
import { textDecoderStep } from './decoder-step.js';
import { checkTokenizerIds, type ImageInput, loadTokenizerFrom, pixelValuesFrom } from './processor.js';

export interface FromPretrainedOptions {
  /** Use this tokenizer instead of the folder's (null: none). */
  tokenizer?: BertTokenizer | null;
}

/**
 * Reads the checkpoint (either key layout), builds `make(config)`, loads the weights strictly, switches to eval
 * mode, attaches the tokenizer and the load report.
 */
async function loadPretrained<
  M extends Module & { tokenizer: BertTokenizer | null; tokenizerDir: string | null; checkpointReport: BlipCheckpointReport | null },
>(dir: string, target: BlipTarget, make: (config: BlipConfig) => M, options: FromPretrainedOptions): Promise<M> {
  await ensureRuntime();
  // Loaded right below: float32 data goes from the file straight into the model's memory (see core's readCheckpoint).
  const checkpoint = await readBlipCheckpoint(dir, target, { deferData: true });
  // Grow the wasm heap once for the whole model (not tensor by tensor, each growth a full GC); the
  // build must follow in the same synchronous stretch so a concurrent load cannot take the space.
  reserveWasmHeapFor(checkpoint.tensors);
  // Every parameter is overwritten by the strict load below: build without drawing random weights.
  const model = withoutWeightInit(() => make(inferenceConfig(checkpoint.config)));
  try {
    applyBlipCheckpoint(model, checkpoint);
    model.checkpointReport = checkpoint.report;
    const text = checkpoint.config.textConfig;
    if (options.tokenizer !== undefined) {
      model.tokenizer = options.tokenizer;
      if (model.tokenizer)
        checkTokenizerIds(model.tokenizer, text, { tokenizer: 'the tokenizer option', config: checkpoint.report.config });
    } else {
      model.tokenizer = await loadTokenizerFrom(checkpoint.folder, { ids: text, configFile: checkpoint.report.config });
      if (model.tokenizer) model.tokenizerDir = checkpoint.folder;
    }
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model.eval();
}

/** Heap bytes a model holding `tensors` needs: 4 per element, plus a margin for the allocator's chunk headers. */
/** HF `BlipVisionModel`: embeddings, encoder.layers.N, post_layernorm (applied twice for the pooler). */
export function blipVisionModel(cfg: BlipVisionConfig, rng: Rng): VisionTransformer {
  return new VisionTransformer(
    {
      imageSize: cfg.imageSize,
      patchSize: cfg.patchSize,
      numChannels: cfg.numChannels,
      hiddenSize: cfg.hiddenSize,
      numLayers: cfg.numHiddenLayers,
      numHeads: cfg.numAttentionHeads,
      intermediateSize: cfg.intermediateSize,
      layerNormEps: cfg.layerNormEps,
      attentionDropout: cfg.attentionDropout,
      pooler: 'clsNorm',
      names: BLIP_VISION_NAMES,
    },
    rng,
  );
}

/** The fields of textConfig the core text transformer reads (BLIP has no token types). */
export function textTransformerConfig(cfg: BlipTextConfig): TextTransformerConfig {
  return {
    vocabSize: cfg.vocabSize,
    hiddenSize: cfg.hiddenSize,
    maxPositionEmbeddings: cfg.maxPositionEmbeddings,
    typeVocabSize: 0,
    layerNormEps: cfg.layerNormEps,
    hiddenDropoutProb: cfg.hiddenDropoutProb,
    attentionProbsDropoutProb: cfg.attentionProbsDropoutProb,
    numHiddenLayers: cfg.numHiddenLayers,
    numAttentionHeads: cfg.numAttentionHeads,
    intermediateSize: cfg.intermediateSize,
    hiddenAct: cfg.hiddenAct,
    encoderHiddenSize: cfg.encoderHiddenSize,
  };
}

/** HF `BlipTextModel` without a pooler: bidirectional (encoder) or causal (decoder), cross-attention in every layer. */
export function blipTextModel(cfg: BlipTextConfig, rng: Rng, options: { causal: boolean }): TextTransformer {
  return new TextTransformer(textTransformerConfig(cfg), rng, { causal: options.causal, crossAttentionFrom: 0 });
}

/** HF `BlipTextLMHeadModel` (`text_decoder`): `bert` (causal) + `cls.predictions` (tied bias). */
/** The LM head under BERT's names (`cls.predictions.*`): the captioning decoder's and the pretraining decoder's. */
export function registerLmHead(owner: Module, cfg: BlipTextConfig, rng: Rng): BertLMPredictionHead {
  const head = new BertLMPredictionHead(
    { hiddenSize: cfg.hiddenSize, vocabSize: cfg.vocabSize, hiddenAct: cfg.hiddenAct, layerNormEps: cfg.layerNormEps },
    rng,
  );
  return owner.registerModule('cls', new Container()).registerModule('predictions', head);
}

export class BlipTextLMHeadModel extends Module {
  readonly bert: TextTransformer;
  readonly predictions: BertLMPredictionHead;

  constructor(cfg: BlipTextConfig, rng: Rng) {
    super();
    this.bert = this.registerModule('bert', blipTextModel(cfg, rng, { causal: true }));
    this.predictions = registerLmHead(this, cfg, rng);
  }

  /** Teacher-forced logits [B, T, V]. */
  forward(inputs: { inputIds: tf.Tensor; attentionMask?: tf.Tensor | null; encoderHiddenStates: tf.Tensor; rng?: Rng }): tf.Tensor {
    return tf.tidy(() => {
      const h = this.bert.forward({
        inputIds: inputs.inputIds,
        attentionMask: inputs.attentionMask,
        encoderHiddenStates: inputs.encoderHiddenStates,
        rng: inputs.rng,
      });
      return this.predictions.forward(h.lastHiddenState);
    });
  }
}

/** Options of `generate` as HF's BlipForConditionalGeneration.generate takes them (camelCase). */
export interface BlipGenerateOptions extends Omit<GenerateOptions, 'inputIds' | 'eosTokenId' | 'padTokenId'> {
  /**
   * Prompt ids as the processor makes them (`[CLS] a picture of [SEP]`): column 0 becomes [DEC]
   * (bos) and the last column is dropped, as HF does. Absent: every row starts from bos alone.
   */
  inputIds?: tf.Tensor2D | readonly (readonly number[])[];
}

export interface ConditionalGenerationOutput {
  /** [B, 1 + N, D] vision last hidden state. */
  imageEmbeds: tf.Tensor;
  /** [B, T, V] teacher-forced next-token logits. */
  decoderLogits: tf.Tensor;
}

/** Random initialisation unless loaded: a seeded generator, so two fresh models are identical. */
function initRng(rng?: Rng): Rng {
  return rng ?? new Rng(0);
}

/** The std core's layers initialise with (BERT's 0.02). */
const CORE_INIT_STD = 0.02;

/**
 * HF `BlipPreTrainedModel._init_weights`: every weight matrix, embedding and patch kernel (rank ≥ 2)
 * ~ N(0, initializer_range); biases 0 and LayerNorm 1 as built. Core already draws N(0, 0.02), so this
 * only runs for another range — the tiny preset's, whose width-32 layers would otherwise shrink the
 * signal ~10× per linear map and start every caption at the same [CLS] feature.
 */
export function initBlipWeights(module: Module, std: number, rng: Rng): void {
  if (std === CORE_INIT_STD || weightInitSkipped()) return;
  for (const [, p] of module.namedParameters()) {
    if (p.rank < 2) continue;
    const data = new Float32Array(p.size);
    for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
    tf.tidy(() => p.assign(tf.tensor(data, p.shape, 'float32')));
  }
}

/** HF `BlipForConditionalGeneration`: captioning (with an optional text prompt). */
export class BlipForConditionalGeneration extends Module {
  readonly config: BlipConfig;
  readonly vision_model: VisionTransformer;
  readonly text_decoder: BlipTextLMHeadModel;
  /** Set by `fromPretrained` when the folder holds vocab.txt / tokenizer.json, or by the caller. */
  tokenizer: BertTokenizer | null = null;
  /** Where the tokenizer files are; `savePretrained` copies them. */
  tokenizerDir: string | null = null;
  /** Set by `fromPretrained`: the layout read and every key set aside or filled, with the reason. */
  checkpointReport: BlipCheckpointReport | null = null;

  /**
   * Loads a checkpoint folder (config.json + weights [+ tokenizer]) or weights file: Hugging Face's
   * `BlipForConditionalGeneration`, or Salesforce's original BLIP_Decoder or BLIP_Pretrain (`visual_encoder.*`,
   * `text_decoder.*`; the released `.pth` files as they are).
   */
  static async fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<BlipForConditionalGeneration> {
    return loadPretrained(dir, 'BlipForConditionalGeneration', (c) => new BlipForConditionalGeneration(c), options);
  }

  /** Writes the same layout back (tied decoder bias omitted, position ids as I64). */
  async savePretrained(dir: string): Promise<void> {
    await saveBlipFolder(this, this.config, dir, 'BlipForConditionalGeneration', this.tokenizerDir);
  }

  constructor(config: BlipConfig, rng?: Rng) {
    super();
    const r = initRng(rng);
    this.config = config;
    this.vision_model = this.registerModule('vision_model', blipVisionModel(config.visionConfig, r));
    this.text_decoder = this.registerModule('text_decoder', new BlipTextLMHeadModel(config.textConfig, r));
    initBlipWeights(this, config.initializerRange, r);
  }

  /** Vision tower: lastHiddenState (= image embeds) and poolerOutput. */
  visionForward(pixelValues: tf.Tensor, rng?: Rng): VisionTransformerOutput {
    return this.vision_model.forward(pixelValues, { rng });
  }

  /** HF `forward(pixel_values, input_ids, attention_mask)`: image embeddings and teacher-forced logits. */
  forward(inputs: {
    pixelValues: tf.Tensor;
    inputIds: tf.Tensor;
    attentionMask?: tf.Tensor | null;
    rng?: Rng;
  }): ConditionalGenerationOutput {
    return tf.tidy(() => {
      const image = this.vision_model.forward(inputs.pixelValues, { rng: inputs.rng }).lastHiddenState;
      const logits = this.text_decoder.forward({
        inputIds: inputs.inputIds,
        attentionMask: inputs.attentionMask,
        encoderHiddenStates: image,
        rng: inputs.rng,
      });
      return { imageEmbeds: image, decoderLogits: logits };
    });
  }

  /** HF `generate(pixel_values, input_ids?)`: stops on [SEP], pads with [PAD]; returns ids with the prompt. */
  async generate(pixelValues: tf.Tensor, options: BlipGenerateOptions = {}): Promise<GenerateOutput> {
    const t = this.config.textConfig;
    const b = pixelValues.shape[0] as number;
    const prompts = await promptRows(options.inputIds, b, t.bosTokenId);
    const image = tf.tidy(() => this.vision_model.forward(pixelValues).lastHiddenState);
    try {
      const { inputIds: _ignored, ...rest } = options;
      return await generate(textDecoderStep(this.text_decoder.bert, this.text_decoder.predictions, image), {
        maxLength: t.maxLength ?? 20,
        ...rest,
        inputIds: prompts,
        eosTokenId: t.sepTokenId,
        padTokenId: t.padTokenId,
      });
    } finally {
      image.dispose();
    }
  }

  /**
   * Captions images (paths, encoded bytes, or pixel tensors [3,H,W] / [B,3,H,W] already
   * normalised). With a prompt, the caption continues it and the prompt is cut from the text, as
   * BLIP does. Needs a tokenizer (from the checkpoint folder, or set `model.tokenizer`).
   */
  async caption(images: ImageInput | readonly ImageInput[], options: CaptionOptions = {}): Promise<string[]> {
    const tok = requireTokenizer(this.tokenizer, 'caption');
    const { prompt = '', ...gen } = options;
    const pixels = await pixelValuesFrom(images, this.config.visionConfig.imageSize);
    try {
      const b = pixels.shape[0] as number;
      let inputIds: number[][] | undefined;
      if (prompt) {
        const ids = tok.encode(prompt).ids; // [CLS] prompt [SEP]; generate swaps in bos and drops [SEP]
        inputIds = Array.from({ length: b }, () => ids);
      }
      const out = await this.generate(pixels, { ...gen, inputIds });
      const promptText = prompt ? tok.decode(tok.encode(prompt).ids) : '';
      return out.sequences.map((seq) => {
        const text = tok.decode(seq);
        return prompt && text.startsWith(promptText) ? text.slice(promptText.length).trim() : text.trim();
      });
    } finally {
      pixels.dispose();
    }
  }
}

export interface CaptionOptions extends Omit<BlipGenerateOptions, 'inputIds'> {
  /** Text the caption starts with (BLIP's 'a picture of '); cut from the returned text. */
  prompt?: string;
}

/** HF: input_ids[:, 0] = bos, then input_ids[:, :-1]; no prompt → [[bos]] per row. */
async function promptRows(inputIds: BlipGenerateOptions['inputIds'], batch: number, bos: number): Promise<number[][]> {
  if (inputIds === undefined) return Array.from({ length: batch }, () => [bos]);
  const rows = inputIds instanceof tf.Tensor ? ((await inputIds.array()) as number[][]) : inputIds.map((r) => Array.from(r));
  if (rows.length !== batch) throw new Error(`prompt has ${rows.length} rows for ${batch} images`);
  return rows.map((r) => {
    if (r.length < 2) throw new Error('a prompt row needs at least 2 tokens ([CLS] … [SEP]); the last one is dropped as HF does');
    const out = r.slice(0, -1);
    out[0] = bos;
    return out;
  });
}

export function requireTokenizer(tok: BertTokenizer | null, what: string): BertTokenizer {
  if (!tok) {
    throw new Error(`${what} needs a tokenizer: put vocab.txt or tokenizer.json in the checkpoint folder, or set model.tokenizer`);
  }
  return tok;
}

export interface RetrievalItmOutput {
  /** [B, 2] ITM logits (index 1 = match). */
  itmScore: tf.Tensor;
  /** [B, 1 + N, D] */
  imageEmbeds: tf.Tensor;
  /** [B, T, D] text encoder output with cross-attention to the image. */
  questionEmbeds: tf.Tensor;
}

export interface RetrievalItcOutput {
  /** [B_img, B_txt] cosine similarity of the normalised projections. */
  itmScore: tf.Tensor;
  imageEmbeds: tf.Tensor;
  /** [B, T, D] text-only encoder output. */
  questionEmbeds: tf.Tensor;
  /** [B, E] normalised vision_proj(image_embeds[:, 0]). */
  imageFeat: tf.Tensor;
  /** [B, E] normalised text_proj(question_embeds[:, 0]). */
  textFeat: tf.Tensor;
}

export interface MatchResult {
  /** [image][text] probability that the pair matches (softmax of the ITM head). */
  itm: number[][];
  /** [image][text] cosine similarity of the ITC embeddings. */
  itc: number[][];
}

/** HF `BlipForImageTextRetrieval`: ITM head on the image-grounded encoder, ITC projections. */
export class BlipForImageTextRetrieval extends Module {
  readonly config: BlipConfig;
  readonly vision_model: VisionTransformer;
  readonly text_encoder: TextTransformer;
  readonly vision_proj: Linear;
  readonly text_proj: Linear;
  readonly itm_head: Linear;
  tokenizer: BertTokenizer | null = null;
  tokenizerDir: string | null = null;
  checkpointReport: BlipCheckpointReport | null = null;

  /**
   * Loads Hugging Face's `BlipForImageTextRetrieval`, or Salesforce's original BLIP_Retrieval or BLIP_Pretrain
   * (online weights; the momentum twins, queues and temperature are listed as unused in `checkpointReport`).
   */
  static async fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<BlipForImageTextRetrieval> {
    return loadPretrained(dir, 'BlipForImageTextRetrieval', (c) => new BlipForImageTextRetrieval(c), options);
  }

  async savePretrained(dir: string): Promise<void> {
    await saveBlipFolder(this, this.config, dir, 'BlipForImageTextRetrieval', this.tokenizerDir);
  }

  constructor(config: BlipConfig, rng?: Rng) {
    super();
    const r = initRng(rng);
    this.config = config;
    const v = config.visionConfig;
    const t = config.textConfig;
    this.vision_model = this.registerModule('vision_model', blipVisionModel(v, r));
    this.text_encoder = this.registerModule('text_encoder', blipTextModel(t, r, { causal: false }));
    this.vision_proj = this.registerModule('vision_proj', new Linear(v.hiddenSize, config.imageTextHiddenSize, r));
    this.text_proj = this.registerModule('text_proj', new Linear(t.hiddenSize, config.imageTextHiddenSize, r));
    this.itm_head = this.registerModule('itm_head', new Linear(t.hiddenSize, 2, r));
    initBlipWeights(this, config.initializerRange, r);
  }

  visionForward(pixelValues: tf.Tensor, rng?: Rng): VisionTransformerOutput {
    return this.vision_model.forward(pixelValues, { rng });
  }

  /** HF forward with `use_itm_head=True`: pairs row b of the images with row b of the texts. */
  forwardItm(inputs: {
    pixelValues?: tf.Tensor;
    imageEmbeds?: tf.Tensor;
    inputIds: tf.Tensor;
    attentionMask?: tf.Tensor | null;
    /**
     * Text row i is matched with image `imageRows[i]` (default: row i). Several captions of one image
     * then share its cross-attention keys/values, computed once instead of once per caption.
     */
    imageRows?: readonly number[] | null;
  }): RetrievalItmOutput {
    return tf.tidy(() => {
      const image = inputs.imageEmbeds ?? this.vision_model.forward(inputs.pixelValues as tf.Tensor).lastHiddenState;
      const q = this.text_encoder.forward({
        inputIds: inputs.inputIds,
        attentionMask: inputs.attentionMask,
        encoderHiddenStates: image,
        encoderRows: inputs.imageRows,
      }).lastHiddenState;
      return { itmScore: this.itm_head.forward(firstToken(q)), imageEmbeds: image, questionEmbeds: q };
    });
  }

  /** HF forward with `use_itm_head=False`: image × text cosine similarity of the ITC features. */
  forwardItc(inputs: { pixelValues: tf.Tensor; inputIds: tf.Tensor; attentionMask?: tf.Tensor | null }): RetrievalItcOutput {
    return tf.tidy(() => {
      const image = this.vision_model.forward(inputs.pixelValues).lastHiddenState;
      const q = this.text_encoder.forward({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask }).lastHiddenState;
      const imageFeat = l2Normalize(this.vision_proj.forward(firstToken(image)));
      const textFeat = l2Normalize(this.text_proj.forward(firstToken(q)));
      return { itmScore: tf.matMul(imageFeat, textFeat, false, true), imageEmbeds: image, questionEmbeds: q, imageFeat, textFeat };
    });
  }

  /** Unit-length image embeddings for retrieval, [B, E]. */
  getImageFeatures(pixelValues: tf.Tensor): tf.Tensor2D {
    return tf.tidy(
      () => l2Normalize(this.vision_proj.forward(firstToken(this.vision_model.forward(pixelValues).lastHiddenState))) as tf.Tensor2D,
    );
  }

  /** Unit-length text embeddings for retrieval, [B, E] (text-only encoder, [CLS] row). */
  getTextFeatures(inputIds: tf.Tensor, attentionMask?: tf.Tensor | null): tf.Tensor2D {
    return tf.tidy(
      () =>
        l2Normalize(
          this.text_proj.forward(firstToken(this.text_encoder.forward({ inputIds, attentionMask }).lastHiddenState)),
        ) as tf.Tensor2D,
    );
  }

  /**
   * Scores every image against every text: ITM match probability and ITC cosine similarity.
   * The ITM input starts with [ENC] when the tokenizer has it (Salesforce BLIP's image-grounded
   * encoder); `itmFirstToken: '[CLS]'` reproduces HF's processor output instead.
   */
  async match(
    images: ImageInput | readonly ImageInput[],
    texts: readonly string[],
    options: { itmFirstToken?: string; maxLength?: number } = {},
  ): Promise<MatchResult> {
    const tok = requireTokenizer(this.tokenizer, 'match');
    const pixels = await pixelValuesFrom(images, this.config.visionConfig.imageSize);
    const maxLength = options.maxLength ?? 35;
    const first = options.itmFirstToken ?? (tok.tokenToId('[ENC]') !== undefined ? '[ENC]' : '[CLS]');
    const itcEnc = tok.encodeBatch(texts, { maxLength });
    const itmEnc = tok.encodeBatch(texts, { maxLength, firstToken: first });
    const nI = pixels.shape[0] as number;
    const nT = texts.length;
    try {
      const [itmProbs, itcSim] = tf.tidy(() => {
        const image = this.vision_model.forward(pixels).lastHiddenState; // [I, S, D]
        const ids = tf.tensor2d(itcEnc.inputIds, [nT, itcEnc.seqLength], 'int32');
        const mask = tf.tensor2d(itcEnc.attentionMask, [nT, itcEnc.seqLength], 'int32');
        const textFeat = this.getTextFeatures(ids, mask);
        const imageFeat = l2Normalize(this.vision_proj.forward(firstToken(image)));
        const sim = tf.matMul(imageFeat, textFeat, false, true); // [I, T]
        // Every (image, text) pair through the image-grounded encoder: image i's keys/values shared by its T texts.
        const imageRows = Array.from({ length: nI * nT }, (_, r) => Math.floor(r / nT));
        const itmIds = tf.tile(tf.tensor2d(itmEnc.inputIds, [nT, itmEnc.seqLength], 'int32'), [nI, 1]);
        const itmMask = tf.tile(tf.tensor2d(itmEnc.attentionMask, [nT, itmEnc.seqLength], 'int32'), [nI, 1]);
        const logits = this.forwardItm({ imageEmbeds: image, imageRows, inputIds: itmIds, attentionMask: itmMask }).itmScore; // [I·T, 2]
        const probs = tf.reshape(tf.slice(tf.softmax(logits, -1), [0, 1], [nI * nT, 1]), [nI, nT]);
        return [probs, sim];
      });
      const itm = (await itmProbs.array()) as number[][];
      const itc = (await itcSim.array()) as number[][];
      itmProbs.dispose();
      itcSim.dispose();
      return { itm, itc };
    } finally {
      pixels.dispose();
    }
  }
}
