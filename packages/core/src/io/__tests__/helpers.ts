// Test helpers for io: the repo's fixtures folder, an independent tiny safetensors decoder, temp dirs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { VlError, type VlErrorCode } from '../../errors.js';

/** `<repo>/fixtures`, found from this file (src/io/__tests__ → five levels up). */
export const FIXTURES_DIR = fileURLToPath(new URL('../../../../../fixtures/', import.meta.url));

export const FIXTURE_CHECKPOINTS = {
  blipCaptioning: join(FIXTURES_DIR, 'blip-hf/blip-captioning-seed0'),
  blipRetrieval: join(FIXTURES_DIR, 'blip-hf/blip-retrieval-seed0'),
  albef: join(FIXTURES_DIR, 'albef-official/albef-seed0'),
} as const;

export interface ReferenceTensor {
  dtype: string;
  shape: number[];
  /** Values as JS numbers (F32 via getFloat32, I64 via getBigInt64). */
  values: number[];
}

/**
 * A deliberately naive decoder, written from the format description only (JSON.parse + DataView),
 * to check the real reader against. Handles the dtypes the fixtures use: F32 and I64.
 */
export function referenceDecode(bytes: Uint8Array): { tensors: Map<string, ReferenceTensor>; metadata: unknown } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const tensors = new Map<string, ReferenceTensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = raw as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const start = 8 + n + info.data_offsets[0];
    const count = info.shape.reduce((a, b) => a * b, 1);
    const values: number[] = [];
    for (let i = 0; i < count; i++) {
      if (info.dtype === 'F32') values.push(view.getFloat32(start + 4 * i, true));
      else if (info.dtype === 'I64') values.push(Number(view.getBigInt64(start + 8 * i, true)));
      else throw new Error(`reference decoder: ${info.dtype} not handled`);
    }
    tensors.set(name, { dtype: info.dtype, shape: info.shape, values });
  }
  return { tensors, metadata: header['__metadata__'] };
}

/** Runs `fn` and returns the VlError it throws, failing the test on success or on any other error. */
export function catchVlError(fn: () => unknown, code: VlErrorCode = 'SAFETENSORS_INVALID'): VlError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VlError);
    expect((err as VlError).code).toBe(code);
    return err as VlError;
  }
  throw new Error('expected a VlError, but the call succeeded');
}

export async function catchVlErrorAsync(fn: () => Promise<unknown>, code: VlErrorCode = 'SAFETENSORS_INVALID'): Promise<VlError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VlError);
    expect((err as VlError).code).toBe(code);
    return err as VlError;
  }
  throw new Error('expected a VlError, but the call succeeded');
}

/** A fresh temp folder and its remover. */
export async function makeTempDir(label: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `vl-io-${label}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Bytes of a file from a header object (as JSON text) and a data buffer, with a correct prefix. */
export function buildFile(headerText: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Float32 bit pattern of a number, for bit-exact comparisons (NaN payloads included). */
export function f32Bits(data: Float32Array): Uint32Array {
  return new Uint32Array(data.buffer, data.byteOffset, data.length);
}

/** Byte equality of two views (vitest's deep equality walks typed arrays element by element, slowly). */
export function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return Buffer.compare(x, y) === 0;
}
