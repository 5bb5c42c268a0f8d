// Reading without copies: a fresh per-tensor buffer becomes the tensor's memory (adoptTensor), a view into a
// shared buffer is still copied, and deferred tensors (readCheckpoint's deferData) read their bytes on use.
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adoptTensor,
  isDeferredHostTensor,
  parseSafetensorsHeader,
  readSafetensors,
  writeSafetensors,
  type HostTensor,
} from '../safetensors.js';
import { readCheckpoint } from '../../node/checkpoint-file.js';
import { catchVlError, makeTempDir, sameBytes } from './helpers.js';

// Bit patterns a float round trip could disturb: -0, the smallest subnormal, the largest float, a quiet NaN with payload.
const WEIGHT_BITS = Uint32Array.from([0x3fc00000, 0x80000000, 0x00000001, 0x7f7fffff, 0x7fc01234, 0xbf800000]);
const weight: HostTensor = { dtype: 'float32', shape: [2, 3], data: new Float32Array(WEIGHT_BITS.buffer.slice(0)), fileDtype: 'F32' };
const counts: HostTensor = { dtype: 'int32', shape: [3], data: Int32Array.from([-7, 0, 2147483647]), fileDtype: 'I32' };
const ids: HostTensor = { dtype: 'int32', shape: [3], data: Int32Array.from([0, 1, 2]), fileDtype: 'I64' };

const bits = (t: HostTensor): Uint32Array => new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);

describe('adoptTensor', () => {
  const file = writeSafetensors({ weight, counts });
  const dataStart = 8 + Number(new DataView(file.buffer).getBigUint64(0, true));

  it('takes a fresh buffer of exactly one F32/I32 tensor as its memory, without copying', () => {
    const entry = { dtype: 'F32' as const, shape: [2, 3], dataOffsets: [0, 24] as [number, number] };
    const bytes = new Uint8Array(WEIGHT_BITS.buffer.slice(0));
    const t = adoptTensor('weight', entry, bytes);
    expect(t.data.buffer).toBe(bytes.buffer);
    expect(t).toMatchObject({ dtype: 'float32', shape: [2, 3], fileDtype: 'F32' });
    expect(sameBytes(bits(t), WEIGHT_BITS)).toBe(true);
  });

  it('copies a view into a larger buffer, so the tensor does not alias it', () => {
    const header = readSafetensors(file).tensors; // a whole file in memory: every tensor is such a view
    const entry = parseSafetensorsHeader(file.subarray(8, dataStart), file.length - dataStart).entries.get('counts')!;
    const [b, e] = entry.dataOffsets;
    const view = file.subarray(dataStart + b, dataStart + e);
    const t = adoptTensor('counts', entry, view);
    expect(t.data.buffer).not.toBe(file.buffer);
    expect([...t.data]).toEqual([-7, 0, 2147483647]);
    view[0] = 0; // changing the file's bytes changes neither tensor
    expect([...t.data]).toEqual([-7, 0, 2147483647]);
    expect([...header.get('counts')!.data]).toEqual([-7, 0, 2147483647]);
    expect(header.get('weight')!.data.buffer).not.toBe(file.buffer);
  });

  it('decodes other dtypes as decodeTensor does (I64 to int32, range-checked)', () => {
    const wide = new Uint8Array(new BigInt64Array([5n, -1n]).buffer);
    const t = adoptTensor('ids', { dtype: 'I64', shape: [2], dataOffsets: [0, 16] }, wide);
    expect(t).toEqual({ dtype: 'int32', shape: [2], data: Int32Array.from([5, -1]), fileDtype: 'I64' });
    const big = new Uint8Array(new BigInt64Array([1n << 40n]).buffer);
    expect(catchVlError(() => adoptTensor('ids', { dtype: 'I64', shape: [1], dataOffsets: [0, 8] }, big)).message).toMatch(/int32 range/);
  });
});

