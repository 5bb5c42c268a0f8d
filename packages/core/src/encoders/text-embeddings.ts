// BERT text embeddings: word + absolute position (+ token type) embeddings, LayerNorm, dropout
// (HF `BlipTextEmbeddings`, `BertEmbeddings`; ALBEF `xbert.BertEmbeddings`; VLMo's, whose
// position_embedding_type 'rel_pos' keeps the position table but never adds it).
//
// Parameter names: word_embeddings.weight [V, D], position_embeddings.weight [P, D],
// [token_type_embeddings.weight [T, D] when type_vocab_size > 0], LayerNorm.{weight,bias},
// buffer position_ids [1, P] (int64 in checkpoints, int32 here).
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { Dropout, Embedding, LayerNorm } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';

/** The fields of a BERT / BLIP text config the embeddings read (camelCase of the `config.json` keys). */
export interface TextEmbeddingsConfig {
  vocabSize: number;
  hiddenSize: number;
  maxPositionEmbeddings: number;
  /** BERT/ALBEF 2; BLIP has no token types (0 or absent). */
  typeVocabSize?: number;
  /** Default 1e-12 (BERT). */
  layerNormEps?: number;
  hiddenDropoutProb?: number;
  /**
   * HF `position_embedding_type`. Only 'absolute' (the default) adds the position table; any other
   * value (HF's 'relative_key', VLMo's 'rel_pos') keeps the table, which checkpoints hold, but does not
   * add it: the model puts positions into attention instead.
   */
  positionEmbeddingType?: string;
}

export interface TextEmbeddingsInputs {
  /** [B, T] int32 token ids. */
  inputIds?: tf.Tensor;
  /** [B, T, D] precomputed word embeddings instead of ids. */
  inputsEmbeds?: tf.Tensor;
  /** [B, T] int32; default zeros (only with token types). */
  tokenTypeIds?: tf.Tensor;
  /** Tokens already decoded (KV cache length): new tokens get positions past…past+T-1. */
  pastLength?: number;
  rng?: Rng;
}

export class BertEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly token_type_embeddings: Embedding | null;
  readonly LayerNorm: LayerNorm;
  private readonly dropout: Dropout;
  readonly maxPositions: number;
  /** Whether forward adds the absolute position embeddings (positionEmbeddingType 'absolute'). */
  readonly absolutePositions: boolean;

  constructor(config: TextEmbeddingsConfig, rng: Rng) {
    super();
    const d = config.hiddenSize;
    this.maxPositions = config.maxPositionEmbeddings;
    this.absolutePositions = (config.positionEmbeddingType ?? 'absolute') === 'absolute';
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(config.vocabSize, d, rng));
    this.position_embeddings = this.registerModule('position_embeddings', new Embedding(this.maxPositions, d, rng));
    const types = config.typeVocabSize ?? 0;
    this.token_type_embeddings = types > 0 ? this.registerModule('token_type_embeddings', new Embedding(types, d, rng)) : null;
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(d, config.layerNormEps ?? 1e-12));
    this.dropout = this.registerModule('dropout', new Dropout(config.hiddenDropoutProb ?? 0));
    this.registerBuffer(
      'position_ids',
      tf.tidy(() => tf.range(0, this.maxPositions, 1, 'int32').reshape([1, this.maxPositions])),
      {
        storedDtype: 'I64',
      },
    );
  }

  /** → [B, T, D] */
  forward(inputs: TextEmbeddingsInputs): tf.Tensor {
    const source = inputs.inputIds ?? inputs.inputsEmbeds;
    if (!source) throw new VlError('INVALID_ARGUMENT', 'give inputIds or inputsEmbeds', { subject: 'BertEmbeddings.forward' });
    const [b, t] = source.shape as [number, number];
    const past = inputs.pastLength ?? 0;
    if (past + t > this.maxPositions) {
      throw new VlError('SHAPE_MISMATCH', `positions ${past}…${past + t - 1} exceed maxPositionEmbeddings ${this.maxPositions}`, {
        subject: 'BertEmbeddings.forward',
        hint: 'truncate the text or lower the generation max length',
      });
    }
    return tf.tidy(() => {
      let h = inputs.inputIds ? this.word_embeddings.forward(inputs.inputIds) : (inputs.inputsEmbeds as tf.Tensor); // [B, T, D]
      if (this.absolutePositions) {
        const positionIds = tf.slice(this.getBuffer('position_ids'), [0, past], [1, t]); // [1, T]
        h = tf.add(h, this.position_embeddings.forward(positionIds)); // broadcast over B
      }
      if (this.token_type_embeddings) {
        const types = inputs.tokenTypeIds ?? tf.zeros([b, t], 'int32');
        h = tf.add(h, this.token_type_embeddings.forward(types));
      }
      return this.dropout.forward(this.LayerNorm.forward(h), inputs.rng);
    });
  }
}
