// `vl caption coca` and `vl eval coca --task captioning` on tiny saved models. The decoder is rigged so
// that its logits do not depend on the input (ln_final weight 0, bias e0, text_projection row 0 = the
// logits): greedy generation is then known by hand, including where min/max length force or forbid eot.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ciderD, corpusBleu, initRuntime } from '@vl/core';
import { runModelCli } from '@vl/core/cli';
import { loadBertTokenizer, writeSynthDataset } from '@vl/core/node';
import { captureLines } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captionPixels, decodeCaptions, generateOptions, openClipWordIds, readImages, wordPieceCaptionTokenizer } from '../caption.js';
import { saveOpenClip } from '../checkpoint.js';
import { cocaPreset } from '../config.js';
import { generateCoca } from '../generation.js';
import '../index.js';
import { CoCa } from '../model.js';

const tmp = mkdtempSync(join(tmpdir(), 'coca-caption-'));
const synth = join(tmp, 'synth');
// 12 WordPiece tokens → model vocabulary 14: sot 12, eot 13.
const VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'red', 'circle', 'on', 'white', 'background', '##s'];
const V = VOCAB.length + 2;
const [SOT, EOT, RED] = [12, 13, 6];

/** Input-independent decoder logits: every step scores the vocabulary with `logits`. */
function rig(model: CoCa, logits: Record<number, number>): void {
  const d = model.text_decoder;
  const D = d.lnFinal.weight.shape[0] as number;
  const vocab = model.vocabSize;
  tf.tidy(() => {
    d.lnFinal.weight.assign(tf.zeros([D]));
    d.lnFinal.bias?.assign(tf.tensor1d(Array.from({ length: D }, (_, i) => (i === 0 ? 1 : 0))));
    const p = new Float32Array(D * vocab);
    for (const [id, v] of Object.entries(logits)) p[Number(id)] = v;
    d.textProjection.assign(tf.tensor2d(p, [D, vocab]));
  });
}

