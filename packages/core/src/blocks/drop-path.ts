// Stochastic depth (timm `DropPath`): in training, drops a sample's whole residual branch with
// probability p and scales survivors by 1/(1-p). The per-sample coin flips come from the Rng.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';

/** No parameters. */
export class DropPath extends Module {
  constructor(readonly p: number) {
    super();
    if (!(p >= 0 && p < 1)) throw new VlError('INVALID_ARGUMENT', `drop-path probability must be in [0, 1), got ${p}`);
  }

  /** x: [B, …]; one keep/drop decision per batch row. */
  forward(x: tf.Tensor, rng?: Rng): tf.Tensor {
    if (!this.training || this.p === 0) return x;
    if (!rng) {
      throw new VlError('INVALID_ARGUMENT', 'drop-path in training mode needs an Rng', {
        subject: 'DropPath.forward',
        hint: 'pass the step Rng down the forward call, or call model.eval() for inference',
      });
    }
    const b = x.shape[0] as number;
    const keep = 1 - this.p;
    // Drawn in JS so the same seed drops the same samples on every backend.
    const scale = new Float32Array(b);
    for (let i = 0; i < b; i++) scale[i] = rng.uniform() < keep ? 1 / keep : 0;
    return tf.tidy(() => tf.mul(x, tf.tensor(scale, [b, ...x.shape.slice(1).map(() => 1)])));
  }
}

/** timm's linear drop-path schedule: rate grows from 0 at the first layer to `max` at the last. */
export function dropPathSchedule(max: number, numLayers: number): number[] {
  return Array.from({ length: numLayers }, (_, i) => (numLayers > 1 ? (max * i) / (numLayers - 1) : 0));
}
