// safetensors format rules: reference layout bytes, dtype decoding (F16/BF16 by hand), round trips, and each validation error.
import { describe, expect, it } from 'vitest';
import { bf16BitsToF32Bits, f16BitsToF32Bits, f32BitsToBf16Bits, f32BitsToF16Bits } from '../float16.js';
import { readSafetensors, SAFETENSORS_MAX_HEADER_BYTES, writeSafetensors, type HostTensor, type SafetensorsDtype } from '../safetensors.js';
import { buildFile, catchVlError, f32Bits, sameBytes } from './helpers.js';

const text = new TextEncoder();

function f32(shape: number[], values: number[], fileDtype: SafetensorsDtype = 'F32'): HostTensor {
  return { dtype: 'float32', shape, data: Float32Array.from(values), fileDtype };
}
function i32(shape: number[], values: number[], fileDtype: SafetensorsDtype = 'I32'): HostTensor {
  return { dtype: 'int32', shape, data: Int32Array.from(values), fileDtype };
}
/** A float from its float32 bits. */
function fromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}
function bitsOf(value: number): number {
  return new Uint32Array(new Float32Array([value]).buffer)[0]!;
}
function headerOf(bytes: Uint8Array): { n: number; json: string } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { n, json: new TextDecoder().decode(bytes.subarray(8, 8 + n)) };
}

describe('layout matches the reference writer (huggingface/safetensors serialize tests)', () => {
  it('one F32 tensor: N = 64, no padding needed, data follows the header', () => {
    const bytes = writeSafetensors({ 'attn.0': f32([1, 2, 3], [0, 1, 2, 3, 4, 5]) });
    const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(headerOf(bytes)).toEqual({ n: 64, json });
    expect(sameBytes(bytes.subarray(72), new Float32Array([0, 1, 2, 3, 4, 5]))).toBe(true);
    expect(bytes.length).toBe(8 + 64 + 24);
  });

  it('pads the header with spaces to a multiple of 8 (N = 72 for a 65-byte header)', () => {
    const bytes = writeSafetensors({ attn0: f32([1, 1, 2, 3], [0, 1, 2, 3, 4, 5]) });
    expect(headerOf(bytes)).toEqual({ n: 72, json: '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ' });
  });

  it('empty files: `{}` padded to 8, and metadata first', () => {
    expect(Array.from(writeSafetensors({}))).toEqual([8, 0, 0, 0, 0, 0, 0, 0, ...text.encode('{}      ')]);
    const withMeta = writeSafetensors({}, { framework: 'pt' });
    expect(headerOf(withMeta)).toEqual({ n: 40, json: '{"__metadata__":{"framework":"pt"}}     ' });
    expect(readSafetensors(withMeta)).toEqual({ tensors: new Map(), metadata: { framework: 'pt' } });
  });

  it('orders tensors by descending dtype alignment, then by UTF-8 name; every tensor starts aligned', () => {
    const bytes = writeSafetensors(
      new Map<string, HostTensor>([
        ['u', i32([3], [1, 2, 3], 'U8')],
        ['h', f32([1], [1], 'F16')],
        ['f', f32([1], [1])],
        ['l', i32([1], [1], 'I64')],
        ['flag', i32([1], [1], 'BOOL')],
        ['d', f32([1], [1], 'F64')],
        // Same dtype: UTF-8 byte order puts U+FFFD (EF BF BD) before U+1F600 (F0 9F 98 80),
        // though UTF-16 order (what `<` compares) is the other way round.
        ['\u{1F600}', f32([1], [2])],
        ['\uFFFD', f32([1], [3])],
      ]),
      { z: '1', a: '2' },
    );
    const { json } = headerOf(bytes);
    const header = JSON.parse(json) as Record<string, { dtype: string; data_offsets: [number, number] }>;
    expect(Object.keys(header)).toEqual(['__metadata__', 'l', 'd', 'f', '\uFFFD', '\u{1F600}', 'h', 'u', 'flag']);
    expect(json.startsWith('{"__metadata__":{"a":"2","z":"1"},')).toBe(true);
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const size = { I64: 8, F64: 8, F32: 4, F16: 2, U8: 1, BOOL: 1 }[info.dtype]!;
      expect(info.data_offsets[0] % size, name).toBe(0);
    }
  });
});