async function saveModel(name: string, vocab: string[], logits?: Record<number, number>): Promise<string> {
  const model = new CoCa(cocaPreset('tiny', { vocabSize: vocab.length + 2, imageSize: 32 }), { seed: 4 });
  if (logits) rig(model, logits);
  const dir = join(tmp, name);
  await saveOpenClip(model, dir);
  writeFileSync(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  model.dispose();
  return dir;
}

let images: string[] = [];
let rigged = '';
let random = '';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  await writeSynthDataset({ out: synth, images: 6, seed: 2, imageSize: 32, captionsPerImage: 2, splits: [0.5, 0, 0.5] });
  images = readFileSync(join(synth, 'test.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => join(synth, (JSON.parse(l) as { image: string }).image));
  // eot scores 10, "red" 5: eot wins whenever it is allowed.
  rigged = await saveModel('rigged', VOCAB, { [EOT]: 10, [RED]: 5 });
  random = await saveModel('random', VOCAB);
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('ids → text (open_clip layout over WordPiece)', () => {
  it('drops sot, stops at eot or pad, joins ## pieces, skips BERT specials', async () => {
    const tok = wordPieceCaptionTokenizer(await loadBertTokenizer(join(rigged, 'vocab.txt')));
    expect(openClipWordIds([SOT, 5, 6, 7, 11, EOT, 0], V)).toEqual([5, 6, 7, 11]);
    expect(openClipWordIds([SOT, 6, 0, 7], V)).toEqual([6]);
    expect(openClipWordIds([SOT, 6, SOT, 7, EOT], V)).toEqual([6, 7]);
    expect(
      decodeCaptions(
        [
          [SOT, 5, 6, 7, 11, EOT, 0],
          [SOT, 2, 6, EOT],
          [SOT, EOT],
        ],
        tok,
        V,
      ),
    ).toEqual(['a red circles', 'red', '']);
  });

  it('maps the CLI flags onto open_clip generate kwargs', async () => {
    const tok = wordPieceCaptionTokenizer(await loadBertTokenizer(join(rigged, 'vocab.txt')));
    const model = new CoCa(cocaPreset('tiny', { vocabSize: V }), { seed: 1 });
    const greedy = generateOptions(model, tok, { numBeams: 1, maxLength: 7, minLength: 2 }, 2);
    expect(greedy).toMatchObject({ generationType: 'top_k', topK: 1, seqLen: 8, minSeqLen: 3, sotTokenId: SOT, eosTokenId: EOT });
    // The tiny context is 24: seqLen capped at 25, minSeqLen below it.
    expect(generateOptions(model, tok, { maxLength: 30, minLength: 40 }, 1)).toMatchObject({ seqLen: 25, minSeqLen: 24 });
    expect(generateOptions(model, tok, { numBeams: 1, prompt: 'a red' }, 2).text).toEqual([
      [SOT, 5, 6],
      [SOT, 5, 6],
    ]);
    expect(generateOptions(model, tok, { numBeams: 3 }, 1)).toMatchObject({ generationType: 'beam_search', numBeams: 3, numBeamGroups: 1 });
    expect(generateOptions(model, tok, { sample: true, topP: 0.5, numBeams: 3 }, 1)).toMatchObject({ generationType: 'top_p', topP: 0.5 });
    expect(() => generateOptions(model, tok, { numBeams: 3, prompt: 'a' }, 1)).toThrow(/ignores prompts/);
    model.dispose();
  });
});

describe('vl caption coca', () => {
  it('prints image<TAB>caption; greedy ids known by hand from the rigged logits', async () => {
    const run = async (...flags: string[]) => {
      const c = captureLines();
      const code = await runModelCli(
        'coca',
        ['caption', '--checkpoint', rigged, ...images.slice(0, 2), '--backend', 'cpu', ...flags],
        c.io,
      );
      expect(code, c.lines.join('\n')).toBe(0);
      return c.lines;
    };
    // eot allowed at once → empty caption.
    expect(await run('--beams', '1')).toEqual(images.slice(0, 2).map((i) => `${i}\t`));
    // eot forbidden until 3 words (minSeqLen 4 with sot) → "red red red".
    expect(await run('--beams', '1', '--min-length', '3')).toEqual(images.slice(0, 2).map((i) => `${i}\tred red red`));
    // seqLen 4: [sot, red, red] gets the forced eot.
    expect(await run('--beams', '1', '--min-length', '10', '--max-length', '3')).toEqual(images.slice(0, 2).map((i) => `${i}\tred red`));
    // The printed text re-encodes to the generated word ids.
    const tok = await loadBertTokenizer(join(rigged, 'vocab.txt'));
    expect(tok.encode('red red red', { addSpecialTokens: false }).ids).toEqual([RED, RED, RED]);
  }, 60_000);

  it('a random tiny model: the CLI prints the decoded ids of generateCoca (beam search), no tensor leak', async () => {
    const c = captureLines();
    const code = await runModelCli(
      'coca',
      ['caption', '--checkpoint', random, ...images.slice(0, 2), '--beams', '2', '--max-length', '6', '--backend', 'cpu'],
      c.io,
    );
    expect(code, c.lines.join('\n')).toBe(0);
    const { loadCoca } = await import('../checkpoint.js');
    const model = await loadCoca(random);
    const bert = await loadBertTokenizer(join(random, 'vocab.txt'));
    const tok = wordPieceCaptionTokenizer(bert);
    const pixels = await readImages(images.slice(0, 2), 32);
    const ids = await generateCoca(model, pixels, {
      generationType: 'beam_search',
      numBeams: 2,
      numBeamGroups: 1,
      seqLen: 7,
      minSeqLen: 1,
      sotTokenId: SOT,
      eosTokenId: EOT,
      padTokenId: 0,
    });
    const expected = decodeCaptions(ids, tok, V);
    expect(c.lines).toEqual(images.slice(0, 2).map((im, i) => `${im}\t${expected[i]}`));
    // Every printed caption maps back to its word ids when the ids hold no BERT special or ## piece.
    ids.forEach((row, i) => {
      const words = openClipWordIds(row, V);
      if (words.every((w) => w >= 5 && !VOCAB[w]?.startsWith('##'))) expect(tok.encode(expected[i] as string)).toEqual(words);
    });
    const before = tf.memory().numTensors;
    await captionPixels(model, tok, pixels, { numBeams: 2, maxLength: 6 });
    await captionPixels(model, tok, pixels, { numBeams: 1, maxLength: 6 });
    expect(tf.memory().numTensors).toBe(before);
    pixels.dispose();
    model.dispose();
  }, 60_000);

  it('refuses a folder whose vocab.txt does not fit the model', async () => {
    const c = captureLines();
    writeFileSync(join(tmp, 'random', 'vocab.txt'), `${VOCAB.slice(0, 10).join('\n')}\n`);
    const code = await runModelCli('coca', ['caption', '--checkpoint', random, images[0] as string, '--backend', 'cpu'], c.io);
    expect(code).not.toBe(0);
    expect(c.lines.join('\n')).toMatch(/vocab\.txt has 10 tokens but the model 14/);
    writeFileSync(join(tmp, 'random', 'vocab.txt'), `${VOCAB.join('\n')}\n`);
  });
});

describe('vl eval coca --task captioning', () => {
  it('CIDEr-D and BLEU-4 of the generated captions against the references, report JSON', async () => {
    const synthVocab = readFileSync(join(synth, 'vocab.txt'), 'utf8').trim().split('\n');
    const word = synthVocab.findIndex((t) => /^[a-z]+$/.test(t));
    const eot = synthVocab.length + 1;
    // The word wins every step; eot comes only when forced at seqLen − 1.
    const dir = await saveModel('rigged-synth', synthVocab, { [eot]: 5, [word]: 10 });
    const out = join(tmp, 'eval.json');
    const c = captureLines();
    const test = join(synth, 'test.jsonl');
    const code = await runModelCli(
      'coca',
      [
        'eval',
        '--checkpoint',
        dir,
        '--data',
        test,
        '--task',
        'captioning',
        '--beams',
        '1',
        '--max-length',
        '3',
        '--out',
        out,
        '--backend',
        'cpu',
      ],
      c.io,
    );
    expect(code, c.lines.join('\n')).toBe(0);
    expect(c.lines.join('\n')).toMatch(/captioning \(3 images, greedy\): CIDEr-D \d+\.\d{3} BLEU-4/);
    const report = JSON.parse(readFileSync(out, 'utf8')) as {
      captioning: { cider: number; bleu4: number; captions: { caption: string; references: string[] }[] };
    };
    const refs = readFileSync(test, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { captions: string[] }).captions);
    const caption = `${synthVocab[word]} ${synthVocab[word]}`;
    expect(report.captioning.captions.map((x) => x.caption)).toEqual(refs.map(() => caption));
    expect(report.captioning.captions.map((x) => x.references)).toEqual(refs);
    const hyps = refs.map(() => caption);
    expect(report.captioning.cider).toBeCloseTo(ciderD(hyps, refs).score, 10);
    expect(report.captioning.bleu4).toBeCloseTo(corpusBleu(hyps, refs).bleu[3] as number, 10);
  }, 60_000);
});
