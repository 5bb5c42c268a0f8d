// Token ids in open_clip's layout: `[sot, w…, eot, 0…]`, exactly `contextLength` long. open_clip's
// tokenizer (`tokenizer.py` `SimpleTokenizer.__call__`) truncates a long text to the context length and
// overwrites the last kept token with eot, so a too-long text is cut, never an error inside attention.
// The BPE vocabulary itself is not in this package: any tokenizer whose word ids lie in [1, sot) fits;
// `bertToOpenClipIds` maps a WordPiece encoding (core's BertTokenizer, as the synthetic data uses) into it.
import { VlError } from '@vl/core';

/** Special ids of open_clip's layout for a vocabulary of V: sot = V − 2, eot = V − 1, pad = 0. */
export function openClipSpecialIds(vocabSize: number): { sot: number; eot: number; pad: number } {
  return { sot: vocabSize - 2, eot: vocabSize - 1, pad: 0 };
}

/**
 * One row of ids (sot … eot, no padding) fitted to `contextLength` as open_clip's tokenizer does: longer
 * rows keep their first contextLength ids with the last one replaced by eot; shorter rows are padded with 0.
 */
export function fitText(ids: readonly number[], contextLength: number, eot: number): number[] {
  if (!Number.isInteger(contextLength) || contextLength < 2) {
    throw new VlError('INVALID_ARGUMENT', `context length must be ≥ 2, got ${contextLength}`, { subject: 'fitText' });
  }
  const out = ids.slice(0, contextLength);
  if (ids.length > contextLength) out[contextLength - 1] = eot;
  while (out.length < contextLength) out.push(0);
  return out;
}

/**
 * A WordPiece encoding without specials (`addSpecialTokens: false`) → open_clip's layout for a model
 * whose vocabulary is the WordPiece vocabulary + 2 (sot, eot appended at the end). Word ids are kept
 * (WordPiece never gives a word id 0, which is [PAD]).
 */
export function bertToOpenClipIds(wordIds: readonly number[], modelVocabSize: number, contextLength: number): number[] {
  const { sot, eot } = openClipSpecialIds(modelVocabSize);
  for (const id of wordIds) {
    if (id <= 0 || id >= sot) {
      throw new VlError('INVALID_ARGUMENT', `word id ${id} is outside [1, ${sot})`, {
        subject: 'bertToOpenClipIds',
        hint: 'the model vocabulary must be the tokenizer vocabulary + 2',
      });
    }
  }
  return fitText([sot, ...wordIds, eot], contextLength, eot);
}
