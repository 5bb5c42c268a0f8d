// A semantic teacher for the k-means visual tokenizer: the per-patch output tokens of a ViT vision tower
// (open_clip's `VisionTransformer` layout, as `vl train clip` saves it under `visual.*`), the stand-in for
// BEiT v2's CLIP teacher. Core holds the generic tower (patch embedding without bias, class token,
// positions, ln_pre, pre-LN blocks under open_clip's names, ln_post) so that a tokenizer folder, which embeds
// the tower's weights, loads without the package that trained the tower. Browser-safe: reading a CLIP
// folder from disk is in node/vit-teacher-file.ts.
import * as tf from '@tensorflow/tfjs-core';
import { PathModule } from '../blocks/path-module.js';
import { OPEN_CLIP_LAYER_NAMES, TransformerLayer } from '../blocks/transformer-layer.js';
import { PatchEmbedding } from '../encoders/vision-transformer.js';
import { VlError } from '../errors.js';
import { normal } from '../nn/init.js';
import { type Activation, LayerNorm } from '../nn/layers.js';
import type { ModuleList } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';
import type { PatchFeatureTeacher } from './kmeans-tokenizer.js';

/** The tower's shape and the pixel normalisations on both sides (camelCase; the JSON file stores it as is). */
export interface VitTeacherConfig {
  imageSize: number;
  patchSize: number;
  channels: number;
  width: number;
  layers: number;
  heads: number;
  mlpWidth: number;
  activation: Activation;
  layerNormEps: number;
  /** How the tower was trained to see pixels (CLIP: OpenAI's mean/std). */
  towerNorm: { mean: number[]; std: number[] };
  /** How the pixels handed to `features` are normalised (the model reading the tokens; BEiT-3: 0.5/0.5). */
  inputNorm: { mean: number[]; std: number[] };
}

/**
 * Teacher features = ln_post(blocks(ln_pre([CLS; patches] + positions)))[:, 1:] — open_clip's output
 * tokens of the tower (ln_post on every token, `final_ln_after_pool` off, the default). Pixels are
 * re-normalised from `inputNorm` to `towerNorm` first, so the tower sees what it was trained on.
 * Its tensors are parameters under open_clip's names without the `visual.` prefix (no `proj`: the patch
 * tokens never meet it); nothing trains them here.
 */
export class VitPatchTeacher extends PathModule implements PatchFeatureTeacher {
  readonly conv1: PatchEmbedding;
  readonly classEmbedding: tf.Variable;
  readonly positionalEmbedding: tf.Variable;
  readonly lnPre: LayerNorm;
  readonly blocks: ModuleList<TransformerLayer>;
  readonly lnPost: LayerNorm;
  readonly dim: number;
  readonly patchSize: number;
  readonly channels: number;

  constructor(
    readonly config: VitTeacherConfig,
    rng: Rng,
  ) {
    super();
    const c = config;
    if (c.imageSize % c.patchSize !== 0 || c.width % c.heads !== 0) {
      throw new VlError(
        'CONFIG_INVALID',
        `image ${c.imageSize} / patch ${c.patchSize} / width ${c.width} / heads ${c.heads} do not divide`,
        {
          subject: 'VitPatchTeacher',
        },
      );
    }
    for (const [name, n] of [
      ['towerNorm', c.towerNorm],
      ['inputNorm', c.inputNorm],
    ] as const) {
      if (n.mean.length !== c.channels || n.std.length !== c.channels) {
        throw new VlError('CONFIG_INVALID', `${name} needs ${c.channels} means and stds`, { subject: 'VitPatchTeacher' });
      }
    }
    this.dim = c.width;
    this.patchSize = c.patchSize;
    this.channels = c.channels;
    const grid = c.imageSize / c.patchSize;
    const scale = c.width ** -0.5;
    this.conv1 = this.placeModule('conv1', new PatchEmbedding(c.channels, c.patchSize, c.width, rng, { bias: false }));
    this.classEmbedding = this.placeParameter('class_embedding', normal([c.width], rng, scale));
    this.positionalEmbedding = this.placeParameter('positional_embedding', normal([grid * grid + 1, c.width], rng, scale));
    this.lnPre = this.placeModule('ln_pre', new LayerNorm(c.width, c.layerNormEps));
    this.blocks = this.placeModuleList(
      'transformer.resblocks',
      Array.from(
        { length: c.layers },
        () =>
          new TransformerLayer(
            {
              hiddenSize: c.width,
              numHeads: c.heads,
              intermediateSize: c.mlpWidth,
              layerNormEps: c.layerNormEps,
              activation: c.activation,
              qkvLayout: 'in_proj',
              names: OPEN_CLIP_LAYER_NAMES,
            },
            rng,
          ),
      ),
    );
    this.lnPost = this.placeModule('ln_post', new LayerNorm(c.width, c.layerNormEps));
  }

  /** pixels [B, C, S, S] under inputNorm → [B·N, width], patches row-major. */
  features(pixels: tf.Tensor): tf.Tensor2D {
    const { imageSize: s, channels } = this.config;
    if (pixels.rank !== 4 || pixels.shape[1] !== channels || pixels.shape[2] !== s || pixels.shape[3] !== s) {
      throw new VlError('SHAPE_MISMATCH', `expects [B, ${channels}, ${s}, ${s}], got [${pixels.shape}]`, {
        subject: 'VitPatchTeacher',
        hint: 'the teacher reads images at the size its tower was trained on',
      });
    }
    const { towerNorm: t, inputNorm: i } = this.config;
    return tf.tidy(() => {
      // x_tower = (x·std_in + mean_in − mean_tower) / std_tower, per channel.
      const scale = tf.tensor4d(
        i.std.map((v, k) => v / t.std[k]!),
        [1, channels, 1, 1],
      );
      const shift = tf.tensor4d(
        i.mean.map((v, k) => (v - t.mean[k]!) / t.std[k]!),
        [1, channels, 1, 1],
      );
      const x0 = tf.add(tf.mul(pixels, scale), shift);
      const { patches } = this.conv1.forward(x0); // [B, N, W]
      const [b, n, w] = patches.shape as [number, number, number];
      const cls = tf.broadcastTo(tf.reshape(this.classEmbedding, [1, 1, w]), [b, 1, w]);
      let x: tf.Tensor = this.lnPre.forward(tf.add(tf.concat([cls, patches], 1), this.positionalEmbedding));
      for (const block of this.blocks) x = block.forward(x).hidden;
      const tokens = tf.slice(this.lnPost.forward(x), [0, 1, 0], [b, n, w]);
      return tf.reshape(tokens, [b * n, w]) as tf.Tensor2D;
    });
  }
}
