// Module tree: PyTorch dotted keys, strict/non-strict loading, modes, freezing, disposal.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { Dropout, Embedding, LayerNorm, Linear } from '../layers.js';
import { compilePattern, Module } from '../module.js';

class ToyLayer extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(rng: Rng) {
    super();
    this.dense = this.registerModule('dense', new Linear(4, 4, rng));
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(4, 1e-12));
    this.dropout = this.registerModule('dropout', new Dropout(0.1));
  }
}

class ToyEncoder extends Module {
  readonly layer;
  readonly positionIds: tf.Tensor;
  constructor(rng: Rng, layers = 2) {
    super();
    this.registerModule('embeddings', new Embedding(10, 4, rng));
    this.layer = this.registerModuleList(
      'layer',
      Array.from({ length: layers }, () => new ToyLayer(rng)),
    );
    this.positionIds = this.registerBuffer(
      'position_ids',
      tf.tidy(() => tf.range(0, 8, 1, 'int32').reshape([1, 8])),
      { storedDtype: 'I64' },
    );
    this.registerBuffer('scratch', tf.zeros([2]), { persistent: false });
  }
}

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('Module state dict', () => {
  it('uses PyTorch dotted keys in registration order, with persistent buffers only', () => {
    const m = new ToyEncoder(new Rng(0));
    expect([...m.stateDict().keys()]).toEqual([
      'embeddings.weight',
      'layer.0.dense.weight',
      'layer.0.dense.bias',
      'layer.0.LayerNorm.weight',
      'layer.0.LayerNorm.bias',
      'layer.1.dense.weight',
      'layer.1.dense.bias',
      'layer.1.LayerNorm.weight',
      'layer.1.LayerNorm.bias',
      'position_ids',
    ]);
    expect(m.stateDict().get('layer.1.dense.weight')?.shape).toEqual([4, 4]);
    expect([...m.storedDtypes()]).toEqual([['position_ids', 'I64']]);
    expect(m.numParameters()).toBe(10 * 4 + 2 * (16 + 4 + 4 + 4));
    m.dispose();
  });

  it('round-trips a state dict into a differently initialised twin', () => {
    const a = new ToyEncoder(new Rng(1));
    const b = new ToyEncoder(new Rng(2));
    const before = b.stateDict().get('layer.0.dense.weight')!.dataSync().slice();
    const report = b.loadStateDict(a.stateDict());
    expect(report).toMatchObject({ missing: [], unexpected: [], mismatched: [], loaded: 10 });
    for (const [k, t] of a.stateDict()) expect(b.stateDict().get(k)!.dataSync()).toEqual(t.dataSync());
    expect(b.stateDict().get('layer.0.dense.weight')!.dataSync()).not.toEqual(before);
    a.dispose();
    b.dispose();
  });

  it('strict load lists every missing, unexpected and mis-shaped key at once and changes nothing', () => {
    const m = new ToyEncoder(new Rng(3));
    const original = m.stateDict().get('embeddings.weight')!.dataSync().slice();
    const dict = new Map<string, tf.Tensor>();
    for (const [k, t] of m.stateDict()) dict.set(k, tf.clone(t));
    dict.get('embeddings.weight')!.dispose();
    dict.set('embeddings.weight', tf.ones([10, 4]));
    dict.get('layer.1.dense.bias')!.dispose();
    dict.delete('layer.1.dense.bias');
    dict.get('layer.0.dense.weight')!.dispose();
    dict.set('layer.0.dense.weight', tf.zeros([4, 5]));
    dict.set('layer.2.dense.weight', tf.zeros([4, 4]));
    let err: unknown;
    try {
      m.loadStateDict(dict, { source: 'toy.safetensors' });
    } catch (e) {
      err = e;
    }
    expect(isVlError(err, 'STATE_DICT_MISMATCH')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain('toy.safetensors');
    expect(msg).toContain('1 missing: layer.1.dense.bias');
    expect(msg).toContain('1 unexpected: layer.2.dense.weight');
    expect(msg).toContain('layer.0.dense.weight expected [4,4] got [4,5]');
    expect(m.stateDict().get('embeddings.weight')!.dataSync()).toEqual(original);

    const report = m.loadStateDict(dict, { strict: false });
    expect(report.loaded).toBe(8);
    expect(m.stateDict().get('embeddings.weight')!.dataSync()).toEqual(new Float32Array(40).fill(1));
    for (const t of dict.values()) t.dispose();
    m.dispose();
  });

  it('loads host data (int64 buffers arrive as int32) and honours allowMissing', () => {
    const m = new ToyEncoder(new Rng(4), 1);
    const dict: Record<string, { shape: number[]; dtype: 'float32' | 'int32'; data: Float32Array | Int32Array }> = {};
    for (const [k, t] of m.stateDict()) {
      dict[k] = { shape: t.shape, dtype: t.dtype as 'float32' | 'int32', data: t.dataSync() as Float32Array };
    }
    dict['position_ids'] = { shape: [1, 8], dtype: 'int32', data: Int32Array.from([7, 6, 5, 4, 3, 2, 1, 0]) };
    delete dict['layer.0.LayerNorm.bias'];
    m.loadStateDict(dict, { allowMissing: (k) => k.endsWith('LayerNorm.bias') });
    expect(Array.from(m.stateDict().get('position_ids')!.dataSync())).toEqual([7, 6, 5, 4, 3, 2, 1, 0]);
    m.dispose();
  });

  it('rejects duplicate and dotted names', () => {
    class Bad extends Module {
      constructor(name: string, twice: boolean) {
        super();
        this.registerModule(name, new LayerNorm(2));
        if (twice) this.registerModule(name, new LayerNorm(2));
      }
    }
    expect(() => new Bad('a.b', false)).toThrow(/invalid name/);
    expect(() => new Bad('norm', true)).toThrow(/registered twice/);
  });
});

describe('modes, freezing and disposal', () => {
  it('train()/eval() reach every module', () => {
    const m = new ToyEncoder(new Rng(5));
    m.eval();
    expect(m.namedModules().every(([, x]) => !x.training)).toBe(true);
    m.train();
    expect(m.layer.at(1).dropout.training).toBe(true);
    m.dispose();
  });

  it('freezes and unfreezes by glob or RegExp', () => {
    const m = new ToyEncoder(new Rng(6));
    const frozen = m.freeze('layer.*.LayerNorm.*');
    expect(frozen).toEqual(['layer.0.LayerNorm.weight', 'layer.0.LayerNorm.bias', 'layer.1.LayerNorm.weight', 'layer.1.LayerNorm.bias']);
    expect(m.numParameters({ trainableOnly: true })).toBe(m.numParameters() - 16);
    expect(m.trainableParameters()).toHaveLength(5);
    m.freeze(/^embeddings\./);
    expect(m.trainableParameters()).toHaveLength(4);
    m.unfreeze('**');
    expect(m.trainableParameters()).toHaveLength(9);
    expect(compilePattern('a.*.b').test('a.1.2.b')).toBe(false);
    expect(compilePattern('a.**.b').test('a.1.2.b')).toBe(true);
    m.dispose();
  });

  it('dispose() frees every tensor it owns', () => {
    const before = tf.memory().numTensors;
    const m = new ToyEncoder(new Rng(7));
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
