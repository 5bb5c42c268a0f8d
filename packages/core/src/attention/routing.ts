// Modality routing for Multiway layers (VLMo, BEiT-3): which expert each token goes to is one
// explicit value passed down the forward call, instead of torchscale's mutated split position.
//
// Parameter names of `Multiway`: `<vision>.*` and `<language>.*` (torchscale: `A.*`, `B.*`).
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { Module } from '../nn/module.js';

export type Modality = 'vision' | 'language';

/**
 * All tokens to one expert, or split along the sequence: the first `split` tokens go to `first`
 * (default vision, as BEiT-3 concatenates [image, text]; VLMo concatenates [text, image], so it
 * passes `first: 'language'`), the rest to the other expert.
 */
export type Route = Modality | { split: number; first?: Modality };

export function otherModality(m: Modality): Modality {
  return m === 'vision' ? 'language' : 'vision';
}

/**
 * Applies `experts[m]` to the tokens routed to modality m of x [B, T, …] and puts the pieces
 * back in order. Tokens never mix across experts, so a split route equals running each part
 * through its own expert.
 */
export function applyRouted(
  x: tf.Tensor,
  route: Route,
  experts: Record<Modality, (part: tf.Tensor) => tf.Tensor>,
): tf.Tensor {
  if (typeof route === 'string') return experts[route](x);
  const t = x.shape[1] as number;
  const { split } = route;
  if (!Number.isInteger(split) || split < 0 || split > t) {
    throw new VlError('INVALID_ARGUMENT', `split position ${split} is outside [0, ${t}]`, {
      subject: 'applyRouted',
      hint: 'split is the number of leading tokens that go to the first modality',
    });
  }
  const first = route.first ?? 'vision';
  if (split === 0) return experts[otherModality(first)](x);
  if (split === t) return experts[first](x);
  return tf.tidy(() => {
    const [head, tail] = tf.split(x, [split, t - split], 1); // [B, split, …], [B, T - split, …]
    return tf.concat([experts[first](head as tf.Tensor), experts[otherModality(first)](tail as tf.Tensor)], 1);
  });
}

export interface MultiwayNames {
  vision: string;
  language: string;
}

/** torchscale's MultiwayNetwork: `A` is the vision expert, `B` the language expert. */
export const TORCHSCALE_MULTIWAY_NAMES: MultiwayNames = { vision: 'A', language: 'B' };

/** A module duplicated per modality; `forward` routes tokens to the two copies. */
export class Multiway<T extends Module> extends Module {
  readonly vision: T;
  readonly language: T;

  constructor(make: (modality: Modality) => T, names: MultiwayNames = TORCHSCALE_MULTIWAY_NAMES) {
    super();
    this.vision = this.registerModule(names.vision, make('vision'));
    this.language = this.registerModule(names.language, make('language'));
  }

  expert(m: Modality): T {
    return m === 'vision' ? this.vision : this.language;
  }

  forward(x: tf.Tensor, route: Route, apply: (expert: T, part: tf.Tensor) => tf.Tensor): tf.Tensor {
    return applyRouted(x, route, { vision: (p) => apply(this.vision, p), language: (p) => apply(this.language, p) });
  }
}
