// CoCa and CLIP as open_clip v3.3.0 builds them (`coca_model.CoCa`, `model.CLIP`), under open_clip's
// state-dict names. CoCa = `text.*` (unimodal causal tower + CLS) + `visual.*` (ViT + attentional pooler)
// + `text_decoder.*` (captioning decoder) + `logit_scale`; CLIP = the same ViT without the pooler, the
// text tower at the top level (OpenAI's names) and `logit_scale`. CoCa's forward computes the contrastive
// features and the captioning logits in one pass, as the paper trains it.
import * as tf from '@tensorflow/tfjs-core';
import { type Activation, l2Normalize, type Module, type ModuleList, PathModule, Rng, VlError } from '@vl/core';
import { isCocaConfig, type OpenClipConfig } from './config.js';
import { type Placer, TextTower, MultimodalDecoder, VisionTower } from './towers.js';

/** log(1/0.07), open_clip's `init_logit_scale`. */
export const INIT_LOGIT_SCALE = Math.log(1 / 0.07);
/** open_clip_train clamps the learned log-scale to [0, log 100] after every step. */
export const MAX_LOGIT_SCALE = Math.log(100);

export interface BuildOptions {
  /** Init seed (default 0). */
  seed?: number;
}

function activationOf(config: OpenClipConfig): Activation {
  return config.modelCfg.quickGelu ? 'quick_gelu' : 'gelu';
}

/** Shared by CoCa and CLIP: the placer the text tower uses, the logit scale, eval helpers. */
abstract class OpenClipModel extends PathModule {
  abstract readonly visual: VisionTower;
  abstract readonly text: TextTower;
  abstract readonly logitScale: tf.Variable;

  protected placer(): Placer {
    return {
      param: (path, value) => this.placeParameter(path, value),
      module: <T extends Module>(path: string, m: T) => this.placeModule(path, m),
      list: <T extends Module>(path: string, ms: readonly T[]): ModuleList<T> => this.placeModuleList(path, ms),
    };
  }

  /** exp(logit_scale) as a scalar tensor. */
  logitScaleExp(): tf.Scalar {
    return tf.tidy(() => tf.exp(this.logitScale) as tf.Scalar);
  }

  /** open_clip_train's `logit_scale.clamp_(0, log(100))`, run after each optimizer step. */
  clampLogitScale(): void {
    tf.tidy(() => this.logitScale.assign(tf.clipByValue(this.logitScale, 0, MAX_LOGIT_SCALE)));
  }

  /** Image features [B, E] (unit length when `normalize`). */
  encodeImage(pixels: tf.Tensor, options: { normalize?: boolean } = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const latent = this.visual.forward(pixels).latent;
      return ((options.normalize ?? this.normalizeByDefault) ? l2Normalize(latent) : latent) as tf.Tensor2D;
    });
  }

  /** Text features [B, E] (unit length when `normalize`). */
  encodeText(ids: tf.Tensor2D, options: { normalize?: boolean } = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const latent = this.text.forward(ids).latent;
      return ((options.normalize ?? this.normalizeByDefault) ? l2Normalize(latent) : latent) as tf.Tensor2D;
    });
  }

  /** CoCa's encode_* default to normalize=True, CLIP's to False (as open_clip). */
  protected abstract readonly normalizeByDefault: boolean;
}

export type CocaForwardOutput = {
  /** Normalised [B, E]. */
  imageFeatures: tf.Tensor2D;
  /** Normalised [B, E]. */
  textFeatures: tf.Tensor2D;
  /** [B, L − 1, V] with labels (teacher forcing), else [B, L, V]. */
  logits: tf.Tensor3D;
  /** text[:, 1:] [B, L − 1] int32; absent with outputLabels false. */
  labels?: tf.Tensor2D;
  /** exp(logit_scale). */
  logitScale: tf.Scalar;
};

/** open_clip `CoCa`. */
export class CoCa extends OpenClipModel {
  readonly config: OpenClipConfig;
  readonly text: TextTower;
  readonly visual: VisionTower;
  readonly text_decoder: MultimodalDecoder;
  readonly logitScale: tf.Variable;
  protected readonly normalizeByDefault = true;
  /** What loading skipped or adapted. */
  loadNotes: string[] = [];

  constructor(config: OpenClipConfig, options: BuildOptions = {}) {
    super();
    if (!isCocaConfig(config)) {
      throw new VlError('CONFIG_INVALID', 'this config has no multimodal_cfg: it describes a CLIP model, not CoCa', {
        subject: 'CoCa',
        hint: 'build it with Clip',
      });
    }
    this.config = config;
    const m = config.modelCfg;
    const rng = new Rng(options.seed ?? 0);
    const act = activationOf(config);
    this.text = TextTower.place(this.placer(), 'text.', m.textCfg, m.embedDim, act, rng);
    this.visual = this.registerModule('visual', new VisionTower(m.visionCfg, m.embedDim, act, rng));
    this.text_decoder = this.registerModule('text_decoder', new MultimodalDecoder(m.multimodalCfg!, act, rng));
    this.logitScale = this.placeParameter('logit_scale', tf.scalar(INIT_LOGIT_SCALE));
  }

  get padId(): number {
    return this.config.modelCfg.textCfg.padId;
  }

