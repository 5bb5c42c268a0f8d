// Hostile and damaged torch.save files: each fails with a typed CHECKPOINT_* error naming the file and the
// entry, quickly and without large allocations; nothing a pickle names is ever run.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VlError, VlErrorCode } from '../../errors.js';
import { readCheckpoint } from '../../node/checkpoint-file.js';
import { PickleObject, type PyDict, unpickle } from '../pickle.js';
import { readTorchCheckpoint } from '../torch-checkpoint.js';
import { findTorchGlobal, TorchStorageRef, TorchStorageType } from '../torch-pickle.js';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { bytesSource, crc32, readZipDirectory, readZipEntry } from '../zip.js';
import { catchVlErrorAsync, FIXTURES_DIR, makeTempDir } from './helpers.js';
import { buildZip, f32Bytes, PickleWriter, stateDictPickle, torchZip, TORCH_FIXTURES, type ZipInput } from './torch-helpers.js';

const BLIP_PTH = join(FIXTURES_DIR, 'blip-official/blipofficial-decoder-seed0/pytorch_model.pth');

async function fails(bytes: Uint8Array, code: VlErrorCode, name = 'bad.pth'): Promise<VlError> {
  return catchVlErrorAsync(() => readTorchCheckpoint(bytesSource(bytes, name)), code);
}

/** A valid two-tensor archive; `edit` changes its entries before zipping. */
function archive(edit: (entries: ZipInput[]) => ZipInput[] = (e) => e): Uint8Array {
  const pkl = stateDictPickle({
    a: { key: '0', numel: 4, shape: [2, 2] },
    b: { key: '1', numel: 3, shape: [3] },
  });
  const entries: ZipInput[] = [
    { name: 'archive/data.pkl', data: pkl },
    { name: 'archive/data/0', data: f32Bytes([1, 2, 3, 4]) },
    { name: 'archive/data/1', data: f32Bytes([5, 6, 7]) },
    { name: 'archive/version', data: new TextEncoder().encode('3\n') },
  ];
  return buildZip(edit(entries));
}

/** An archive holding one tensor described by `spec` over a storage of `numel` floats. */
function oneTensor(spec: Parameters<PickleWriter['tensor']>[0], storageFloats = spec.numel): Uint8Array {
  return torchZip(stateDictPickle({ t: spec }), { [spec.key]: f32Bytes(Array.from({ length: storageFloats }, (_, i) => i)) });
}

/** An archive whose data.pkl is `pkl`, with one float storage '0' of 4 elements. */
function withPickle(pkl: Uint8Array): Uint8Array {
  return torchZip(pkl, { '0': f32Bytes([1, 2, 3, 4]) });
}

describe('the hand-made archive itself', () => {
  it('reads (so every failure below comes from the one thing changed)', async () => {
    const { tensors } = await readTorchCheckpoint(bytesSource(archive()));
    expect(Array.from(tensors.get('a')!.data)).toEqual([1, 2, 3, 4]);
    expect(tensors.get('a')!.shape).toEqual([2, 2]);
    expect(Array.from(tensors.get('b')!.data)).toEqual([5, 6, 7]);
  });
});

