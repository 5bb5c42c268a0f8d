// A checkpoint folder whose vocabulary disagrees with its config ([DEC] at 10 while text_config.bos_token_id is
// 97, the case that captioned "[UNK] …" without a word) fails at load with CONFIG_INVALID naming both ids and
// both files; the matching vocabulary loads. Every loader that attaches a folder's tokenizer checks it.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initRuntime, isVlError } from '@vl/core';
import { loadBertTokenizer } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import { BLIP_ADDED_TOKENS, checkTokenizerIds } from '../processor.js';
import { CAPTIONING, RETRIEVAL } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'blip-tokids-'));

/** The fixtures' 99-entry vocabulary: [PAD] 0, [SEP] 3, [CLS] 4, [DEC] 97, [ENC] 98 (their config's ids). */
function matchingVocab(): string[] {
  const v = ['[PAD]', '[UNK]', '[unused0]', '[SEP]', '[CLS]', '[MASK]'];
  for (let i = 0; v.length < 97; i++) v.push(`w${i}`);
  return [...v, '[DEC]', '[ENC]'];
}

/** A 10-word vocabulary without [DEC]: the loader appends [DEC] at 10 and [ENC] at 11. */
const SHORT_VOCAB = ['[PAD]', '[UNK]', '[unused0]', '[SEP]', '[CLS]', '[MASK]', 'a', 'picture', 'of', 'cat'];

function folder(name: string, from: string, vocab: string[]): string {
  const dir = join(tmp, name);
  cpSync(from, dir, { recursive: true });
  writeFileSync(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  return dir;
}

async function loadError(load: () => Promise<unknown>): Promise<Error> {
  try {
    await load();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the load to fail');
}

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('tokenizer ids checked against the config at load', () => {
  it('the fixtures config holds the ids the test assumes', () => {
    const text = (JSON.parse(readFileSync(join(CAPTIONING, 'config.json'), 'utf8')) as { text_config: Record<string, number> }).text_config;
    expect({ bos: text.bos_token_id, pad: text.pad_token_id, sep: text.sep_token_id }).toEqual({ bos: 97, pad: 0, sep: 3 });
  });

  it('loads a folder whose vocabulary matches the config', async () => {
    const dir = folder('ok', CAPTIONING, matchingVocab());
    const model = await BlipForConditionalGeneration.fromPretrained(dir);
    expect(model.tokenizer?.tokenToId('[DEC]')).toBe(97);
    model.dispose();
  });

  it('[DEC] at 10 vs bos_token_id 97: CONFIG_INVALID naming both ids and both files', async () => {
    const dir = folder('short', CAPTIONING, SHORT_VOCAB);
    const err = await loadError(() => BlipForConditionalGeneration.fromPretrained(dir));
    expect(isVlError(err, 'CONFIG_INVALID'), String(err)).toBe(true);
    const vocabFile = join(dir, 'vocab.txt');
    const configFile = join(dir, 'config.json');
    expect(err.message).toContain(`[DEC] is 10 in ${vocabFile} but text_config.bos_token_id is 97 in ${configFile}`);
    // [PAD] (0) and [SEP] (3) agree here, so they are not named.
    expect(err.message).not.toMatch(/\[(PAD|SEP)\] is/);
  });

  it('a different [SEP] and [PAD] are named too; the retrieval loader checks as well', async () => {
    const swapped = matchingVocab();
    [swapped[0], swapped[3]] = [swapped[3] as string, swapped[0] as string]; // [SEP] 0, [PAD] 3
    const dir = folder('swapped', RETRIEVAL, swapped);
    const err = await loadError(() => BlipForImageTextRetrieval.fromPretrained(dir));
    expect(isVlError(err, 'CONFIG_INVALID'), String(err)).toBe(true);
    expect(err.message).toContain(`[PAD] is 3 in ${join(dir, 'vocab.txt')} but text_config.pad_token_id is 0`);
    expect(err.message).toContain(`[SEP] is 0 in ${join(dir, 'vocab.txt')} but text_config.sep_token_id is 3`);
    expect(err.message).not.toContain('[DEC] is');
  });

  it('a tokenizer passed to fromPretrained is checked the same way', async () => {
    const dir = folder('option', CAPTIONING, matchingVocab());
    writeFileSync(join(tmp, 'short-vocab.txt'), `${SHORT_VOCAB.join('\n')}\n`);
    const tokenizer = await loadBertTokenizer(join(tmp, 'short-vocab.txt'), { addedTokens: BLIP_ADDED_TOKENS });
    const err = await loadError(() => BlipForConditionalGeneration.fromPretrained(dir, { tokenizer }));
    expect(err.message).toContain(`[DEC] is 10 in the tokenizer option but text_config.bos_token_id is 97 in ${join(dir, 'config.json')}`);
  });

  it('checkTokenizerIds: [CLS] stands in for a missing [DEC], as withTokenizerIds picks it', async () => {
    writeFileSync(join(tmp, 'plain-vocab.txt'), `${SHORT_VOCAB.join('\n')}\n`);
    const plain = await loadBertTokenizer(join(tmp, 'plain-vocab.txt'));
    const sources = { tokenizer: 'a', config: 'b' };
    expect(() => checkTokenizerIds(plain, { bosTokenId: 4, padTokenId: 0, sepTokenId: 3 }, sources)).not.toThrow();
    expect(() => checkTokenizerIds(plain, { bosTokenId: 5, padTokenId: 0, sepTokenId: 3 }, sources)).toThrow(
      '[DEC] is 4 in a but text_config.bos_token_id is 5 in b',
    );
  });
});