  get vocabSize(): number {
    return this.config.modelCfg.multimodalCfg!.vocabSize;
  }

  /** `_encode_image`: normalised (by default) latent [B, E] and the captioning tokens [B, Q − 1, E]. */
  encodeImageTokens(pixels: tf.Tensor, options: { normalize?: boolean; rng?: Rng } = {}): { latent: tf.Tensor2D; tokens: tf.Tensor3D } {
    return tf.tidy(() => {
      const { latent, tokens } = this.visual.forward(pixels, options.rng);
      return { latent: (options.normalize ?? true) ? (l2Normalize(latent) as tf.Tensor2D) : latent, tokens: tokens as tf.Tensor3D };
    });
  }

  /** `_encode_text`: normalised (by default) CLS latent [B, E] and the decoder's input tokens [B, L, D]. */
  encodeTextTokens(ids: tf.Tensor2D, options: { normalize?: boolean; rng?: Rng } = {}): { latent: tf.Tensor2D; tokens: tf.Tensor3D } {
    return tf.tidy(() => {
      const { latent, tokens } = this.text.forward(ids, options.rng);
      return { latent: (options.normalize ?? true) ? (l2Normalize(latent) as tf.Tensor2D) : latent, tokens: tokens as tf.Tensor3D };
    });
  }

  /**
   * `CoCa.forward(image, text)`: both towers, the decoder on text tokens [:, :-1] against labels
   * text[:, 1:] (outputLabels, the default), all in one pass. `image` may be replaced by precomputed
   * `imageLatent` + `imageEmbs` (generation encodes the image once).
   */
  forward(
    image: tf.Tensor | null,
    text: tf.Tensor2D,
    options: { outputLabels?: boolean; imageLatent?: tf.Tensor2D; imageEmbs?: tf.Tensor3D; rng?: Rng } = {},
  ): CocaForwardOutput {
    return tf.tidy(() => {
      let imageLatent = options.imageLatent;
      let imageEmbs = options.imageEmbs;
      if (!imageLatent || !imageEmbs) {
        if (!image)
          throw new VlError('INVALID_ARGUMENT', 'CoCa.forward needs an image or its precomputed latent and tokens', { subject: 'CoCa' });
        ({ latent: imageLatent, tokens: imageEmbs } = this.encodeImageTokens(image, { rng: options.rng }));
      }
      const ids = tf.cast(text, 'int32') as tf.Tensor2D;
      const { latent: textLatent, tokens } = this.encodeTextTokens(ids, { rng: options.rng });
      const outputLabels = options.outputLabels ?? true;
      const [b, l, d] = tokens.shape;
      const out: CocaForwardOutput = {
        imageFeatures: imageLatent,
        textFeatures: textLatent,
        logits: this.text_decoder.forward(imageEmbs, outputLabels ? tf.slice(tokens, [0, 0, 0], [b, l - 1, d]) : tokens, {
          rng: options.rng,
        }),
        logitScale: this.logitScaleExp(),
      };
      if (outputLabels) out.labels = tf.slice(ids, [0, 1], [b, l - 1]) as tf.Tensor2D;
      return out;
    });
  }
}

/** open_clip `CLIP` (OpenAI's layout: the text tower's tensors at the top level). */
export class Clip extends OpenClipModel {
  readonly config: OpenClipConfig;
  readonly visual: VisionTower;
  readonly text: TextTower;
  readonly logitScale: tf.Variable;
  protected readonly normalizeByDefault = false;
  loadNotes: string[] = [];

  constructor(config: OpenClipConfig, options: BuildOptions = {}) {
    super();
    if (isCocaConfig(config)) {
      throw new VlError('CONFIG_INVALID', 'this config has a multimodal_cfg: it describes a CoCa model, not CLIP', {
        subject: 'Clip',
        hint: 'build it with CoCa',
      });
    }
    const m = config.modelCfg;
    if (m.visionCfg.attentionalPool) {
      throw new VlError('CONFIG_INVALID', 'CLIP without an attentional pooler only (vision_cfg.attentional_pool is set)', {
        subject: 'Clip',
      });
    }
    if (m.textCfg.embedCls)
      throw new VlError('CONFIG_INVALID', 'CLIP text has no CLS embedding (text_cfg.embed_cls is set)', { subject: 'Clip' });
    this.config = config;
    const rng = new Rng(options.seed ?? 0);
    const act = activationOf(config);
    this.visual = this.registerModule('visual', new VisionTower(m.visionCfg, m.embedDim, act, rng));
    this.text = TextTower.place(this.placer(), '', m.textCfg, m.embedDim, act, rng);
    this.logitScale = this.placeParameter('logit_scale', tf.scalar(INIT_LOGIT_SCALE));
  }

  get contextLength(): number {
    return this.config.modelCfg.textCfg.contextLength;
  }

  /** `CLIP.forward`: normalised features and exp(logit_scale). */
  forward(image: tf.Tensor, text: tf.Tensor2D): { imageFeatures: tf.Tensor2D; textFeatures: tf.Tensor2D; logitScale: tf.Scalar } {
    return tf.tidy(() => ({
      imageFeatures: this.encodeImage(image, { normalize: true }),
      textFeatures: this.encodeText(text, { normalize: true }),
      logitScale: this.logitScaleExp(),
    }));
  }
}
