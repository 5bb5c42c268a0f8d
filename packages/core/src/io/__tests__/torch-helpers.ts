// Test helpers for the torch.save reader: a minimal zip writer (node:zlib for deflate and CRC), a pickle
// assembler for hand-made (hostile) pickles, and the JSON form of expected tensors the generator writes.
import { crc32 as zlibCrc32, deflateRawSync } from 'node:zlib';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { HostTensor } from '../safetensors.js';
import { FIXTURES_DIR } from './helpers.js';

export const TORCH_FIXTURES = join(FIXTURES_DIR, 'torch-pickle');

/** The shared reference folders that hold a pytorch_model.pth next to its model.safetensors. */
export const PTH_FIXTURE_FOLDERS = [
  'blip-official/blipofficial-decoder-seed0',
  'blip-official/blipofficial-retrieval-seed0',
  'blip-official/blipofficial-pretrain-seed0',
  'vlmo-official/vlmo-seed0',
  'vlmo-official/vlmo-plus-seed4',
  'beit3-official/beit3-captioning-seed0',
  'beit3-official/beit3-classification-seed0',
  'beit3-official/beit3-nlvr2-seed0',
  'beit3-official/beit3-retrieval-seed0',
  'beit3-official/beit3-vqa-seed0',
  'coca-openclip/coca-seed0',
  'coca-openclip/clip-seed0',
] as const;

export interface ZipInput {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
  /** Declared uncompressed size, when a test lies about it. */
  declaredSize?: number;
}

/** A zip archive (no data descriptors, no zip64) from entries, written independently of the reader under test. */
export function buildZip(entries: readonly ZipInput[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const body = e.deflate ? new Uint8Array(deflateRawSync(e.data)) : e.data;
    const crc = zlibCrc32(e.data) >>> 0;
    const size = e.declaredSize ?? e.data.length;
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, e.deflate ? 8 : 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, size, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const cd = new Uint8Array(46 + name.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, e.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, size, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    cd.set(name, 46);
    parts.push(local, body);
    central.push(cd);
    offset += local.length + body.length;
  }
  const cdSize = central.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  return concat([...parts, ...central, end]);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A pickle assembler (protocol 2 opcodes)

export class PickleWriter {
  private readonly bytes: number[] = [0x80, 2];
  op(...codes: number[]): this {
    this.bytes.push(...codes);
    return this;
  }
  raw(text: string): this {
    for (const c of new TextEncoder().encode(text)) this.bytes.push(c);
    return this;
  }
  global(module: string, name: string): this {
    return this.op(0x63).raw(`${module}\n${name}\n`);
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.op(0x58, b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24);
    for (const c of b) this.bytes.push(c);
    return this;
  }
  /** BININT for int32 values, LONG1 for the rest (little-endian two's complement). */
  int(n: number | bigint): this {
    const v = BigInt(n);
    if (v >= -(2n ** 31n) && v < 2n ** 31n) {
      const x = Number(v) | 0;
      return this.op(0x4a, x & 0xff, (x >> 8) & 0xff, (x >> 16) & 0xff, (x >>> 24) & 0xff);
    }
    const out: number[] = [];
    let r = v;
    while (r !== 0n && r !== -1n) {
      out.push(Number(r & 0xffn));
      r >>= 8n;
    }
    if ((out[out.length - 1]! & 0x80) !== (v < 0n ? 0x80 : 0)) out.push(v < 0n ? 0xff : 0);
    return this.op(0x8a, out.length, ...out);
  }
  mark(): this {
    return this.op(0x28);
  }
  tuple(): this {
    return this.op(0x74);
  }
  reduce(): this {
    return this.op(0x52);
  }
  stop(): Uint8Array {
    this.op(0x2e);
    return Uint8Array.from(this.bytes);
  }
  /** Pushes `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`. */
  tensor(t: TensorSpec): this {
    this.global('torch._utils', '_rebuild_tensor_v2').mark();
    this.mark()
      .str('storage')
      .global('torch', t.storageType ?? 'FloatStorage')
      .str(t.key)
      .str('cpu')
      .int(t.numel)
      .tuple()
      .op(0x51);
    this.int(t.offset ?? 0).mark();
    for (const d of t.shape) this.int(d);
    this.tuple().mark();
    for (const d of t.stride ?? contiguousStrides(t.shape)) this.int(d);
    this.tuple().op(0x89).global('collections', 'OrderedDict').op(0x29).reduce();
    return this.tuple().reduce();
  }
}

export interface TensorSpec {
  key: string;
  numel: number;
  shape: readonly (number | bigint)[];
  stride?: readonly (number | bigint)[];
  offset?: number;
  storageType?: string;
}

function contiguousStrides(shape: readonly (number | bigint)[]): bigint[] {
  const out: bigint[] = [];
  let s = 1n;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = s;
    s *= BigInt(shape[i]!);
  }
  return out;
}

/** data.pkl for `{name: tensor, …}` (a plain dict, as torch.save(state_dict) writes an OrderedDict). */
export function stateDictPickle(tensors: Record<string, TensorSpec>): Uint8Array {
  const w = new PickleWriter().op(0x7d).mark();
  for (const [name, spec] of Object.entries(tensors)) w.str(name).tensor(spec);
  return w.op(0x75).stop();
}

/** A torch.save-shaped zip: `<prefix>/data.pkl`, `<prefix>/data/<key>`, `<prefix>/version`. */
export function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>, prefix = 'archive'): Uint8Array {
  return buildZip([
    { name: `${prefix}/data.pkl`, data: pkl },
    ...Object.entries(storages).map(([key, data]) => ({ name: `${prefix}/data/${key}`, data })),
    { name: `${prefix}/version`, data: new TextEncoder().encode('3\n') },
  ]);
}

export function f32Bytes(values: readonly number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

// ---------------------------------------------------------------------------------------------
// Expected tensors as the generator writes them

export interface ExpectedTensor {
  dtype: string;
  shape: number[];
  /** Ints as they are; floats as uint32 bit patterns of the float32 value. */
  data: number[];
}

/** Compares a read tensor with the generator's JSON: floats by their float32 bits, ints exactly. */
export function expectTensor(name: string, actual: HostTensor | undefined, want: ExpectedTensor): void {
  expect(actual, name).toBeDefined();
  const t = actual!;
  expect(t.shape, name).toEqual(want.shape);
  expect(t.fileDtype, name).toBe(want.dtype);
  expect(t.data.length, name).toBe(want.data.length);
  if (t.dtype === 'float32') {
    const got = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
    expect(Array.from(got), name).toEqual(want.data);
  } else {
    expect(Array.from(t.data), name).toEqual(want.data);
  }
}
