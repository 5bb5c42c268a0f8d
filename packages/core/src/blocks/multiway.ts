// Multiway experts (VLMo, BEiT-3): N named copies of one module (an FFN, a norm, an attention projection)
// and the route that says which tokens each copy sees. The route travels down every forward call;
// nothing about it is stored, so one model can run image-only, text-only and fused passes in any order.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { placeModuleAt } from './path-module.js';

/** `length` consecutive tokens that go to the expert named `expert`. */
export interface RouteSegment {
  readonly expert: string;
  readonly length: number;
}

/**
 * Which expert each token goes to: one expert name for every token, or consecutive segments of the
 * sequence (axis 1) in order, whose lengths add up to the sequence length. BEiT-3 fuses
 * `[{ expert: 'image', length: Nv }, { expert: 'text', length: Nt }]`; VLMo's layers below the VL-FFN
 * split fused input as `[{ expert: 'text', length: maxTextLen }, { expert: 'image', length: rest }]`.
 */
export type Route = string | readonly RouteSegment[];

/** One expert: `name` is what routes say ('image'), `key` what checkpoint keys say ('imag', 'A'). */
export interface ExpertName {
  readonly name: string;
  readonly key: string;
}

export interface ExpertNaming {
  /**
   * 'suffix': the experts are siblings `<base>_<key>` (VLMo `mlp_imag`, `norm2_text`);
   * 'child': children `<base>.<key>` (torchscale `ffn.A.fc1`, `self_attn.k_proj.B`).
   */
  readonly style: 'suffix' | 'child';
  /** In the reference module's registration order, which is its state_dict order. */
  readonly experts: readonly ExpertName[];
}

/** VLMo `Block`: `norm2_text`/`mlp_text` then `norm2_imag`/`mlp_imag`, as its state_dict lists them. */
export const VLMO_EXPERTS: ExpertNaming = {
  style: 'suffix',
  experts: [
    { name: 'text', key: 'text' },
    { name: 'image', key: 'imag' },
  ],
};

/** VLMo layers from `vlffn_start_layer_index` on add the VL-FFN (`norm2_vl`, `mlp_vl`). */
export const VLMO_FUSION_EXPERTS: ExpertNaming = {
  style: 'suffix',
  experts: [...VLMO_EXPERTS.experts, { name: 'vl', key: 'vl' }],
};

/** torchscale `MultiwayNetwork` (BEiT-3): A is the vision expert, B the language one; there is no third. */
export const TORCHSCALE_EXPERTS: ExpertNaming = {
  style: 'child',
  experts: [
    { name: 'image', key: 'A' },
    { name: 'text', key: 'B' },
  ],
};

/** The checkpoint path of one expert of the module at `base`. */
export function expertPath(base: string, naming: ExpertNaming, expert: ExpertName): string {
  return naming.style === 'suffix' ? `${base}_${expert.key}` : `${base}.${expert.key}`;
}

/** A route resolved against a sequence: the non-empty runs of tokens, in order. */
interface Run {
  expert: string;
  length: number;
}

/**
 * A module with one copy per expert. It is not a Module itself: the copies are registered in their
 * owner under the checkpoint's names (see `place`), so suffix-named experts stay siblings there.
 */
export class Multiway<T extends Module> {
  /** Where the experts sit, for messages ('mlp', 'self_attn.q_proj'). */
  readonly base: string;
  private readonly experts: ReadonlyMap<string, T>;

  constructor(base: string, experts: Iterable<readonly [string, T]>) {
    this.base = base;
    this.experts = new Map(experts);
  }

  /** Makes one copy per expert with `make` and registers each under `owner` at `expertPath(base, …)`. */
  static place<T extends Module>(owner: Module, base: string, naming: ExpertNaming, make: (expert: string) => T): Multiway<T> {
    const made = naming.experts.map((e) => [e.name, placeModuleAt(owner, expertPath(base, naming, e), make(e.name))] as const);
    return new Multiway(base, made);
  }

  /** Expert names, in registration order. */
  get names(): string[] {
    return [...this.experts.keys()];
  }

  /**
   * Runs `apply(expert, part)` on each part of x [B, T, …] that the route sends to that expert and
   * joins the results along axis 1 in token order. Tokens never mix across experts, so a split
   * route equals running each part through its own expert.
   */
  forward(x: tf.Tensor, route: Route | undefined, apply: (expert: T, part: tf.Tensor) => tf.Tensor): tf.Tensor {
    const runs = this.resolve(route, x);
    if (runs.length === 1) return apply(this.expert(runs[0]!.expert), x);
    return tf.tidy(() => {
      const parts = tf.split(
        x,
        runs.map((r) => r.length),
        1,
      );
      return tf.concat(
        runs.map((r, i) => apply(this.expert(r.expert), parts[i]!)),
        1,
      );
    });
  }

  private expert(name: string): T {
    return this.experts.get(name) as T;
  }

  private fail(message: string, hint: string): never {
    throw new VlError('ROUTE_INVALID', message, { subject: `Multiway '${this.base}'`, hint });
  }

  /** Checks the route against this module's experts and the sequence length; drops empty segments. */
  private resolve(route: Route | undefined, x: tf.Tensor): Run[] {
    const known = this.names.join(', ');
    const hint = `pass route: one of ${known}, or segments [{ expert, length }, …] that cover the sequence`;
    const check = (name: unknown) => {
      if (typeof name !== 'string' || !this.experts.has(name)) {
        this.fail(`unknown expert ${JSON.stringify(name)}: this module has ${known}`, hint);
      }
    };
    if (route == null) this.fail(`no route given: every token must be sent to one of ${known}`, hint);
    if (typeof route === 'string') {
      check(route);
      return [{ expert: route, length: x.shape[1] ?? 0 }];
    }
    if (!Array.isArray(route)) this.fail(`a route is an expert name or an array of segments, got ${typeof route}`, hint);
    if (x.rank < 2) this.fail(`a split route needs input [B, T, …], got [${x.shape}]`, 'route the whole input to one expert');
    const t = x.shape[1] as number;
    const runs: Run[] = [];
    let covered = 0;
    for (const segment of route as readonly RouteSegment[]) {
      check(segment?.expert);
      if (!Number.isInteger(segment.length) || segment.length < 0) {
        this.fail(`segment '${segment.expert}' has length ${segment.length}`, 'segment lengths are non-negative integers');
      }
      covered += segment.length;
      if (segment.length > 0) runs.push({ expert: segment.expert, length: segment.length });
    }
    if (covered !== t) {
      this.fail(`the route covers ${covered} tokens but the sequence has ${t}`, 'segment lengths must add up to the sequence length');
    }
    if (runs.length === 0) this.fail('the route has no tokens to send anywhere', hint);
    return runs;
  }
}
