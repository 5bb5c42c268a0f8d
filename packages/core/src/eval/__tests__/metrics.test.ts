// Metrics checked against values worked out by hand (the arithmetic is in the comments and in
// docs/data.md): BLEU-1..4 and CIDEr-D on a three-image fixture, Recall@K, ITM accuracy/AUC.
import { describe, expect, it } from 'vitest';
import { ciderD } from '../cider.js';
import { corpusBleu } from '../bleu.js';
import { itmAccuracy, itmMatchProbabilities, rocAuc } from '../itm.js';
import { ptbTokenize } from '../text.js';
import { retrievalRecall } from '../retrieval.js';

describe('ptbTokenize', () => {
  it('lower-cases, splits clitics, drops punctuation tokens', () => {
    expect(ptbTokenize("A man's dog, running -- fast!")).toEqual(['a', 'man', "'s", 'dog', 'running', 'fast']);
    expect(ptbTokenize("Don't stop (please)...")).toEqual(['do', "n't", 'stop', 'please']);
    expect(ptbTokenize('It costs 3.50 in the U.S. today.')).toEqual(['it', 'costs', '3.50', 'in', 'the', 'u.s.', 'today']);
    expect(ptbTokenize('a well-dressed "man" ; two  dogs ?')).toEqual(['a', 'well-dressed', 'man', 'two', 'dogs']);
  });
});

// BLEU fixture: three images, hypotheses written with capitals and punctuation on purpose (the
// tokeniser must lower-case and drop the periods).
const BLEU_HYPS = ['A red circle.', 'two blue squares', 'a green triangle'];
const BLEU_REFS = [
  ['a red circle', 'one red circle left'],
  ['two green squares', 'blue squares here now'],
  ['a small green triangle', 'green triangle on the right side'],
];

describe('corpusBleu (coco-caption, closest reference length)', () => {
  it('matches the hand computation', () => {
    // Image 1: hyp "a red circle" (3 words); ref lengths 3, 4 → closest 3.
    //   1-grams a, red, circle all in ref 1: 3/3; 2-grams "a red", "red circle": 2/2;
    //   3-gram "a red circle": 1/1; 4-grams: none (guess max(0, 3-4+1) = 0).
    // Image 2: hyp "two blue squares"; ref lengths 3, 4 → closest 3.
    //   1-grams two (ref 1), blue (ref 2), squares: 3/3; 2-grams "two blue" ✗, "blue squares" ✓ (ref 2): 1/2;
    //   3-gram "two blue squares" ✗: 0/1.
    // Image 3: hyp "a green triangle"; ref lengths 4, 6 → closest 4 (so BP applies).
    //   1-grams: 3/3; 2-grams "a green" ✗ (ref 1 has "a small", "small green"), "green triangle" ✓: 1/2;
    //   3-gram: 0/1.
    // Corpus: correct = [9, 4, 1, 0], guess = [9, 6, 3, 0], test length 9, ref length 3+3+4 = 10.
    //   p1 = 1, p2 = 4/6, p3 = 1/3, p4 = (0 + 1e-15)/(0 + 1e-9) = 1e-6 (coco-caption's tiny/small).
    //   BP = exp(1 - 10/9) = exp(-1/9) = 0.894839
    //   BLEU-1 = 1 × BP                              = 0.894839
    //   BLEU-2 = (1 × 2/3)^(1/2) × BP = 0.816497 × BP = 0.730633
    //   BLEU-3 = (2/9)^(1/3) × BP     = 0.605707 × BP = 0.542010
    //   BLEU-4 = (2/9 × 1e-6)^(1/4) × BP = 0.021712 × BP = 0.019429
    const r = corpusBleu(BLEU_HYPS, BLEU_REFS);
    expect(r.correct).toEqual([9, 4, 1, 0]);
    expect(r.guess).toEqual([9, 6, 3, 0]);
    expect([r.testLength, r.refLength]).toEqual([9, 10]);
    const bp = Math.exp(1 - 10 / 9);
    expect(r.brevityPenalty).toBeCloseTo(bp, 8);
    expect(r.bleu[0]).toBeCloseTo(0.894839, 6);
    expect(r.bleu[1]).toBeCloseTo(0.730633, 6);
    expect(r.bleu[2]).toBeCloseTo(0.54201, 6);
    expect(r.bleu[3]).toBeCloseTo(0.019429, 6);
    // Closed forms agree to ~1e-10: the 1e-9 in each denominator (and in the length ratio) is the
    // only difference.
    expect(r.bleu[1]).toBeCloseTo(Math.sqrt(2 / 3) * bp, 8);
    expect(r.bleu[3]).toBeCloseTo(((2 / 9) * 1e-6) ** 0.25 * bp, 8);
  });

  it('uses the closest reference length, ties to the shorter, and clips repeated words', () => {
    // "the the the" vs refs of lengths 2 and 4 (both 1 away): the shorter (2) is taken → no BP.
    // "the" appears at most once in a reference → 1-gram precision 1/3.
    const r = corpusBleu(['the the the'], [['the cat', 'a cat on mats']]);
    expect(r.refLength).toBe(2);
    expect(r.brevityPenalty).toBe(1);
    expect(r.bleu[0]).toBeCloseTo(1 / 3, 8);
    expect(() => corpusBleu(['a'], [])).toThrow(/1 hypotheses but 0/);
  });
});