describe('damaged archives', () => {
  it('a truncated zip fails as CHECKPOINT_INVALID naming the file', async () => {
    const bytes = new Uint8Array(await readFile(BLIP_PTH));
    for (const keep of [0, 10, 100, bytes.length >> 1, bytes.length - 30, bytes.length - 1]) {
      const err = await fails(bytes.subarray(0, keep), 'CHECKPOINT_INVALID', 'cut.pth');
      expect(err.subject, `cut at ${keep}`).toContain('cut.pth');
    }
  });

  it('a truncated file on disk fails the same way through readCheckpoint', async () => {
    const { dir, cleanup } = await makeTempDir('pth-cut');
    try {
      const bytes = await readFile(BLIP_PTH);
      const path = join(dir, 'cut.pth');
      await writeFile(path, bytes.subarray(0, bytes.length - 100));
      const err = await catchVlErrorAsync(() => readCheckpoint(path), 'CHECKPOINT_INVALID');
      expect(err.subject).toContain(path);
    } finally {
      await cleanup();
    }
  });

  it('a missing storage entry names the entry', async () => {
    const err = await fails(
      archive((e) => e.filter((x) => x.name !== 'archive/data/1')),
      'CHECKPOINT_INVALID',
    );
    expect(err.subject).toBe('bad.pth: archive/data/1');
    expect(err.message).toContain('storage 1 is referenced by the pickle');
  });

  it('a storage shorter than the pickle declares names the entry and both sizes', async () => {
    const bytes = archive((e) => e.map((x) => (x.name === 'archive/data/0' ? { ...x, data: f32Bytes([1, 2, 3]) } : x)));
    const err = await fails(bytes, 'CHECKPOINT_INVALID');
    expect(err.subject).toBe('bad.pth: archive/data/0');
    expect(err.message).toContain('12 bytes, shorter than the 16 bytes of FloatStorage×4');
  });

  it('a tensor larger than its storage (shape, offset or stride outside it) names the tensor and entry', async () => {
    const cases = [
      { key: '0', numel: 4, shape: [5] },
      { key: '0', numel: 4, shape: [2, 2], offset: 1 },
      { key: '0', numel: 4, shape: [2, 2], stride: [3, 1] },
      { key: '0', numel: 4, shape: [2], stride: [2 ** 52] },
    ];
    for (const spec of cases) {
      const err = await fails(oneTensor(spec, 4), 'CHECKPOINT_INVALID');
      expect(err.subject).toBe('bad.pth: archive/data/0');
      expect(err.message).toMatch(/tensor "t": .*outside its storage of 4/);
    }
  });

  it('a CRC mismatch is reported for the damaged entry', async () => {
    const bytes = archive();
    const zip = await readZipDirectory(bytesSource(bytes));
    const entry = zip.entries.get('archive/data/1')!;
    const copy = bytes.slice();
    copy[entry.localHeaderOffset + 30 + entry.name.length]! ^= 0x40; // first data byte
    const err = await fails(copy, 'CHECKPOINT_INVALID');
    expect(err.subject).toBe('bad.pth: archive/data/1');
    expect(err.message).toContain('CRC-32');
  });

  it('a zip that is not a torch.save archive (no data.pkl, or TorchScript) is named as such', async () => {
    const none = await fails(buildZip([{ name: 'a/readme.txt', data: new Uint8Array(3) }]), 'CHECKPOINT_INVALID');
    expect(none.message).toContain('no data.pkl');
    const jit = archive((e) => [
      ...e,
      { name: 'archive/code/__torch__.py', data: new Uint8Array(1) },
      { name: 'archive/constants.pkl', data: new Uint8Array([0x80, 2, 0x29, 0x2e]) },
    ]);
    expect((await fails(jit, 'CHECKPOINT_UNSUPPORTED')).message).toContain('TorchScript');
  });

  it('int64 values beyond int32 name the tensor (tfjs holds no int64)', async () => {
    const big = new Uint8Array(new BigInt64Array([1n, 1n << 40n]).buffer);
    const err = await fails(
      torchZip(stateDictPickle({ ids: { key: '0', numel: 2, shape: [2], storageType: 'LongStorage' } }), { '0': big }),
      'CHECKPOINT_INVALID',
    );
    expect(err.subject).toBe('bad.pth: archive/data/0');
    expect(err.message).toContain('"ids"');
  });
});

