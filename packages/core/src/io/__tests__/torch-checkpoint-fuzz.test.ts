// Seeded fuzzing of the torch.save reader: mutated archives and pickles either load consistently or fail
// with a CHECKPOINT_* VlError; never another error, never a large allocation; file and buffer readers agree.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { Rng } from '../../runtime/rng.js';
import type { HostTensor } from '../safetensors.js';
import { readTorchCheckpoint } from '../torch-checkpoint.js';
import { readTorchCheckpointFile } from '../../node/torch-checkpoint-file.js';
import { bytesSource, readZipDirectory, readZipEntry } from '../zip.js';
import { makeTempDir } from './helpers.js';
import { buildZip, TORCH_FIXTURES, type ZipInput } from './torch-helpers.js';

type Outcome = { ok: true; summary: string } | { ok: false; message: string };

const CODES = new Set(['CHECKPOINT_INVALID', 'CHECKPOINT_UNSAFE', 'CHECKPOINT_UNSUPPORTED']);

function classify(err: unknown, where: string): Outcome {
  if (isVlError(err) && CODES.has(err.code)) return { ok: false, message: err.message.replace(`[${err.subject}]`, '[]') };
  throw new Error(`${where}: expected a CHECKPOINT_* VlError, got ${String(err)}`, { cause: err });
}

function summarise(tensors: Map<string, HostTensor>, where: string): string {
  const parts: string[] = [];
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const arrayOk = t.dtype === 'float32' ? t.data instanceof Float32Array : t.data instanceof Int32Array;
    if (count !== t.data.length || !arrayOk) throw new Error(`${where}: tensor ${name} has ${t.data.length} values for shape ${t.shape}`);
    let sum = 0;
    for (let i = 0; i < t.data.length; i++) sum = (sum * 31 + (Number.isNaN(t.data[i]!) ? 7 : t.data[i]!)) % 1e9;
    parts.push(`${name}:${t.fileDtype}[${t.shape}]#${sum}`);
  }
  return parts.join(';');
}

async function readBuffer(bytes: Uint8Array, where: string, verifyCrc = true): Promise<Outcome> {
  try {
    return { ok: true, summary: summarise((await readTorchCheckpoint(bytesSource(bytes, 'fuzz.pth'), { verifyCrc })).tensors, where) };
  } catch (err) {
    return classify(err, where);
  }
}

interface Base {
  name: string;
  bytes: Uint8Array;
  entries: ZipInput[];
}

async function loadBase(name: string): Promise<Base> {
  const bytes = new Uint8Array(await readFile(join(TORCH_FIXTURES, name)));
  const zip = await readZipDirectory(bytesSource(bytes));
  const entries = await Promise.all(
    [...zip.entries.values()].map(async (e) => ({ name: e.name, data: await readZipEntry(zip, e, { maxBytes: 1 << 20 }) })),
  );
  return { name, bytes, entries };
}

const EXTREMES = [0, 1, 0x7f, 0x80, 0xff];

