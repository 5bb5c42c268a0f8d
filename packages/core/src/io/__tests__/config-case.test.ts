// camelizeKeys / snakifyKeys: exact round trips of config.json keys, arrays, opaque maps, and refusals.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isVlError } from '../../errors.js';
import { camelizeKeys, camelKey, snakeKey, snakifyKeys } from '../config-case.js';
import { validateConfig } from '../json-config.js';

/** The fields of HF_CONFIG the tests read after camelizing. */
interface CamelHfConfig {
  _nameOrPath: string;
  transformersVersion: string;
  textConfig: { layerNormEps: number; beginSuppressTokens: number[][]; id2label: Record<string, string>; label2id: Record<string, number> };
  visionConfig: { listOfDicts: unknown[]; layer_2Norm: boolean };
}

/** A Hugging Face BLIP config.json, shortened, with the keys that usually break recasing. */
const HF_CONFIG = {
  _commit_hash: null,
  _name_or_path: 'Salesforce/blip-image-captioning-base',
  architectures: ['BlipForConditionalGeneration'],
  initializer_factor: 1.0,
  model_type: 'blip',
  projection_dim: 512,
  text_config: {
    vocab_size: 30524,
    layer_norm_eps: 1e-12,
    bad_words_ids: null,
    id2label: { '0': 'LABEL_0', '1': 'LABEL_1' },
    label2id: { LABEL_0: 0, LABEL_1: 1, some_label: 2 },
    begin_suppress_tokens: [[1, 2], [3]],
  },
  transformers_version: '4.30.0.dev0',
  vision_config: { hidden_size: 768, layer_2_norm: true, x3d_depth: 4, list_of_dicts: [{ inner_key: 1 }, { id2label: { a_b: 'c' } }] },
};

describe('camelKey / snakeKey', () => {
  it('maps snake_case to camelCase and back, leading underscores and digits included', () => {
    const cases: [string, string][] = [
      ['hidden_size', 'hiddenSize'],
      ['layer_norm_eps', 'layerNormEps'],
      ['vocab_size', 'vocabSize'],
      ['_name_or_path', '_nameOrPath'],
      ['__private_key', '__privateKey'],
      ['layer_2_norm', 'layer_2Norm'],
      ['id2label', 'id2label'],
      ['x3d_depth', 'x3dDepth'],
      ['model_type', 'modelType'],
      ['temp', 'temp'],
    ];
    for (const [snake, camel] of cases) {
      expect(camelKey(snake)).toBe(camel);
      expect(snakeKey(camel)).toBe(snake);
    }
  });

  it('leaves keys that are neither as they are', () => {
    for (const key of ['LABEL_0', '0', '', 'a__b', 'trailing_', '__proto__', 'A_b']) {
      expect(camelKey(key)).toBe(key);
      expect(snakeKey(key)).toBe(key);
    }
  });
});

describe('camelizeKeys / snakifyKeys', () => {
  it('camelizes deeply, through arrays, and copies opaque label maps as they are', () => {
    const cfg = camelizeKeys<CamelHfConfig>(HF_CONFIG);
    expect(cfg._nameOrPath).toBe('Salesforce/blip-image-captioning-base');
    expect(cfg.transformersVersion).toBe('4.30.0.dev0');
    expect(cfg.textConfig.layerNormEps).toBe(1e-12);
    expect(cfg.textConfig.beginSuppressTokens).toEqual([[1, 2], [3]]);
    expect(cfg.textConfig.label2id).toEqual({ LABEL_0: 0, LABEL_1: 1, some_label: 2 });
    expect(cfg.visionConfig.listOfDicts).toEqual([{ innerKey: 1 }, { id2label: { a_b: 'c' } }]);
    expect(cfg.visionConfig.layer_2Norm).toBe(true);
    expect(Object.keys(cfg)).not.toContain('text_config');
  });

  it('round-trips a config.json exactly (key order too), without sharing objects with the input', () => {
    const camel = camelizeKeys<CamelHfConfig>(HF_CONFIG);
    const back = snakifyKeys(camel);
    expect(JSON.stringify(back)).toBe(JSON.stringify(HF_CONFIG));
    camel.textConfig.id2label['0'] = 'changed';
    expect(HF_CONFIG.text_config.id2label['0']).toBe('LABEL_0');
  });

  it('keeps a __proto__ key as data, as JSON.parse does', () => {
    const parsed = JSON.parse('{"__proto__": {"polluted_key": 1}, "hidden_size": 2}') as unknown;
    const camel = camelizeKeys<Record<string, unknown>>(parsed);
    expect(Object.getPrototypeOf(camel)).toBe(Object.prototype);
    expect(Object.keys(camel)).toEqual(['__proto__', 'hiddenSize']);
    expect(({} as Record<string, unknown>).pollutedKey).toBeUndefined();
  });

  it('refuses a camelCase key in a config.json, which a save would rename', () => {
    try {
      camelizeKeys({ text_config: { hiddenSize: 3 } }, { subject: 'cfg.json' });
      expect.unreachable();
    } catch (e) {
      expect(isVlError(e) && e.code).toBe('CONFIG_INVALID');
      expect((e as Error).message).toContain('$.text_config.hiddenSize');
      expect((e as Error).message).toContain('cfg.json');
    }
  });

  it('refuses two keys that collide', () => {
    expect(() => snakifyKeys({ hiddenSize: 1, hidden_size: 2 })).toThrow(/cannot be converted|both map/);
  });

  it('reports schema errors of a camelized file under the file’s snake_case paths', () => {
    const schema = z.object({ textConfig: z.object({ hiddenSize: z.number() }) });
    expect(() => validateConfig(camelizeKeys({ text_config: { hidden_size: 'x' } }), schema, 'c.json', snakeKey)).toThrow(
      /\$\.text_config\.hidden_size/,
    );
  });
});
