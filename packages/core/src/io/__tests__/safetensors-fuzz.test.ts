// Seeded fuzzing of the safetensors reader: mutated headers and files either load consistently or fail
// with VlError SAFETENSORS_INVALID; never another error, never a large allocation; file and buffer readers agree.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { Rng } from '../../runtime/rng.js';
import { readSafetensors, SAFETENSORS_MAX_HEADER_BYTES, writeSafetensors, type HostTensor } from '../safetensors.js';
import { readSafetensorsFile, readSafetensorsHeader } from '../../node/safetensors-file.js';
import { FIXTURE_CHECKPOINTS, makeTempDir } from './helpers.js';

type Outcome = { ok: true; summary: string } | { ok: false; message: string };

/** Any throw that is not our typed error is a bug: report it with the case that caused it. */
function classify(err: unknown, where: string): Outcome {
  if (isVlError(err, 'SAFETENSORS_INVALID')) return { ok: false, message: err.message.replace(`[${err.subject}]`, '[]') };
  throw new Error(`${where}: expected VlError SAFETENSORS_INVALID, got ${String(err)}`, { cause: err });
}

/** A loaded result must be self-consistent: each tensor's data matches its shape and dtype. */
function summarise(tensors: Map<string, HostTensor>, where: string): string {
  const parts: string[] = [];
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const arrayOk = t.dtype === 'float32' ? t.data instanceof Float32Array : t.data instanceof Int32Array;
    if (count !== t.data.length || !arrayOk) throw new Error(`${where}: tensor ${name} has ${t.data.length} values for shape ${t.shape}`);
    parts.push(`${name}:${t.fileDtype}[${t.shape}]`);
  }
  return parts.join(';');
}

function readBuffer(bytes: Uint8Array, where: string): Outcome {
  try {
    return { ok: true, summary: summarise(readSafetensors(bytes).tensors, where) };
  } catch (err) {
    return classify(err, where);
  }
}

function mixedFile(): Uint8Array {
  const f = (shape: number[], n: number, fileDtype: HostTensor['fileDtype']): HostTensor => ({
    dtype: 'float32',
    shape,
    data: Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 10),
    fileDtype,
  });
  const i = (shape: number[], n: number, fileDtype: HostTensor['fileDtype'], mod: number): HostTensor => ({
    dtype: 'int32',
    shape,
    data: Int32Array.from({ length: n }, (_, k) => k % mod),
    fileDtype,
  });
  return writeSafetensors(
    {
      'encoder.layer.0.weight': f([4, 3], 12, 'F32'),
      'encoder.layer.0.bias': f([3], 3, 'F16'),
      'encoder.layer.1.weight': f([2, 2], 4, 'BF16'),
      'encoder.scale': f([], 1, 'F64'),
      position_ids: i([1, 8], 8, 'I64', 100),
      mask: i([5], 5, 'BOOL', 2),
      tokens: i([3], 3, 'U8', 200),
      empty: f([0, 4], 0, 'F32'),
    },
    { format: 'pt', note: 'fuzz base' },
  );
}

/** Reads the header as text and N, for structural mutations. */
function splitFile(bytes: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>, data: bytes.subarray(8 + n) };
}