/** One mutation, chosen and parameterised by `rng`: archive bytes, or entries re-zipped with valid CRCs. */
function mutate(base: Base, rng: Rng): { bytes: Uint8Array; kind: string; verifyCrc: boolean } {
  const kind = rng.int(9);
  const pick = <T>(items: readonly T[]): T => items[rng.int(items.length)]!;
  const pklIndex = base.entries.findIndex((e) => e.name.endsWith('data.pkl'));
  const withEntries = (entries: ZipInput[], label: string): { bytes: Uint8Array; kind: string; verifyCrc: boolean } => ({
    bytes: buildZip(entries),
    kind: label,
    verifyCrc: true,
  });
  const editPickle = (edit: (pkl: Uint8Array) => Uint8Array, label: string) => {
    const entries = base.entries.map((e, i) => (i === pklIndex ? { ...e, data: edit(e.data.slice()) } : e));
    return withEntries(entries, label);
  };
  switch (kind) {
    case 0: {
      const bytes = base.bytes.slice();
      for (let k = 1 + rng.int(4); k > 0; k--) bytes[rng.int(bytes.length)]! ^= 1 + rng.int(255);
      return { bytes, kind: 'flip archive bytes', verifyCrc: true };
    }
    case 1: {
      // Same flips with CRC checks off: damage reaches the pickle and the tensor data.
      const bytes = base.bytes.slice();
      for (let k = 1 + rng.int(4); k > 0; k--) bytes[rng.int(bytes.length)]! ^= 1 + rng.int(255);
      return { bytes, kind: 'flip archive bytes, no CRC', verifyCrc: false };
    }
    case 2:
      return { bytes: base.bytes.slice(0, rng.int(base.bytes.length)), kind: 'truncate archive', verifyCrc: true };
    case 3:
      return editPickle((pkl) => {
        for (let k = 1 + rng.int(3); k > 0; k--) pkl[2 + rng.int(pkl.length - 2)] = rng.int(256);
        return pkl;
      }, 'random pickle bytes');
    case 4:
      return editPickle((pkl) => {
        // Numbers in the pickle (BININT1 args: sizes, strides, offsets, numels) set to edge values.
        for (let k = 1 + rng.int(3); k > 0; k--) {
          const at = 2 + rng.int(pkl.length - 3);
          if (pkl[at] === 0x4b) pkl[at + 1] = pick(EXTREMES);
          else if (pkl[at] === 0x4d) pkl[at + 2] = pick(EXTREMES);
        }
        return pkl;
      }, 'pickle numbers');
    case 5:
      return editPickle((pkl) => pkl.slice(0, 2 + rng.int(pkl.length - 2)), 'truncate pickle');
    case 6: {
      // Cut or grow a storage entry.
      const i = rng.int(base.entries.length);
      const e = base.entries[i]!;
      const n = rng.int(2) === 0 ? rng.int(e.data.length + 1) : e.data.length + 1 + rng.int(16);
      const data = new Uint8Array(n);
      data.set(e.data.subarray(0, Math.min(n, e.data.length)));
      return withEntries(
        base.entries.map((x, j) => (j === i ? { ...x, data } : x)),
        'resize entry',
      );
    }
    case 7: {
      const i = rng.int(base.entries.length);
      return withEntries(
        base.entries.filter((_, j) => j !== i),
        'drop entry',
      );
    }
    default: {
      // Rename an entry (a storage key that no longer matches, or a second data.pkl).
      const i = rng.int(base.entries.length);
      const to = pick([
        base.entries[pklIndex]!.name,
        `${base.entries[i]!.name}x`,
        'other/data.pkl',
        base.entries[rng.int(base.entries.length)]!.name,
      ]);
      return withEntries(
        base.entries.map((x, j) => (j === i ? { ...x, name: to } : x)),
        'rename entry',
      );
    }
  }
}

describe('torch.save reader fuzz', () => {
  let bases: Base[] = [];
  let temp: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    bases = await Promise.all(['dtypes.pth', 'views.pth', 'lightning.ckpt', 'model-container.pth'].map(loadBase));
    temp = await makeTempDir('pth-fuzz');
  });
  afterAll(async () => {
    await temp.cleanup();
  });

  it('600 mutated archives load consistently or fail with a CHECKPOINT_* error; file and buffer agree', async () => {
    const rng = new Rng(1234);
    const seen = new Map<string, number>();
    let loaded = 0;
    const memoryBefore = process.memoryUsage().arrayBuffers;
    let memoryPeak = memoryBefore;
    for (let i = 0; i < 600; i++) {
      const base = bases[i % bases.length]!;
      const { bytes, kind, verifyCrc } = mutate(base, rng);
      const where = `case ${i} (${base.name}: ${kind})`;
      const outcome = await readBuffer(bytes, where, verifyCrc);
      if (outcome.ok) loaded++;
      seen.set(kind, (seen.get(kind) ?? 0) + 1);
      memoryPeak = Math.max(memoryPeak, process.memoryUsage().arrayBuffers);
      if (i % 20 === 0) {
        const path = join(temp.dir, `case-${i}.pth`);
        await writeFile(path, bytes);
        let fromFile: Outcome;
        try {
          fromFile = { ok: true, summary: summarise((await readTorchCheckpointFile(path, { verifyCrc })).tensors, where) };
        } catch (err) {
          fromFile = classify(err, `${where} (file)`);
        }
        expect(fromFile.ok, where).toBe(outcome.ok);
        if (outcome.ok && fromFile.ok) expect(fromFile.summary, where).toBe(outcome.summary);
      }
    }
    // Every kind ran, some mutations still load (e.g. flips in unused bytes), and memory stayed small.
    expect(seen.size).toBe(9);
    expect(loaded).toBeGreaterThan(10);
    expect(loaded).toBeLessThan(590);
    expect(memoryPeak - memoryBefore).toBeLessThan(256 << 20);
  });

  it('unmodified bases load (the fuzz starts from valid files)', async () => {
    for (const base of bases) expect((await readBuffer(base.bytes, base.name)).ok, base.name).toBe(true);
  });
});
