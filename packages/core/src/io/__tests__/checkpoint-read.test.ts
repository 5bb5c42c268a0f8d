// readCheckpoint, the one entry point for weights in any format: folders, sharded safetensors (read lazily),
// and the errors for paths that hold no checkpoint or an ambiguous one.
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../node/checkpoint-file.js';
import { sniffCheckpoint } from '../checkpoint-format.js';
import { writeSafetensorsFile } from '../../node/safetensors-file.js';
import type { HostTensor } from '../safetensors.js';
import { openShardedSafetensors } from '../../node/safetensors-sharded.js';
import { catchVlErrorAsync, makeTempDir, sameBytes } from './helpers.js';
import { TORCH_FIXTURES } from './torch-helpers.js';

function tensor(values: number[], shape: number[], fileDtype: HostTensor['fileDtype'] = 'F32'): HostTensor {
  return { dtype: 'float32', shape, data: Float32Array.from(values), fileDtype };
}

const ALL: Record<string, HostTensor> = {
  'encoder.weight': tensor([1, 2, 3, 4, 5, 6], [2, 3]),
  'encoder.bias': tensor([0.5, -0.5], [2], 'F16'),
  'decoder.weight': tensor([7, 8], [1, 2], 'BF16'),
  'decoder.scale': tensor([0.07], []),
};

describe('sharded safetensors (model.safetensors.index.json)', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  let index: string;
  beforeAll(async () => {
    temp = await makeTempDir('sharded');
    const shards = {
      'model-00001-of-00002.safetensors': ['encoder.weight', 'encoder.bias'],
      'model-00002-of-00002.safetensors': ['decoder.weight', 'decoder.scale'],
    };
    const weightMap: Record<string, string> = {};
    for (const [file, names] of Object.entries(shards)) {
      await writeSafetensorsFile(join(temp.dir, file), Object.fromEntries(names.map((n) => [n, ALL[n]!])), { format: 'pt' });
      for (const n of names) weightMap[n] = file;
    }
    index = join(temp.dir, 'model.safetensors.index.json');
    await writeFile(index, JSON.stringify({ metadata: { total_size: 40 }, weight_map: weightMap }));
  });
  afterAll(async () => {
    await temp.cleanup();
  });

  it('reads every tensor, in the index order, from the folder or the index file', async () => {
    for (const path of [temp.dir, index]) {
      const { tensors, report } = await readCheckpoint(path);
      expect(report.format).toBe('safetensors-sharded');
      expect([...tensors.keys()]).toEqual(Object.keys(ALL));
      for (const [name, want] of Object.entries(ALL)) {
        expect(tensors.get(name)!.shape).toEqual(want.shape);
        expect(sameBytes(tensors.get(name)!.data, want.data), name).toBe(true);
      }
    }
  });

  it('opens a shard only when one of its tensors is read', async () => {
    const lazy = join(temp.dir, 'lazy');
    await mkdir(lazy);
    await copyFile(join(temp.dir, 'model-00001-of-00002.safetensors'), join(lazy, 'model-00001-of-00002.safetensors'));
    await copyFile(index, join(lazy, 'model.safetensors.index.json'));
    // Shard 2 is absent: reading shard 1's tensors works; asking for shard 2's names the missing file.
    const sharded = await openShardedSafetensors(join(lazy, 'model.safetensors.index.json'));
    try {
      expect(sharded.names).toEqual(Object.keys(ALL));
      const part = await sharded.read(['encoder.bias']);
      expect(Array.from(part.get('encoder.bias')!.data)).toEqual([0.5, -0.5]);
      const err = await catchVlErrorAsync(() => sharded.read(['decoder.scale']), 'CHECKPOINT_INVALID');
      expect(err.subject).toBe(join(lazy, 'model-00002-of-00002.safetensors'));
    } finally {
      await sharded.close();
    }
    const filtered = await readCheckpoint(lazy, { filter: (n) => n.startsWith('encoder.') });
    expect([...filtered.tensors.keys()]).toEqual(['encoder.weight', 'encoder.bias']);
    await rm(lazy, { recursive: true });
  });

  it('an index naming a tensor its shard lacks is CHECKPOINT_INVALID naming the shard', async () => {
    const bad = join(temp.dir, 'bad.index.json');
    await writeFile(bad, JSON.stringify({ weight_map: { 'encoder.weight': 'model-00002-of-00002.safetensors' } }));
    const err = await catchVlErrorAsync(() => readCheckpoint(bad), 'CHECKPOINT_INVALID');
    expect(err.subject).toBe(join(temp.dir, 'model-00002-of-00002.safetensors'));
    expect(err.message).toContain('no tensor "encoder.weight"');
  });
});

describe('readCheckpoint paths', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    temp = await makeTempDir('read-ckpt');
  });
  afterAll(async () => {
    await temp.cleanup();
  });

  it('a folder with one weights file of any name reads it; with several it asks which', async () => {
    const one = join(temp.dir, 'one');
    await mkdir(one);
    await copyFile(join(TORCH_FIXTURES, 'lightning.ckpt'), join(one, 'epoch=3-step=120.ckpt'));
    expect((await readCheckpoint(one)).report.container).toBe('state_dict');
    await copyFile(join(TORCH_FIXTURES, 'views.pth'), join(one, 'other.pth'));
    const err = await catchVlErrorAsync(() => readCheckpoint(one), 'CHECKPOINT_INVALID');
    expect(err.message).toContain('2 possible checkpoints');
  });

  it('a missing path, an empty folder and a file of another kind are CHECKPOINT_INVALID', async () => {
    await catchVlErrorAsync(() => readCheckpoint(join(temp.dir, 'nothing-here')), 'CHECKPOINT_INVALID');
    const empty = join(temp.dir, 'empty');
    await mkdir(empty);
    expect((await catchVlErrorAsync(() => readCheckpoint(empty), 'CHECKPOINT_INVALID')).message).toContain('no checkpoint file');
    const text = join(temp.dir, 'notes.bin');
    await writeFile(text, 'hello, not weights');
    expect((await catchVlErrorAsync(() => readCheckpoint(text), 'CHECKPOINT_INVALID')).subject).toBe(text);
  });

  it('a safetensors file whose header length starts with the byte 0x80 (a pickle PROTO) is read as safetensors', async () => {
    // Grow one tensor name until the JSON header's length is ≡ 0x80 (mod 256), as a saved BEiT-3 retrieval model's is.
    for (let pad = 0; pad < 256; pad++) {
      const file = join(temp.dir, `proto-like-${pad}.safetensors`);
      await writeSafetensorsFile(file, { [`w${'x'.repeat(pad)}`]: tensor([1, 2], [2]) });
      const bytes = new Uint8Array(await readFile(file));
      if (bytes[0] !== 0x80) continue;
      expect(sniffCheckpoint(bytes.subarray(0, 512))).toBe('safetensors');
      expect([...(await readCheckpoint(file)).tensors.keys()]).toEqual([`w${'x'.repeat(pad)}`]);
      return;
    }
    throw new Error('no header length ≡ 0x80 (mod 256) was produced');
  });

  it('a key for a safetensors file is an INVALID_ARGUMENT (it has no containers)', async () => {
    const file = join(temp.dir, 'w.safetensors');
    await writeSafetensorsFile(file, { w: tensor([1], [1]) });
    expect((await readCheckpoint(file)).tensors.size).toBe(1);
    await catchVlErrorAsync(() => readCheckpoint(file, { key: 'model' }), 'INVALID_ARGUMENT');
  });
});
