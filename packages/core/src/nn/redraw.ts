// Re-drawing a model's weights for from-scratch training at tiny widths. At width 32, the 0.02 init of BERT,
// ViT and BEiT leaves every [CLS] feature almost the same, and contrastive and matching losses sit at chance
// for hundreds of steps (measured for ALBEF and VLMo in docs/ablations.md and docs/vlmo.md); a larger std
// breaks that symmetry at once. Draws come from an explicit Rng, so a seed gives the same weights everywhere.
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../runtime/rng.js';
import { LayerNorm } from './layers.js';
import { compilePattern, type Module, type NamePattern } from './module.js';

/**
 * Every trainable parameter in `namedParameters` order: LayerNorm weights to 1, LayerNorm and other biases
 * to 0, everything else from N(0, std²) truncated at ±2σ; names matching `keep` (temperatures, layer-scale
 * gammas) stay as they are. Returns the names re-drawn from the normal.
 */
export function redrawWeights(module: Module, std: number, rng: Rng, options: { keep?: readonly NamePattern[] } = {}): string[] {
  const keep = (options.keep ?? []).map(compilePattern);
  const norms = new Set<string>();
  for (const [path, m] of module.namedModules()) {
    if (m instanceof LayerNorm) for (const leaf of ['weight', 'bias']) norms.add(path ? `${path}.${leaf}` : leaf);
  }
  const drawn: string[] = [];
  tf.tidy(() => {
    for (const [name, p] of module.namedParameters()) {
      if (!p.trainable || keep.some((re) => re.test(name))) continue;
      const leaf = name.slice(name.lastIndexOf('.') + 1);
      if (norms.has(name) && leaf === 'weight') p.assign(tf.onesLike(p));
      else if (leaf === 'bias') p.assign(tf.zerosLike(p));
      else {
        const data = new Float32Array(p.size);
        for (let i = 0; i < data.length; i++) {
          let v = rng.normal();
          while (Math.abs(v) > 2) v = rng.normal();
          data[i] = v * std;
        }
        p.assign(tf.tensor(data, p.shape));
        drawn.push(name);
      }
    }
  });
  return drawn;
}