function joinFile(headerText: string, data: Uint8Array, pad = true): Uint8Array {
  let json = new TextEncoder().encode(headerText);
  if (pad && json.length % 8 !== 0) {
    const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const WEIRD_NUMBERS: unknown[] = [-1, 1.5, 1e300, 2 ** 53, 2 ** 53 + 2, 2 ** 31, 2 ** 32, 0, '3', null, [2], true, 1e-7, -0, 65];
const WEIRD_DTYPES: unknown[] = ['F33', 'f32', 'F8_E4M3', 'C64', '', 7, null, 'I64', 'BOOL', 'U64', 'F64', 'F16'];
const JSON_CHARS = '{}[],:"-.e0123456789 \\';

/** One mutation of `base`, chosen and parameterised by `rng`; returns the bytes and a label. */
function mutate(base: Uint8Array, rng: Rng): { bytes: Uint8Array; kind: string } {
  const n = Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const headerEnd = 8 + n;
  const kind = rng.int(9);
  const bytes = base.slice();
  switch (kind) {
    case 0: {
      // Flip a few bytes anywhere in the prefix or header.
      const flips = 1 + rng.int(4);
      for (let k = 0; k < flips; k++) bytes[rng.int(headerEnd)]! ^= 1 + rng.int(255);
      return { bytes, kind: 'flip header bytes' };
    }
    case 1: {
      // Put a JSON-significant character somewhere in the header text.
      const at = 8 + rng.int(n);
      bytes[at] = JSON_CHARS.charCodeAt(rng.int(JSON_CHARS.length));
      return { bytes, kind: 'json char' };
    }
    case 2: {
      // Lie about N.
      const choices = [
        BigInt(n + 1 + rng.int(16)),
        BigInt(Math.max(0, n - 1 - rng.int(16))),
        2n ** 63n,
        2n ** 64n - 1n,
        BigInt(SAFETENSORS_MAX_HEADER_BYTES + 1),
        BigInt(SAFETENSORS_MAX_HEADER_BYTES),
        BigInt(base.length),
        BigInt(rng.nextUint32()) * BigInt(rng.nextUint32()),
        0n,
      ];
      new DataView(bytes.buffer).setBigUint64(0, choices[rng.int(choices.length)]!, true);
      return { bytes, kind: 'header length' };
    }
    case 3:
      return { bytes: base.slice(0, rng.int(base.length)), kind: 'truncate' };
    case 4: {
      const extra = new Uint8Array(1 + rng.int(16)).map(() => rng.int(256));
      const out = new Uint8Array(base.length + extra.length);
      out.set(base);
      out.set(extra, base.length);
      return { bytes: out, kind: 'append' };
    }
    case 5: {
      // Flip data bytes: loads (values change) or fails a value check (I64 range, BOOL 0/1).
      for (let k = 1 + rng.int(8); k > 0; k--) {
        if (base.length > headerEnd) bytes[headerEnd + rng.int(base.length - headerEnd)]! ^= 1 + rng.int(255);
      }
      return { bytes, kind: 'flip data bytes' };
    }
    case 6:
    case 7: {
      // Structural: edit one entry's fields through JSON, then write a correct prefix.
      const { header, data } = splitFile(base);
      const names = Object.keys(header).filter((k) => k !== '__metadata__');
      const name = names[rng.int(names.length)]!;
      const entry = header[name] as { dtype: unknown; shape: unknown[]; data_offsets: unknown[] };
      const [b, e] = entry.data_offsets as [number, number];
      const op = rng.int(10);
      let label: string;
      if (op === 0) {
        const shape = [...entry.shape];
        shape[rng.int(shape.length + 1)] = WEIRD_NUMBERS[rng.int(WEIRD_NUMBERS.length)];
        entry.shape = shape;
        label = 'shape value';
      } else if (op === 1) {
        entry.dtype = WEIRD_DTYPES[rng.int(WEIRD_DTYPES.length)];
        label = 'dtype';
      } else if (op === 2) {
        entry.data_offsets = [b, e + data.length + 1 + rng.int(1 << 20)];
        label = 'offset beyond end';
      } else if (op === 3) {
        const other = header[names[rng.int(names.length)]!] as { data_offsets: [number, number] };
        entry.data_offsets = [other.data_offsets[0], other.data_offsets[0] + (e - b)];
        label = 'overlap';
      } else if (op === 4) {
        entry.data_offsets = [WEIRD_NUMBERS[rng.int(WEIRD_NUMBERS.length)], e];
        label = 'offset value';
      } else if (op === 5) {
        delete (entry as Record<string, unknown>)[['dtype', 'shape', 'data_offsets'][rng.int(3)]!];
        label = 'missing field';
      } else if (op === 6) {
        entry.shape = [2 ** 31, 2 ** 31, 2 ** 31, 0];
        label = 'huge shape';
      } else if (op === 7) {
        (entry as Record<string, unknown>)['extra'] = 1;
        label = 'extra field';
      } else if (op === 8) {
        header['__metadata__'] = [{ a: 1 }, 'x', null, { a: 'b' }][rng.int(4)];
        label = 'metadata';
      } else {
        entry.shape = [...entry.shape].reverse();
        label = 'reversed shape (same bytes: loads)';
      }
      return { bytes: joinFile(JSON.stringify(header), data, rng.int(2) === 0), kind: `structural: ${label}` };
    }
    default: {
      // Duplicate a key at the text level (JSON.stringify cannot produce one).
      const { header, data } = splitFile(base);
      const text = JSON.stringify(header);
      const names = Object.keys(header).filter((k) => k !== '__metadata__');
      const name = names[rng.int(names.length)]!;
      const entryText = `${JSON.stringify(name)}:${JSON.stringify(header[name])}`;
      return { bytes: joinFile(`${text.slice(0, -1)},${entryText}}`, data), kind: 'duplicate key' };
    }
  }
}

describe('safetensors fuzz (seeded)', () => {
  let fixture: Uint8Array;
  let tmp: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    fixture = new Uint8Array(await readFile(join(FIXTURE_CHECKPOINTS.blipRetrieval, 'model.safetensors')));
    tmp = await makeTempDir('fuzz');
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('600 mutated buffers: each loads consistently or throws SAFETENSORS_INVALID, with no large allocation', () => {
    const rng = new Rng(20251122);
    const bases = [mixedFile(), fixture];
    const byKind = new Map<string, { ok: number; error: number }>();
    let peakGrowth = 0;
    for (let c = 0; c < 600; c++) {
      const base = bases[c % bases.length]!;
      const { bytes, kind } = mutate(base, rng);
      const before = process.memoryUsage().arrayBuffers;
      const outcome = readBuffer(bytes, `case ${c} (${kind})`);
      const counts = byKind.get(kind) ?? { ok: 0, error: 0 };
      counts[outcome.ok ? 'ok' : 'error']++;
      byKind.set(kind, counts);
      // Everything one read allocates is bounded by its input (at most ~4x, for U8 → int32; inputs
      // here are < 300 KB); a reader trusting N or a shape would show hundreds of MB (or a RangeError).
      peakGrowth = Math.max(peakGrowth, process.memoryUsage().arrayBuffers - before);
    }
    expect(peakGrowth).toBeLessThan(8 * 1024 * 1024);
    const total = [...byKind.values()].reduce((a, v) => ({ ok: a.ok + v.ok, error: a.error + v.error }), { ok: 0, error: 0 });
    // The fuzzer must exercise both paths, or it proves nothing.
    expect(total.ok).toBeGreaterThan(30);
    expect(total.error).toBeGreaterThan(200);
    expect(byKind.get('duplicate key')!.ok).toBe(0);
    expect(byKind.get('truncate')!.ok).toBe(0);
    expect(byKind.get('append')!.ok).toBe(0);
  });

  it('truncation at every 97th byte of the fixture and every byte of a small file always fails cleanly', () => {
    const small = mixedFile();
    for (let end = 0; end < small.length; end++) expect(readBuffer(small.subarray(0, end), `small[0:${end}]`).ok).toBe(false);
    for (let end = 0; end < fixture.length; end += 97) expect(readBuffer(fixture.subarray(0, end), `fixture[0:${end}]`).ok).toBe(false);
  });

  it('file reader and header reader agree with the buffer reader on 80 mutated files', async () => {
    const rng = new Rng(7);
    const bases = [mixedFile(), fixture];
    for (let c = 0; c < 80; c++) {
      const { bytes, kind } = mutate(bases[c % 2]!, rng);
      const where = `file case ${c} (${kind})`;
      const path = join(tmp.dir, `case-${c}.safetensors`);
      await writeFile(path, bytes);
      const fromBuffer = readBuffer(bytes, where);
      let fromFile: Outcome;
      try {
        fromFile = { ok: true, summary: summarise((await readSafetensorsFile(path)).tensors, where) };
      } catch (err) {
        fromFile = classify(err, where);
      }
      expect(fromFile, where).toEqual(fromBuffer);
      let headerOk: boolean;
      try {
        await readSafetensorsHeader(path);
        headerOk = true;
      } catch (err) {
        const outcome = classify(err, where);
        // The header reader fails only where the full reader fails, with the same message.
        expect(outcome, where).toEqual(fromBuffer);
        headerOk = false;
      }
      if (fromBuffer.ok) expect(headerOk, where).toBe(true);
    }
  });

  it('a tiny file claiming a 99 MB header, or a 2^62-byte one, is rejected before allocating', async () => {
    for (const n of [99_000_000n, 2n ** 62n]) {
      const path = join(tmp.dir, `huge-${n}.safetensors`);
      const bytes = new Uint8Array(64);
      new DataView(bytes.buffer).setBigUint64(0, n, true);
      await writeFile(path, bytes);
      const before = process.memoryUsage().arrayBuffers;
      await expect(readSafetensorsFile(path)).rejects.toMatchObject({ code: 'SAFETENSORS_INVALID', subject: path });
      await expect(readSafetensorsHeader(path)).rejects.toMatchObject({ code: 'SAFETENSORS_INVALID' });
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
    }
  });
});
