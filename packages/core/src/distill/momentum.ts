// MomentumEncoder: an exponential-moving-average twin of any Module (ALBEF/BLIP `model_pairs`,
// `copy_params`, `_momentum_update`).
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Module } from '../nn/module.js';

export interface MomentumOptions {
  /** EMA decay: twin ← m·twin + (1−m)·online. ALBEF and BLIP: 0.995. */
  momentum?: number;
}

/**
 * Keeps twins in step with online modules. It owns no tensors: each twin is an ordinary Module
 * that the model registers under its checkpoint name (`visual_encoder_m`, `text_encoder_m`, …),
 * so the EMA state is in the model's state dict and in every checkpoint, and its keys match
 * the official ones. The constructor copies the online weights into the twins (ALBEF's
 * `copy_params`) and freezes the twins so no optimizer touches them.
 */
export class MomentumEncoder {
  readonly momentum: number;
  private readonly pairs: { online: tf.Variable; twin: tf.Variable }[] = [];

  constructor(pairs: readonly (readonly [online: Module, twin: Module])[], options: MomentumOptions = {}) {
    this.momentum = options.momentum ?? 0.995;
    if (!(this.momentum >= 0 && this.momentum <= 1)) {
      throw new VlError('CONFIG_INVALID', `momentum must be in [0, 1], got ${this.momentum}`, { subject: 'MomentumEncoder' });
    }
    for (const [online, twin] of pairs) {
      const onlineParams = new Map(online.namedParameters());
      const twinParams = twin.namedParameters();
      const problems: string[] = [];
      for (const [name, tp] of twinParams) {
        const op = onlineParams.get(name);
        if (!op) problems.push(`twin has '${name}' which the online module lacks`);
        else if (op.shape.join() !== tp.shape.join()) problems.push(`'${name}' is [${op.shape}] online but [${tp.shape}] in the twin`);
        else this.pairs.push({ online: op, twin: tp });
        onlineParams.delete(name);
      }
      for (const name of onlineParams.keys()) problems.push(`online '${name}' has no twin`);
      if (problems.length) {
        throw new VlError('STATE_DICT_MISMATCH', `momentum twin does not match its module: ${problems.join('; ')}`, {
          subject: online.constructor.name,
          hint: 'build the twin with the same constructor and config as the online module',
        });
      }
      twin.freeze('**');
    }
    this.copyParams();
  }

  /** twin ← online for every pair (ALBEF's `copy_params`). */
  copyParams(): void {
    tf.tidy(() => {
      for (const { online, twin } of this.pairs) twin.assign(online);
    });
  }

  /**
   * One EMA step for every pair (ALBEF's `_momentum_update`, under no-grad). Call it outside the
   * gradient function: after each optimizer step (Trainer `afterStep`), which is where ALBEF's
   * update at the start of the next forward lands.
   */
  update(): void {
    const m = this.momentum;
    tf.tidy(() => {
      for (const { online, twin } of this.pairs) twin.assign(tf.add(tf.mul(twin, m), tf.mul(online, 1 - m)));
    });
  }

  get numPairs(): number {
    return this.pairs.length;
  }
}
