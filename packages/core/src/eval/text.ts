// PTB-like caption tokenisation as coco-caption applies it before BLEU/CIDEr: lower-case, split
// off punctuation and clitics the way Stanford's PTBTokenizer does, then drop punctuation tokens.

// coco-caption's PTBTokenizer (pycocoevalcap/tokenizer/ptbtokenizer.py) removes these tokens after
// running the Java tokenizer; brackets arrive as -LRB- etc. and are removed with them.
const PUNCTUATION = new Set(["''", "'", '``', '`', '-LRB-', '-RRB-', '-LCB-', '-RCB-', '.', '?', '!', ',', ':', '-', '--', '...', ';']);

/**
 * "A man's dog, running!" → ["a", "man", "'s", "dog", "running"].
 * Differences from the Java tokenizer are confined to rare cases (abbreviations with inner
 * periods are kept whole, as PTB does for "u.s."; other symbols such as "/" or "&" stay attached).
 */
export function ptbTokenize(text: string): string[] {
  let s = text.toLowerCase();
  // Quotes and brackets are separate tokens in PTB, then removed: turn them into spaces.
  s = s.replace(/["“”‘’`()[\]{}]/g, (q) => (q === '’' || q === '‘' ? "'" : ' '));
  // Clitics: "don't" → "do n't", "man's" → "man 's" (PTB's split, kept as tokens by coco-caption).
  s = s.replace(/([a-z0-9])n't\b/g, "$1 n't");
  s = s.replace(/([a-z0-9])'(s|re|ve|ll|d|m)\b/g, "$1 '$2");
  // Commas, semicolons, colons, ?, ! always split; a period only when not inside a number or an
  // abbreviation (followed by a space or the end, and not preceded by a single letter + period).
  s = s.replace(/([,;:?!])/g, ' $1 ');
  // An ellipsis is one PTB token ("...") that coco-caption then drops.
  s = s.replace(/\.{2,}/g, ' ');
  s = s.replace(/(?<!\b[a-z]\.[a-z]?)\.(?=\s|$)/g, ' . ');
  // Dashes standing alone ("a - b", "a -- b") are punctuation; inside a word they are kept.
  s = s.replace(/(^|\s)(-+)(?=\s|$)/g, '$1 $2 ');
  return s.split(/\s+/).filter((t) => t !== '' && !PUNCTUATION.has(t) && !/^'+$/.test(t));
}