// CIDEr-D fixture: two images, so the IDF weight of an n-gram is log 2 − log df: L = log 2 when it
// occurs in one image's references (or none: df is clamped to 1), 0 when in both. Shared here:
// "a" (image 1 and 2) and "square" (ref 2 of image 1, ref of image 2). Every weight is 0 or L,
// so L² cancels in each cosine and the arithmetic is in counts.
const CIDER_REFS = [['a red circle', 'a red square'], ['a blue square']];

describe('ciderD (coco-caption CIDEr-D)', () => {
  it('matches the hand computation', () => {
    // Image 1, hyp "a red circle": 1-grams {a: 0, red: L, circle: L}, 2-grams {a red: L, red circle: L},
    //   3-gram {a red circle: L}; bigram count ("length") 2.
    //   vs "a red circle" (identical): cos = 1, 1, 1 for n = 1..3; n = 4: no 4-grams → 0.
    //   vs "a red square" (1-grams red: L, square/a: 0 → norm L; 2-grams a red, red square → norm √2 L):
    //     n=1: red·red / (√2 L · L) = 1/√2 = 0.707107; n=2: "a red" / (√2 L · √2 L) = 1/2; n=3: 0.
    //   Lengths equal → no penalty. Sum over refs: [1.707107, 1.5, 1, 0]; mean over n = 1.051777;
    //   / 2 refs × 10 = 5.258883.
    // Image 2, hyp "a blue circle": 1-grams {a: 0, blue: L, circle: L (df 1, image 1)}; 2-grams
    //   {a blue: L, blue circle: L (df 0 → 1)}; 3-gram {a blue circle: L}.
    //   vs "a blue square" (1-grams blue: L → norm L; 2-grams a blue, blue square → √2 L):
    //     n=1: 1/√2 = 0.707107; n=2: 1/2; n=3: 0. Mean = 0.301777; × 10 = 3.017767.
    // Corpus CIDEr-D = (5.258883 + 3.017767) / 2 = 4.138325.
    const r = ciderD(['a red circle', 'a blue circle'], CIDER_REFS);
    expect(r.perImage[0]).toBeCloseTo(5.258883, 5);
    expect(r.perImage[1]).toBeCloseTo(3.017767, 5);
    expect(r.score).toBeCloseTo(4.138325, 5);
    expect(r.perImage[0]).toBeCloseTo(((1 + Math.SQRT1_2 + 1 + 0.5 + 1) / 4 / 2) * 10, 10);
  });

  it('applies the Gaussian length penalty and clips repeated n-grams', () => {
    // Image 2 hyp "a blue circle a": bigram count 3 vs the ref's 2 → penalty exp(-1/(2·36)) = 0.986207.
    //   1-grams {a: 2·0 = 0, blue: L, circle: L} → norm √2 L; 2-grams {a blue, blue circle, circle a}
    //   → √3 L; 3-grams 2 → √2 L; 4-gram {a blue circle a} but the ref has no 4-grams → 0.
    //   n=1: 1/√2; n=2: "a blue" 1/(√3 · √2) = 0.408248; n=3: 0.
    //   (0.707107 + 0.408248) × 0.986207 / 4 × 10 = 2.749930.
    const penal = ciderD(['a red circle', 'a blue circle a'], CIDER_REFS);
    expect(penal.perImage[0]).toBeCloseTo(5.258883, 5); // df comes from references only: unchanged
    expect(penal.perImage[1]).toBeCloseTo(2.74993, 5);
    expect(penal.perImage[1]).toBeCloseTo((((Math.SQRT1_2 + 1 / Math.sqrt(6)) * Math.exp(-1 / 72)) / 4) * 10, 10);
    // Image 1 hyp "red red red": 1-gram red weight 3L (norm 3L), clipped to the ref's L:
    //   vs "a red circle" (1-gram norm √2 L): L·L / (3L · √2 L) = 1/(3√2) = 0.235702;
    //   vs "a red square" (norm L): 1/3. Higher orders share nothing. Bigram counts 2 and 2.
    //   (0.235702 + 0.333333) / 4 / 2 × 10 = 0.711295 (unclipped CIDEr would give 3× that).
    const clipped = ciderD(['red red red', 'a blue circle'], CIDER_REFS);
    expect(clipped.perImage[0]).toBeCloseTo(0.711295, 5);
  });
});

