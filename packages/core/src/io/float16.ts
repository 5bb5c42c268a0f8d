// IEEE half (F16) and bfloat16 (BF16) conversions on raw bits, so NaN payloads, -0 and subnormals
// survive a read → write round trip exactly (going through JS numbers could canonicalise NaNs).

let f16Table: Uint32Array | null = null;

/** float32 bits for every half bits pattern; 256 KiB, built on first use. */
function halfToFloatBitsTable(): Uint32Array {
  if (f16Table) return f16Table;
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    let mant = h & 0x3ff;
    let bits: number;
    if (exp === 0x1f) {
      bits = sign | 0x7f800000 | (mant << 13); // inf, or NaN keeping its payload
    } else if (exp !== 0) {
      bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
    } else if (mant === 0) {
      bits = sign; // ±0
    } else {
      // Subnormal half, mant · 2^-24: shift the leading 1 up to the implicit-bit position.
      let e = 127 - 15 + 1;
      while ((mant & 0x400) === 0) {
        mant <<= 1;
        e--;
      }
      bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
    table[h] = bits >>> 0;
  }
  f16Table = table;
  return table;
}

/** float32 bits of a half given by its 16 bits (exact: every half is a float32). */
export function f16BitsToF32Bits(h: number): number {
  return halfToFloatBitsTable()[h & 0xffff] ?? 0;
}

/** float32 bits of a bfloat16 (exact: bfloat16 is the top half of a float32). */
export function bf16BitsToF32Bits(h: number): number {
  return ((h & 0xffff) << 16) >>> 0;
}

/** Half bits nearest to a float32 given by its bits (round to nearest, ties to even; overflow → ±inf). */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    // Keep the top payload bits; if they are all zero, set the quiet bit so a NaN stays a NaN.
    const payload = mant >>> 13;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  const e = exp - 127 + 15; // half's biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is a half subnormal (or zero): count of 2^-24 units = (1.mant · 2^23) >> (14 - e).
    if (e < -10) return sign; // below half the smallest subnormal: rounds to ±0
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++; // may carry into the smallest normal: still right
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry can roll into the exponent, up to inf: right
  return sign | h;
}

/** bfloat16 bits nearest to a float32 given by its bits (round to nearest, ties to even, as PyTorch does). */
export function f32BitsToBf16Bits(x: number): number {
  const bits = x >>> 0;
  if ((bits & 0x7fffffff) > 0x7f800000) {
    // NaN: truncate, but keep it a NaN if the payload lived only in the dropped bits.
    const h = bits >>> 16;
    return (h & 0x7f) === 0 ? h | 0x40 : h;
  }
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Decodes little-endian 16-bit floats into float32 (via the bit patterns). */
export function decodeHalfs(src: Uint16Array, kind: 'F16' | 'BF16'): Float32Array {
  const out = new Float32Array(src.length);
  const outBits = new Uint32Array(out.buffer);
  if (kind === 'BF16') {
    for (let i = 0; i < src.length; i++) outBits[i] = (src[i]! << 16) >>> 0;
  } else {
    const table = halfToFloatBitsTable();
    for (let i = 0; i < src.length; i++) outBits[i] = table[src[i]!]!;
  }
  return out;
}

/** Encodes float32 values into little-endian 16-bit float bits (round to nearest, ties to even). */
export function encodeHalfs(src: Float32Array, kind: 'F16' | 'BF16'): Uint16Array {
  const out = new Uint16Array(src.length);
  const srcBits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const encode = kind === 'BF16' ? f32BitsToBf16Bits : f32BitsToF16Bits;
  for (let i = 0; i < src.length; i++) out[i] = encode(srcBits[i]!);
  return out;
}