describe('hostile pickles', () => {
  it('an unknown opcode names data.pkl and the byte', async () => {
    const pkl = Uint8Array.from([0x80, 2, 0x7d, 0xff, 0x2e]);
    const err = await fails(withPickle(pkl), 'CHECKPOINT_INVALID');
    expect(err.subject).toBe('bad.pth: archive/data.pkl');
    expect(err.message).toContain('pickle byte 3: unknown opcode 0xff');
  });

  it('os.system is refused as CHECKPOINT_UNSAFE, never called', async () => {
    const pkl = new PickleWriter().global('os', 'system').mark().str('touch /tmp/vl-pwned').tuple().reduce().stop();
    const err = await fails(withPickle(pkl), 'CHECKPOINT_UNSAFE');
    expect(err.subject).toBe('bad.pth: archive/data.pkl');
    expect(err.message).toContain('os.system');
  });

  it('builtins.eval, posix.system through STACK_GLOBAL, subprocess and getattr are refused too', async () => {
    const proto4 = (mod: string, name: string): Uint8Array => {
      const w = new PickleWriter().str(mod).str(name).op(0x93).mark().str('1+1').tuple().reduce();
      return w.stop();
    };
    for (const [mod, name] of [
      ['builtins', 'eval'],
      ['__builtin__', 'exec'],
      ['posix', 'system'],
      ['subprocess', 'Popen'],
      ['builtins', 'getattr'],
      ['nt', 'system'],
    ]) {
      const err = await fails(withPickle(proto4(mod!, name!)), 'CHECKPOINT_UNSAFE');
      expect(err.message).toContain(`${mod}.${name}`);
    }
  });

  it('a __reduce__ of anything off the allow-list becomes an inert placeholder that records its arguments', async () => {
    // {'t': tensor, 'cfg': mypkg.Config('x', 3)} with a BUILD state on the placeholder.
    const w = new PickleWriter()
      .op(0x7d)
      .mark()
      .str('t')
      .tensor({ key: '0', numel: 4, shape: [4] });
    w.str('cfg').global('mypkg.config', 'Config').mark().str('x').int(3).tuple().reduce().op(0x7d).str('depth').int(2).op(0x73, 0x62);
    const pkl = w.op(0x75).stop();
    const storage = new TorchStorageRef('0', new TorchStorageType('FloatStorage', 'F32'), 4, 'cpu');
    const result = unpickle(pkl, { findGlobal: findTorchGlobal, persistentLoad: () => storage }, { subject: 'x' });
    const cfg = (result.value as PyDict).map.get('cfg');
    expect(cfg).toBeInstanceOf(PickleObject);
    expect((cfg as PickleObject).global.qualifiedName).toBe('mypkg.config.Config');
    expect((cfg as PickleObject).args).toEqual(['x', 3]);
    expect(((cfg as PickleObject).state as PyDict).map.get('depth')).toBe(2);
    expect(result.placeholders).toEqual(new Map([['mypkg.config.Config', 1]]));
    // The tensor still loads; the placeholder is reported as skipped, never called.
    const { tensors, report } = await readTorchCheckpoint(bytesSource(withPickle(pkl)));
    expect([...tensors.keys()]).toEqual(['t']);
    expect(report.placeholders).toEqual(['mypkg.config.Config ×1']);
    expect(report.skipped).toEqual(['cfg: a placeholder mypkg.config.Config(…) (not allow-listed, not run)']);
  });

  it('a placeholder where the state dict should be is an error, not a call', async () => {
    const pkl = new PickleWriter().global('evil', 'Loader').mark().str('x').tuple().reduce().stop();
    const err = await fails(withPickle(pkl), 'CHECKPOINT_INVALID');
    expect(err.message).toContain('no state dict found: the top level is a placeholder evil.Loader');
    expect(err.hint).toContain('pickled Python object');
  });

  it('deep nesting fails or is handled without recursion', async () => {
    const marks = new PickleWriter();
    for (let i = 0; i < 100_000; i++) marks.mark();
    const err = await fails(withPickle(marks.stop()), 'CHECKPOINT_INVALID');
    expect(err.message).toContain('nests MARKs deeper than 256');
    // 100k lists nested by APPEND (no MARK): read iteratively, then refused as not a state dict.
    const lists = new PickleWriter();
    for (let i = 0; i < 100_000; i++) lists.op(0x5d);
    for (let i = 0; i < 99_999; i++) lists.op(0x61);
    const deep = await fails(withPickle(lists.stop()), 'CHECKPOINT_INVALID');
    expect(deep.message).toContain('the top level is a list');
  });

  it('a 2^40-element declared shape fails before anything is allocated', async () => {
    const t0 = performance.now();
    const dense = await fails(oneTensor({ key: '0', numel: 4, shape: [2 ** 20, 2 ** 20] }, 4), 'CHECKPOINT_INVALID');
    expect(dense.message).toContain('outside its storage');
    const broadcast = await fails(oneTensor({ key: '0', numel: 4, shape: [2 ** 20, 2 ** 20], stride: [0, 0] }, 4), 'CHECKPOINT_INVALID');
    expect(broadcast.message).toContain('declares 1099511627776 elements on a storage of 4');
    const declared = await fails(oneTensor({ key: '0', numel: 2 ** 40, shape: [2 ** 40] }, 4), 'CHECKPOINT_INVALID');
    expect(declared.message).toContain('shorter than the 4398046511104 bytes');
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('storage keys that are not plain names, and storages declared twice differently, are refused', async () => {
    const bad = await fails(oneTensor({ key: '../../etc/passwd', numel: 4, shape: [4] }), 'CHECKPOINT_INVALID');
    expect(bad.message).toContain('not a plain string');
    const w = new PickleWriter()
      .op(0x7d)
      .mark()
      .str('a')
      .tensor({ key: '0', numel: 4, shape: [4] });
    w.str('b').tensor({ key: '0', numel: 2, shape: [2], storageType: 'LongStorage' });
    const err = await fails(withPickle(w.op(0x75).stop()), 'CHECKPOINT_INVALID');
    expect(err.message).toContain('storage 0 is declared twice');
  });
});

describe('zip bombs', () => {
  let bomb: Uint8Array;
  beforeAll(() => {
    bomb = new Uint8Array(16 << 20); // 16 MiB of zeros deflates to ~16 KB
  });
  afterAll(() => {
    bomb = new Uint8Array(0);
  });

  it('a deflated storage that inflates past its declared size stops there', async () => {
    const bytes = archive((e) =>
      e.map((x) => (x.name === 'archive/data/0' ? { name: x.name, data: bomb, deflate: true, declaredSize: 16 } : x)),
    );
    const err = await fails(bytes, 'CHECKPOINT_INVALID');
    expect(err.subject).toBe('bad.pth: archive/data/0');
    expect(err.message).toContain('inflates past its declared 16 bytes');
  });

  it('a data.pkl declaring more than deflate can produce, or more than the limit, is refused before inflating', async () => {
    const lie = archive((e) => e.map((x) => (x.name === 'archive/data.pkl' ? { ...x, deflate: true, declaredSize: 4_000_000_000 } : x)));
    const err = await fails(lie, 'CHECKPOINT_INVALID');
    expect(err.subject).toBe('bad.pth: archive/data.pkl');
    expect(err.message).toMatch(/over the \d+-byte limit|more than deflate can produce/);
    const big = archive((e) => e.map((x) => (x.name === 'archive/data.pkl' ? { name: x.name, data: bomb, deflate: true } : x)));
    const capped = await catchVlErrorAsync(
      () => readTorchCheckpoint(bytesSource(big, 'bad.pth'), { maxPickleBytes: 1 << 20 }),
      'CHECKPOINT_INVALID',
    );
    expect(capped.message).toContain('over the 1048576-byte limit');
  });
});

describe('sharded indexes', () => {
  it('a weight_map entry that is a path (../) is refused as CHECKPOINT_UNSAFE', async () => {
    const { dir, cleanup } = await makeTempDir('shard-unsafe');
    try {
      const index = join(dir, 'model.safetensors.index.json');
      await writeFile(index, JSON.stringify({ weight_map: { w: '../../outside.safetensors' } }));
      const err = await catchVlErrorAsync(() => readCheckpoint(index), 'CHECKPOINT_UNSAFE');
      expect(err.subject).toBe(index);
    } finally {
      await cleanup();
    }
  });

  it('an index that sends a tensor to a shard without it names the shard', async () => {
    const { dir, cleanup } = await makeTempDir('shard-missing');
    try {
      await mkdir(dir, { recursive: true });
      const src = await readFile(join(TORCH_FIXTURES, 'sharded-bin', 'pytorch_model-00001-of-00002.bin'));
      await writeFile(join(dir, 'a.bin'), src);
      const index = join(dir, 'pytorch_model.bin.index.json');
      await writeFile(index, JSON.stringify({ weight_map: { f32: 'a.bin', nothere: 'a.bin' } }));
      const err = await catchVlErrorAsync(() => readCheckpoint(index), 'CHECKPOINT_INVALID');
      expect(err.message).toContain('puts "nothere" in a.bin');
    } finally {
      await cleanup();
    }
  });
});

describe('zip entries read back as written', () => {
  it('the portable CRC-32 agrees with zlib', () => {
    const bytes = Uint8Array.from({ length: 100_003 }, (_, i) => (i * 2654435761) >>> 24);
    for (const b of [new Uint8Array(0), bytes.subarray(0, 1), bytes]) expect(crc32(b)).toBe(zlibCrc32(b) >>> 0);
  });

  it('stored and deflated entries round-trip through the reader', async () => {
    const data = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff);
    const zip = await readZipDirectory(
      bytesSource(
        buildZip([
          { name: 's', data },
          { name: 'd', data, deflate: true },
        ]),
      ),
    );
    for (const name of ['s', 'd']) {
      const got = await readZipEntry(zip, zip.entries.get(name)!, { maxBytes: 1 << 20 });
      expect(Buffer.compare(Buffer.from(got), Buffer.from(data)), name).toBe(0);
    }
  });
});
