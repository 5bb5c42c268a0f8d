// Corpus BLEU-1..4 exactly as coco-caption computes it (pycocoevalcap/bleu/bleu_scorer.py,
// option 'closest'): clipped n-gram counts summed over the corpus, the reference length closest to
// each hypothesis (ties to the shorter), and its tiny/small smoothing constants.
import { VlError } from '../errors.js';
import { ptbTokenize } from './text.js';

export interface BleuResult {
  /** BLEU-1 … BLEU-n, each with the brevity penalty applied. */
  bleu: number[];
  /** Clipped matches and candidate n-grams per order, summed over the corpus. */
  correct: number[];
  guess: number[];
  /** Total hypothesis length and total closest-reference length. */
  testLength: number;
  refLength: number;
  brevityPenalty: number;
}

export interface CaptionMetricOptions {
  /** Apply the PTB-like tokeniser (default true); false splits on whitespace only. */
  tokenize?: boolean;
}

const TINY = 1e-15;
const SMALL = 1e-9;

export function tokensOf(text: string, tokenize: boolean): string[] {
  return tokenize ? ptbTokenize(text) : text.split(/\s+/).filter(Boolean);
}

/** n-gram counts for orders 1..n, keyed by the n-gram joined with spaces. */
export function ngramCounts(words: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let k = 1; k <= n; k++) {
    for (let i = 0; i + k <= words.length; i++) {
      const g = words.slice(i, i + k).join(' ');
      counts.set(g, (counts.get(g) ?? 0) + 1);
    }
  }
  return counts;
}

function checkPairs(hypotheses: readonly string[], references: readonly (readonly string[])[]): void {
  if (hypotheses.length !== references.length) {
    throw new VlError('INVALID_ARGUMENT', `${hypotheses.length} hypotheses but ${references.length} reference lists`);
  }
  references.forEach((r, i) => {
    if (r.length === 0) throw new VlError('INVALID_ARGUMENT', `image ${i} has no reference captions`);
  });
}

/** BLEU over a corpus: hypotheses[i] is scored against references[i] (one or more captions). */
export function corpusBleu(
  hypotheses: readonly string[],
  references: readonly (readonly string[])[],
  options: CaptionMetricOptions & { n?: number } = {},
): BleuResult {
  checkPairs(hypotheses, references);
  const n = options.n ?? 4;
  const tok = options.tokenize ?? true;
  const correct = new Array<number>(n).fill(0);
  const guess = new Array<number>(n).fill(0);
  let testLength = 0;
  let refLength = 0;
  hypotheses.forEach((hyp, i) => {
    const words = tokensOf(hyp, tok);
    const refs = (references[i] as readonly string[]).map((r) => tokensOf(r, tok));
    // Clip by the largest count of each n-gram in any one reference.
    const maxRef = new Map<string, number>();
    for (const r of refs) for (const [g, c] of ngramCounts(r, n)) maxRef.set(g, Math.max(maxRef.get(g) ?? 0, c));
    // 'closest': min over (|len - testlen|, len), so ties go to the shorter reference.
    let best = Infinity;
    let bestLen = 0;
    for (const r of refs) {
      const d = Math.abs(r.length - words.length);
      if (d < best || (d === best && r.length < bestLen)) {
        best = d;
        bestLen = r.length;
      }
    }
    testLength += words.length;
    refLength += bestLen;
    for (let k = 1; k <= n; k++) guess[k - 1]! += Math.max(0, words.length - k + 1);
    for (const [g, c] of ngramCounts(words, n)) {
      const k = g.split(' ').length;
      correct[k - 1]! += Math.min(maxRef.get(g) ?? 0, c);
    }
  });
  const bleu: number[] = [];
  let product = 1;
  for (let k = 0; k < n; k++) {
    product *= ((correct[k] as number) + TINY) / ((guess[k] as number) + SMALL);
    bleu.push(product ** (1 / (k + 1)));
  }
  const ratio = (testLength + TINY) / (refLength + SMALL);
  const brevityPenalty = ratio < 1 ? Math.exp(1 - 1 / ratio) : 1;
  return { bleu: bleu.map((b) => b * brevityPenalty), correct, guess, testLength, refLength, brevityPenalty };
}