describe('F16 and BF16 decoding against hand-computed values', () => {
  const f16Cases: Array<[number, number]> = [
    [0x0000, 0],
    [0x8000, -0],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x8001, -(2 ** -24)],
    [0x0200, 2 ** -15], // a subnormal with one bit set
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x3c00, 1],
    [0x3c01, 1 + 2 ** -10],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x2e66, 0.0999755859375],
    [0x7bff, 65504], // largest finite
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  it.each(f16Cases)('F16 0x%s', (h, expected) => {
    expect(Object.is(fromBits(f16BitsToF32Bits(h)), expected)).toBe(true);
  });

  it('F16 NaNs stay NaN and keep their payload', () => {
    for (const h of [0x7e00, 0x7c01, 0xfe00, 0x7fff]) {
      const bits = f16BitsToF32Bits(h);
      expect(Number.isNaN(fromBits(bits))).toBe(true);
      expect(bits).toBe((((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0);
    }
  });

  const bf16Cases: Array<[number, number]> = [
    [0x0000, 0],
    [0x8000, -0],
    [0x3f80, 1],
    [0xc049, -3.140625],
    [0x0001, 2 ** -133], // a float32 subnormal
    [0x0080, 2 ** -126], // smallest normal
    [0x7f7f, (2 - 2 ** -7) * 2 ** 127], // largest finite
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ];
  it.each(bf16Cases)('BF16 0x%s', (h, expected) => {
    expect(Object.is(fromBits(bf16BitsToF32Bits(h)), expected)).toBe(true);
  });

  it('BF16 NaNs stay NaN', () => {
    for (const h of [0x7fc0, 0x7f81, 0xffc0]) expect(Number.isNaN(fromBits(bf16BitsToF32Bits(h)))).toBe(true);
  });

  it('reads F16/BF16 tensors from a file (little-endian 16-bit words)', () => {
    const halfs = new Uint16Array([0x3c00, 0x8001, 0x7c00, 0x7e00]);
    const header = '{"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]}}';
    const data = new Uint8Array(16);
    data.set(new Uint8Array(halfs.buffer), 0);
    data.set(new Uint8Array(new Uint16Array([0x3f80, 0x8000, 0xff80, 0x7fc0]).buffer), 8);
    const { tensors } = readSafetensors(buildFile(header, data));
    const h = tensors.get('h')!;
    expect(h).toMatchObject({ dtype: 'float32', shape: [2, 2], fileDtype: 'F16' });
    expect(Array.from(h.data)).toEqual([1, -(2 ** -24), Infinity, NaN]);
    const b = tensors.get('b')!;
    expect(b).toMatchObject({ dtype: 'float32', shape: [4], fileDtype: 'BF16' });
    expect(Object.is(b.data[1], -0)).toBe(true);
    expect(Array.from(b.data)).toEqual([1, -0, -Infinity, NaN]);
  });
});

describe('F16 and BF16 encoding rounds to nearest, ties to even', () => {
  // Expected bits from numpy's float32 → float16 cast (round to nearest even), checked by hand.
  const f16Cases: Array<[number, number]> = [
    [1 + 2 ** -11, 0x3c00], // tie → even (down)
    [1 + 3 * 2 ** -11, 0x3c02], // tie → even (up)
    [65519, 0x7bff],
    [65520, 0x7c00], // rounds to inf
    [2 ** -25, 0x0000], // exactly half the smallest subnormal: tie → 0
    [Math.fround(2 ** -25 * (1 + 2 ** -23)), 0x0001],
    [3 * 2 ** -26, 0x0001],
    [1e-8, 0x0000],
    [0.1, 0x2e66],
    [-2.5e-5, 0x81a3],
    [1 / 3, 0x3555],
    [-0, 0x8000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [fromBits(0x00000001), 0x0000], // float32 subnormal
    [2 ** -14 - 2 ** -25, 0x0400], // largest subnormal + half ulp, tie → even carries into the smallest normal
  ];
  it.each(f16Cases)('float32 %s → F16 0x%s', (value, expected) => {
    expect(f32BitsToF16Bits(bitsOf(value)).toString(16)).toBe(expected.toString(16));
  });

  const bf16Cases: Array<[number, number]> = [
    [1 + 2 ** -8, 0x3f80], // tie → even (down)
    [1 + 3 * 2 ** -8, 0x3f82], // tie → even (up)
    [0.1, 0x3dcd],
    [-2.5, 0xc020],
    [fromBits(0x7f7fffff), 0x7f80], // largest float32 rounds to inf
    [fromBits(0x00000001), 0x0000],
    [fromBits(0x00008000), 0x0000], // tie → even
    [fromBits(0x00018000), 0x0002], // tie → even
    [-0, 0x8000],
  ];
  it.each(bf16Cases)('float32 %s → BF16 0x%s', (value, expected) => {
    expect(f32BitsToBf16Bits(bitsOf(value)).toString(16)).toBe(expected.toString(16));
  });

  it('NaNs stay NaN even when the payload is only in the dropped bits', () => {
    expect(f32BitsToF16Bits(0x7f800001)).toBe(0x7e00);
    expect(f32BitsToF16Bits(0xffc00000)).toBe(0xfe00);
    expect(f32BitsToBf16Bits(0x7f800001)).toBe(0x7fc0);
    expect(f32BitsToBf16Bits(0xffc00000)).toBe(0xffc0);
  });
});

describe('round trips write → read are bit-exact', () => {
  it('every one of the 65536 F16 and BF16 bit patterns survives read → write', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    for (const dtype of ['F16', 'BF16'] as const) {
      const file = buildFile(`{"x":{"dtype":"${dtype}","shape":[256,256],"data_offsets":[0,131072]}}`, new Uint8Array(all.buffer));
      const read = readSafetensors(file);
      const rewritten = writeSafetensors(read.tensors);
      const again = readSafetensors(rewritten);
      const x = again.tensors.get('x')!;
      expect(x.fileDtype).toBe(dtype);
      const { n } = headerOf(rewritten);
      expect(sameBytes(rewritten.subarray(8 + n), all)).toBe(true);
      expect(sameBytes(x.data, read.tensors.get('x')!.data)).toBe(true);
    }
  });

  it('F32 keeps -0, subnormals, inf and NaN payloads; I64 keeps the int32 extremes', () => {
    const floatBits = new Uint32Array([
      0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffbadbad, 0x3f800000,
    ]);
    const floats = new Float32Array(floatBits.buffer);
    const ints = Int32Array.from([0, 1, -1, 2147483647, -2147483648, 63]);
    const bytes = writeSafetensors({
      f: { dtype: 'float32', shape: [10], data: floats, fileDtype: 'F32' },
      i: i32([2, 3], Array.from(ints), 'I64'),
    });
    const { tensors } = readSafetensors(bytes);
    expect(Array.from(f32Bits(tensors.get('f')!.data as Float32Array))).toEqual(Array.from(floatBits));
    expect(tensors.get('i')).toEqual({ dtype: 'int32', shape: [2, 3], data: ints, fileDtype: 'I64' });
    // I64 on disk: each value sign-extended to 8 little-endian bytes.
    const { n } = headerOf(bytes);
    const view = new DataView(bytes.buffer, bytes.byteOffset + 8 + n);
    // Layout puts I64 first (wider alignment), so its words start the data buffer.
    expect(Array.from(ints, (_, k) => view.getBigInt64(8 * k, true))).toEqual(Array.from(ints, (v) => BigInt(v)));
  });

  it('float32 values written as F16/BF16 round to the nearest representable value', () => {
    const values = [0.1, 1 / 3, 65519, 1e-8];
    const { tensors } = readSafetensors(writeSafetensors({ h: f32([4], values, 'F16'), b: f32([4], values, 'BF16') }));
    expect(Array.from(tensors.get('h')!.data)).toEqual([0.0999755859375, 0.333251953125, 65504, 0]);
    expect(Array.from(tensors.get('b')!.data)).toEqual([0x3dcd, 0x3eab, 0x4780, 0x322c].map((h) => fromBits(h << 16)));
  });

  it.each([
    ['I32', [-2147483648, 0, 2147483647]],
    ['U32', [0, 1, 2147483647]],
    ['U64', [0, 1, 2147483647]],
    ['I16', [-32768, 0, 32767]],
    ['U16', [0, 1, 65535]],
    ['I8', [-128, 0, 127]],
    ['U8', [0, 1, 255]],
    ['BOOL', [0, 1, 1]],
  ] as const)('%s round-trips through int32', (dtype, values) => {
    const bytes = writeSafetensors({ x: i32([3], [...values], dtype) });
    expect(readSafetensors(bytes).tensors.get('x')).toEqual({
      dtype: 'int32',
      shape: [3],
      data: Int32Array.from(values),
      fileDtype: dtype,
    });
  });

  it('F64 reads as float32 (rounded) and writes back exactly', () => {
    const wide = new Float64Array([0.1, -0, 1e-50, Infinity, NaN, 3.4028234663852886e38]);
    const file = buildFile('{"d":{"dtype":"F64","shape":[6],"data_offsets":[0,48]}}', new Uint8Array(wide.buffer));
    const d = readSafetensors(file).tensors.get('d')!;
    expect(d).toMatchObject({ dtype: 'float32', fileDtype: 'F64' });
    expect(Array.from(d.data)).toEqual([Math.fround(0.1), -0, 0, Infinity, NaN, 3.4028234663852886e38]);
    expect(sameBytes(readSafetensors(writeSafetensors({ d })).tensors.get('d')!.data, d.data)).toBe(true);
  });

  it('0-d and zero-size tensors', () => {
    const bytes = writeSafetensors({ scalar: f32([], [0.07]), empty: f32([0, 5], []), alsoEmpty: i32([3, 0], [], 'I64') });
    const { tensors } = readSafetensors(bytes);
    expect(tensors.get('scalar')).toEqual(f32([], [0.07]));
    expect(tensors.get('empty')).toEqual(f32([0, 5], []));
    expect(tensors.get('alsoEmpty')).toEqual(i32([3, 0], [], 'I64'));
  });

  it('reads from a buffer at an odd byte offset (no aliasing, no alignment assumptions)', () => {
    const bytes = writeSafetensors({
      h: f32([2], [1, 2], 'F16'),
      l: i32([2], [5, -5], 'I64'),
      d: f32([1], [0.5], 'F64'),
      f: f32([1], [3]),
    });
    const host = new Uint8Array(bytes.length + 1);
    host.set(bytes, 1);
    const { tensors } = readSafetensors(host.subarray(1));
    expect(Array.from(tensors.get('h')!.data)).toEqual([1, 2]);
    expect(Array.from(tensors.get('l')!.data)).toEqual([5, -5]);
    expect(Array.from(tensors.get('d')!.data)).toEqual([0.5]);
    host.fill(0);
    expect(Array.from(tensors.get('f')!.data)).toEqual([3]); // owns its memory
  });

  it('metadata with awkward keys stays own data (no prototype pollution)', () => {
    const metadata = JSON.parse('{"__proto__":"x","constructor":"y","1":"z"}') as Record<string, string>;
    const read = readSafetensors(writeSafetensors({}, metadata)).metadata;
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
    expect(Object.entries(read).sort()).toEqual([
      ['1', 'z'],
      ['__proto__', 'x'],
      ['constructor', 'y'],
    ]);
  });
});

describe('values that do not fit int32 / float32 are typed errors naming the tensor', () => {
  it('I64 outside int32', () => {
    const words = new BigInt64Array([0n, 2n ** 31n]);
    const err = catchVlError(() =>
      readSafetensors(buildFile('{"step":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}', new Uint8Array(words.buffer))),
    );
    expect(err.message).toContain('"step"');
    expect(err.message).toContain('element 1 is 2147483648');
    expect(err.subject).toBe('<buffer>');
    expect(err.hint).toMatch(/int32/);
  });
  it('I64 below int32', () => {
    const words = new BigInt64Array([-(2n ** 31n) - 1n]);
    const err = catchVlError(() =>
      readSafetensors(buildFile('{"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', new Uint8Array(words.buffer))),
    );
    expect(err.message).toContain('-2147483649');
  });
  it('U64 and U32 above 2^31 - 1', () => {
    const u64 = new BigUint64Array([2n ** 63n]);
    expect(
      catchVlError(() => readSafetensors(buildFile('{"x":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}}', new Uint8Array(u64.buffer))))
        .message,
    ).toContain('9223372036854775808');
    const u32 = new Uint32Array([2 ** 31]);
    expect(
      catchVlError(() => readSafetensors(buildFile('{"x":{"dtype":"U32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(u32.buffer))))
        .message,
    ).toContain('2147483648');
  });
  it('BOOL bytes other than 0/1', () => {
    expect(
      catchVlError(() => readSafetensors(buildFile('{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}', new Uint8Array([1, 2]))))
        .message,
    ).toContain('element 1 is 2');
  });
  it('finite F64 beyond the float32 range', () => {
    const wide = new Float64Array([1e300]);
    expect(
      catchVlError(() => readSafetensors(buildFile('{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', new Uint8Array(wide.buffer))))
        .message,
    ).toContain('float32 range');
  });
});

describe('writer rejects bad input with a typed error', () => {
  it.each<[string, () => unknown, RegExp]>([
    ['data length ≠ shape', () => writeSafetensors({ w: f32([2, 2], [1, 2, 3]) }), /"w".*4 elements but data has 3/],
    ['float data as an integer dtype', () => writeSafetensors({ w: f32([1], [1], 'I64') }), /float32 data cannot be written as I64/],
    ['int data as a float dtype', () => writeSafetensors({ w: i32([1], [1], 'F16') }), /int32 data cannot be written as F16/],
    [
      'wrong typed array',
      () => writeSafetensors({ w: { dtype: 'float32', shape: [1], data: new Int32Array(1) as unknown as Float32Array, fileDtype: 'F32' } }),
      /needs a Float32Array/,
    ],
    [
      'unknown fileDtype',
      () => writeSafetensors({ w: { ...f32([1], [1]), fileDtype: 'F8_E4M3' as SafetensorsDtype } }),
      /fileDtype F8_E4M3/,
    ],
    ['negative dim', () => writeSafetensors({ w: f32([-1], []) }), /shape must be/],
    ['reserved name', () => writeSafetensors({ __metadata__: f32([1], [1]) }), /reserved/],
    ['lone surrogate in a name', () => writeSafetensors({ ['a\uD800']: f32([1], [1]) }), /surrogate/],
    ['non-string metadata', () => writeSafetensors({}, { epoch: 3 as unknown as string }), /metadata value for "epoch" must be a string/],
    ['U8 out of range', () => writeSafetensors({ w: i32([2], [1, 256], 'U8') }), /element 1 is 256, outside U8's range \[0, 255\]/],
    ['U64 negative', () => writeSafetensors({ w: i32([1], [-1], 'U64') }), /outside U64's range/],
    ['BOOL not 0/1', () => writeSafetensors({ w: i32([1], [2], 'BOOL') }), /outside BOOL's range/],
  ])('%s', (_label, fn, message) => {
    const err = catchVlError(fn);
    expect(err.message).toMatch(message);
    expect(err.subject).toBe('<buffer>');
  });
});

// Valid two-tensor header pieces reused by the validation cases below.
const A = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
const data16 = new Uint8Array(16);

describe('reader validation: every rule gives SAFETENSORS_INVALID naming the problem', () => {
  const u64 = (n: bigint, rest: Uint8Array = new Uint8Array(0)): Uint8Array => {
    const out = new Uint8Array(8 + rest.length);
    new DataView(out.buffer).setBigUint64(0, n, true);
    out.set(rest, 8);
    return out;
  };
  it.each<[string, Uint8Array, RegExp]>([
    ['file shorter than 8 bytes', new Uint8Array(7), /shorter than the 8-byte header length/],
    ['N over the cap', u64(BigInt(SAFETENSORS_MAX_HEADER_BYTES) + 1n, text.encode('{}')), /header length 100000001 is over/],
    ['N = 2^64 - 1', u64(2n ** 64n - 1n, text.encode('{}')), /header length 18446744073709551615 is over/],
    ['N past the end of the file', u64(1000n, text.encode('{}')), /runs past the end of the file/],
    ['N = 0', u64(0n), /too short/],
    ['header not JSON', buildFile('{"a":'), /not valid JSON: unexpected end of input/],
    ['garbage after the JSON', buildFile('{} x'), /unexpected character "x" after the JSON value/],
    ['JSON array header', buildFile('[]'), /must be a JSON object/],
    ['BOM before the JSON', buildFile('\uFEFF{}'), /not valid JSON/],
    ['invalid UTF-8', buildFile('{"\xff":1}').map((b, i, arr) => (i === 10 && arr[i] === 0xc3 ? 0xff : b)), /not valid UTF-8/],
    ['duplicate tensor key', buildFile(`{${A},${A}}`, data16.subarray(0, 8)), /duplicate key "a"/],
    [
      'duplicate field',
      buildFile('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /duplicate key "dtype"/,
    ],
    ['entry not an object', buildFile('{"a":[1]}'), /"a": entry must be an object/],
    [
      'unknown field',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', data16.subarray(0, 8)),
      /"a": unknown field "x"/,
    ],
    ['missing dtype', buildFile('{"a":{"shape":[2],"data_offsets":[0,8]}}', data16.subarray(0, 8)), /"a": unknown dtype missing/],
    [
      'unknown dtype',
      buildFile('{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /"a": unknown dtype the string "F33"/,
    ],
    [
      'unsupported dtype',
      buildFile('{"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /"a": dtype F8_E4M3 is not supported/,
    ],
    [
      'shape not an array',
      buildFile('{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /"a": "shape" must be an array/,
    ],
    ['negative dim', buildFile('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', data16.subarray(0, 8)), /"a": shape\[0\] is -2/],
    [
      'fractional dim',
      buildFile('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /"a": shape\[0\] is 1.5/,
    ],
    [
      'string dim',
      buildFile('{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /"a": shape\[0\] is the string "2"/,
    ],
    [
      'dim past 2^53',
      buildFile('{"a":{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /shape\[0\] is 9007199254740992/,
    ],
    ['dim 1e300', buildFile('{"a":{"dtype":"F32","shape":[1e300],"data_offsets":[0,8]}}', data16.subarray(0, 8)), /shape\[0\] is 1e\+300/],
    [
      'element count overflow',
      buildFile('{"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}'),
      /more elements than can be addressed/,
    ],
    [
      'too many dims',
      buildFile(`{"a":{"dtype":"F32","shape":[${Array(65).fill(1).join(',')}],"data_offsets":[0,4]}}`, data16.subarray(0, 4)),
      /65 dims/,
    ],
    [
      'nested too deep',
      buildFile('{"a":{"dtype":"F32","shape":[[[[[[[[1]]]]]]]],"data_offsets":[0,4]}}', data16.subarray(0, 4)),
      /nested deeper than 8 levels/,
    ],
    [
      'offsets not a pair',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}', data16.subarray(0, 8)),
      /"a": "data_offsets" must be \[begin, end\]/,
    ],
    [
      'negative offset',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}', data16.subarray(0, 8)),
      /data_offsets begin is -8/,
    ],
    [
      'fractional offset',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}', data16.subarray(0, 8)),
      /data_offsets end is 8.5/,
    ],
    [
      'reversed offsets',
      buildFile('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', data16.subarray(0, 8)),
      /end before they begin/,
    ],
    [
      'offsets past the end',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data16.subarray(0, 4)),
      /run past the end of the data \(4 bytes/,
    ],
    [
      'bytes ≠ elements × size',
      buildFile('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', data16.subarray(0, 8)),
      /"a": F32 \[3\] needs 12 bytes but data_offsets \[0, 8\] hold 8/,
    ],
    [
      'overlapping tensors',
      buildFile(`{${A},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, data16.subarray(0, 12)),
      /"b": data_offsets \[4, 12\] overlap tensor "a" \[0, 8\]/,
    ],
    ['aliased tensors', buildFile(`{${A},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, data16.subarray(0, 8)), /overlap/],
    [
      'hole between tensors',
      buildFile(`{${A},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}`, data16),
      /bytes \[8, 12\) of the data belong to no tensor \(a hole after tensor "a", before "b"\)/,
    ],
    [
      'hole at the start',
      buildFile('{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', data16.subarray(0, 8)),
      /bytes \[0, 4\) .* at the start of the data/,
    ],
    ['trailing bytes', buildFile(`{${A}}`, data16), /bytes \[8, 16\) at the end of the data belong to no tensor/],
    ['data but no tensors', buildFile('{}', data16), /bytes \[0, 16\) at the end/],
    ['metadata not an object', buildFile('{"__metadata__":"pt"}'), /"__metadata__" must be an object of strings/],
    ['metadata value not a string', buildFile('{"__metadata__":{"epoch":3}}'), /"__metadata__" value for "epoch" must be a string, got 3/],
  ])('%s', (_label, bytes, message) => {
    const err = catchVlError(() => readSafetensors(bytes));
    expect(err.message).toMatch(message);
    expect(err.subject).toBe('<buffer>');
    expect(err.hint).toBeTruthy();
  });

  it('accepts what the format allows: null metadata, trailing header spaces/newlines, an empty file, names with any characters', () => {
    expect(readSafetensors(buildFile('{"__metadata__":null}')).metadata).toEqual({});
    expect(readSafetensors(buildFile('{} \n\t ')).tensors.size).toBe(0);
    const odd = readSafetensors(
      buildFile(
        '{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
        new Uint8Array([7, 9]),
      ),
    );
    expect([...odd.tensors.keys()]).toEqual(['', '__proto__']);
    expect(odd.tensors.get('__proto__')!.data[0]).toBe(9);
  });

  it('cuts very long names in messages', () => {
    const name = 'x'.repeat(100_000);
    const err = catchVlError(() =>
      readSafetensors(buildFile(`{"${name}":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}`, data16.subarray(0, 8))),
    );
    expect(err.message.length).toBeLessThan(400);
    expect(err.message).toContain('(100000 chars)');
  });
});
