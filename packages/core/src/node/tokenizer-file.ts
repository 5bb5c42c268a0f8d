// Loads a BertTokenizer from disk: a `vocab.txt`, a `tokenizer.json` (with its `tokenizer_config.json`), or a folder.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { VlError } from '../errors.js';
import { BertTokenizer, parseVocabTxt, type TokenizerOptions } from '../data/tokenizer.js';

/** A BertTokenizer from a file: `vocab.txt` or `tokenizer.json` (by extension), or a folder holding either. */
export async function loadBertTokenizer(path: string, options: TokenizerOptions = {}): Promise<BertTokenizer> {
  let file = path;
  if ((await stat(path).catch(() => null))?.isDirectory()) {
    const json = join(path, 'tokenizer.json');
    file = (await stat(json).catch(() => null)) ? json : join(path, 'vocab.txt');
  }
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw new VlError('DATA_INVALID', `cannot read tokenizer file: ${(err as Error).message}`, { subject: file });
  });
  if (file.endsWith('.json')) {
    let config: Record<string, unknown> = {};
    const cfgPath = join(dirname(file), 'tokenizer_config.json');
    const cfgText = await readFile(cfgPath, 'utf8').catch(() => null);
    if (cfgText !== null) config = JSON.parse(cfgText) as Record<string, unknown>;
    return BertTokenizer.fromTokenizerJson(JSON.parse(text), options, config);
  }
  return BertTokenizer.fromVocab(parseVocabTxt(text), options);
}