describe('readCheckpoint: own buffers, deferred data', () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  let path: string;
  beforeAll(async () => {
    tmp = await makeTempDir('adopt');
    path = join(tmp.dir, 'model.safetensors');
    await writeFile(path, writeSafetensors({ weight, counts, 'embeddings.position_ids': ids }));
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('reads each F32/I32 tensor into a buffer of its own (no second copy), bit-exact', async () => {
    const { tensors } = await readCheckpoint(path);
    const w = tensors.get('weight')!;
    expect(w.data.byteOffset).toBe(0);
    expect(w.data.buffer.byteLength).toBe(24);
    expect(sameBytes(bits(w), WEIGHT_BITS)).toBe(true);
    expect(tensors.get('counts')).toEqual(counts);
    expect(tensors.get('embeddings.position_ids')).toEqual(ids);
    expect(isDeferredHostTensor(w)).toBe(false);
  });

  it('deferData: F32/I32 are read on use (data, or readInto a destination), others at once; spread copies keep the values', async () => {
    const { tensors } = await readCheckpoint(path, { deferData: true });
    const w = tensors.get('weight')!;
    const c = tensors.get('counts')!;
    expect(isDeferredHostTensor(w) && isDeferredHostTensor(c)).toBe(true);
    expect(isDeferredHostTensor(tensors.get('embeddings.position_ids'))).toBe(false); // I64 needs decoding: read now
    const dst = new Uint8Array(24);
    if (!isDeferredHostTensor(w)) throw new Error('unreachable');
    w.readInto(dst);
    expect(sameBytes(new Uint32Array(dst.buffer), WEIGHT_BITS)).toBe(true);
    expect(() => w.readInto(new Uint8Array(20))).toThrow(/24 bytes/);
    expect({ ...c }).toEqual(counts); // the spread reads `data`; readInto is not copied
    expect(Object.keys(c)).toEqual(['dtype', 'shape', 'fileDtype', 'data']);
    expect(sameBytes(bits(w), WEIGHT_BITS)).toBe(true);
    expect(w.data).toBe(w.data); // read once, then kept
  });

  it('deferData reaches the shards of a sharded checkpoint', async () => {
    await writeFile(join(tmp.dir, 'a.safetensors'), writeSafetensors({ weight }));
    await writeFile(join(tmp.dir, 'b.safetensors'), writeSafetensors({ counts, 'embeddings.position_ids': ids }));
    const index = join(tmp.dir, 'model.safetensors.index.json');
    const weightMap = { weight: 'a.safetensors', counts: 'b.safetensors', 'embeddings.position_ids': 'b.safetensors' };
    await writeFile(index, JSON.stringify({ weight_map: weightMap }));
    const { tensors } = await readCheckpoint(index, { deferData: true });
    expect([...tensors.keys()]).toEqual(['weight', 'counts', 'embeddings.position_ids']);
    expect(isDeferredHostTensor(tensors.get('weight')) && isDeferredHostTensor(tensors.get('counts'))).toBe(true);
    expect(sameBytes(bits(tensors.get('weight')!), WEIGHT_BITS)).toBe(true);
    expect({ ...tensors.get('counts')! }).toEqual(counts);
    expect(tensors.get('embeddings.position_ids')).toEqual(ids);
  });

  it('deferData: a file replaced after its header was read is an error naming it', async () => {
    const other = join(tmp.dir, 'replaced.safetensors');
    await writeFile(other, writeSafetensors({ weight }));
    const { tensors } = await readCheckpoint(other, { deferData: true });
    await writeFile(other, writeSafetensors({ weight: { ...weight, data: new Float32Array(6) } }));
    await utimes(other, new Date(), new Date(Date.now() + 5000));
    const err = catchVlError(() => tensors.get('weight')!.data, 'CHECKPOINT_INVALID');
    expect(err.message).toMatch(/changed after its header was read/);
    expect(err.subject).toBe(other);
  });
});