describe('retrievalRecall', () => {
  // 3 images, 5 texts; texts 0,1 → image 0, text 2 → image 1, texts 3,4 → image 2.
  const sims = [
    [0.9, 0.1, 0.8, 0.2, 0.3],
    [0.5, 0.4, 0.3, 0.9, 0.1],
    [0.2, 0.6, 0.1, 0.3, 0.7],
  ];
  const textToImage = [0, 0, 1, 2, 2];

  it('matches the hand computation in both directions', () => {
    // Image→text, best own caption's rank: img 0 → t0 (0.9, top) rank 0; img 1 → t2 (0.3) behind
    // 0.9, 0.5, 0.4 → rank 3; img 2 → t4 (0.7, top) rank 0. R@1 = 2/3, R@2 = 2/3, R@5 = 3/3.
    // Text→image, own image's rank in the text's column: t0 0; t1 (0.1 vs 0.4, 0.6) 2; t2 (0.3 vs
    // 0.8) 1; t3 (0.3 vs 0.9) 1; t4 0. R@1 = 2/5, R@2 = 4/5, R@5 = 5/5.
    const r = retrievalRecall({ sims: sims.flat(), numImages: 3, numTexts: 5, textToImage, ks: [1, 2, 5] });
    expect(Array.from(r.imageToText.ranks)).toEqual([0, 3, 0]);
    expect(Array.from(r.textToImage.ranks)).toEqual([0, 2, 1, 1, 0]);
    expect(r.imageToText.recall[1]).toBeCloseTo(200 / 3, 8);
    expect(r.imageToText.recall[2]).toBeCloseTo(200 / 3, 8);
    expect(r.imageToText.recall[5]).toBe(100);
    expect(r.textToImage.recall).toEqual({ 1: 40, 2: 80, 5: 100 });
    expect(r.imageToText.medianRank).toBe(1);
    expect(r.textToImage.medianRank).toBe(2);
    expect(r.meanRecall).toBeCloseTo((200 / 3 + 200 / 3 + 100 + 40 + 80 + 100) / 6, 8);
    // Row arrays give the same answer as the flat matrix.
    expect(retrievalRecall({ sims, numImages: 3, numTexts: 5, textToImage, ks: [1, 2, 5] }).meanRecall).toBeCloseTo(r.meanRecall, 10);
  });

  it('counts ties against the query and checks shapes', () => {
    const flat = new Array(15).fill(0.5);
    const r = retrievalRecall({ sims: flat, numImages: 3, numTexts: 5, textToImage });
    expect(r.imageToText.recall[1]).toBe(0);
    expect(r.textToImage.recall[1]).toBe(0);
    expect(() => retrievalRecall({ sims: flat.slice(1), numImages: 3, numTexts: 5, textToImage })).toThrow(/3×5/);
    expect(() => retrievalRecall({ sims: flat, numImages: 3, numTexts: 5, textToImage: [0, 0, 0, 1, 1] })).toThrow(
      /image 2 has no caption/,
    );
  });
});

describe('ITM accuracy and AUC', () => {
  it('matches the hand computation', () => {
    const scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.4];
    const labels = [1, 0, 1, 0, 1, 0];
    // Predictions at 0.5: 1 1 1 1 0 0 vs labels 1 0 1 0 1 0 → right at 0, 2, 5 → 3/6.
    expect(itmAccuracy(scores, labels)).toBe(0.5);
    // Positive-negative pairs (9): 0.9 beats all 3; 0.7 beats 0.6 and 0.4; 0.4 ties 0.4 (½) → 5.5/9.
    expect(rocAuc(scores, labels)).toBeCloseTo(5.5 / 9, 12);
    expect(rocAuc([0.1, 0.2], [false, true])).toBe(1);
    expect(() => rocAuc([0.1, 0.2], [1, 1])).toThrow(/both/);
    const p = itmMatchProbabilities([0, 0, 0, Math.log(3)]);
    expect(p[0]).toBeCloseTo(0.5, 6);
    expect(p[1]).toBeCloseTo(0.75, 6);
  });
});
