// CIDEr-D as coco-caption computes it (pycocoevalcap/cider/cider_scorer.py): TF-IDF n-gram vectors
// (n = 1..4) with document frequencies from the references of the evaluated corpus, cosine
// similarity with the hypothesis weights clipped at the reference's, a Gaussian length penalty
// (sigma 6), averaged over n-gram orders and references, times 10.
import { type CaptionMetricOptions, ngramCounts, tokensOf } from './bleu.js';
import { VlError } from '../errors.js';

export interface CiderResult {
  /** Corpus CIDEr-D: the mean of the per-image scores. */
  score: number;
  perImage: number[];
}

interface Vec {
  /** Per order: n-gram → weight. */
  weights: Map<string, number>[];
  norms: number[];
  /** coco-caption's "length": the number of bigrams (order index 1), not of words. */
  length: number;
}

export function ciderD(
  hypotheses: readonly string[],
  references: readonly (readonly string[])[],
  options: CaptionMetricOptions & { n?: number; sigma?: number } = {},
): CiderResult {
  if (hypotheses.length !== references.length) {
    throw new VlError('INVALID_ARGUMENT', `${hypotheses.length} hypotheses but ${references.length} reference lists`);
  }
  const n = options.n ?? 4;
  const sigma = options.sigma ?? 6;
  const tok = options.tokenize ?? true;
  const hypCounts = hypotheses.map((h) => ngramCounts(tokensOf(h, tok), n));
  const refCounts = references.map((refs, i) => {
    if (refs.length === 0) throw new VlError('INVALID_ARGUMENT', `image ${i} has no reference captions`);
    return refs.map((r) => ngramCounts(tokensOf(r, tok), n));
  });
  // Document frequency: in how many images' reference sets an n-gram occurs.
  const df = new Map<string, number>();
  for (const refs of refCounts) {
    const seen = new Set<string>();
    for (const r of refs) for (const g of r.keys()) seen.add(g);
    for (const g of seen) df.set(g, (df.get(g) ?? 0) + 1);
  }
  const logN = Math.log(references.length);

  const toVec = (counts: Map<string, number>): Vec => {
    const weights = Array.from({ length: n }, () => new Map<string, number>());
    const norms = new Array<number>(n).fill(0);
    let length = 0;
    for (const [g, tf] of counts) {
      const order = g.split(' ').length - 1;
      // An n-gram no reference has gets df 1 (log 1 = 0): full weight log N, as in coco-caption.
      const w = tf * (logN - Math.log(Math.max(1, df.get(g) ?? 0)));
      (weights[order] as Map<string, number>).set(g, w);
      norms[order]! += w * w;
      if (order === 1) length += tf;
    }
    return { weights, norms: norms.map(Math.sqrt), length };
  };

  const sim = (h: Vec, r: Vec): number[] => {
    const delta = h.length - r.length;
    const penalty = Math.exp(-(delta * delta) / (2 * sigma * sigma));
    return h.weights.map((hw, k) => {
      const rw = r.weights[k] as Map<string, number>;
      let val = 0;
      // Clipping (the "-D"): a repeated n-gram earns no more than the reference's weight.
      for (const [g, w] of hw) {
        const ref = rw.get(g) ?? 0;
        val += Math.min(w, ref) * ref;
      }
      const nh = h.norms[k] as number;
      const nr = r.norms[k] as number;
      if (nh !== 0 && nr !== 0) val /= nh * nr;
      return val * penalty;
    });
  };

  const perImage = hypCounts.map((hc, i) => {
    const hv = toVec(hc);
    const refs = refCounts[i] as Map<string, number>[];
    const sum = new Array<number>(n).fill(0);
    for (const rc of refs) sim(hv, toVec(rc)).forEach((v, k) => (sum[k]! += v));
    const mean = sum.reduce((a, b) => a + b, 0) / n;
    return (mean / refs.length) * 10;
  });
  const score = perImage.length ? perImage.reduce((a, b) => a + b, 0) / perImage.length : 0;
  return { score, perImage };
}
