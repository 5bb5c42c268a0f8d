// safetensors on disk: error subjects are the path, writes are atomic (no temp left, old file kept on failure).
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../node/atomic.js';
import { writeSafetensors, type HostTensor } from '../safetensors.js';
import { readSafetensorsFile, readSafetensorsHeader, writeSafetensorsFile } from '../../node/safetensors-file.js';
import { catchVlErrorAsync, makeTempDir, sameBytes } from './helpers.js';

const weight: HostTensor = { dtype: 'float32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]), fileDtype: 'F32' };
const ids: HostTensor = { dtype: 'int32', shape: [1, 3], data: Int32Array.from([0, 1, 2]), fileDtype: 'I64' };

describe('safetensors files', () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    tmp = await makeTempDir('file');
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('writes the same bytes as writeSafetensors, reads them back, and leaves no temp file', async () => {
    const dir = join(tmp.dir, 'roundtrip');
    await mkdir(dir);
    const path = join(dir, 'model.safetensors');
    await writeSafetensorsFile(path, { weight, 'embeddings.position_ids': ids }, { format: 'pt' });
    expect(sameBytes(await readFile(path), writeSafetensors({ weight, 'embeddings.position_ids': ids }, { format: 'pt' }))).toBe(true);
    const read = await readSafetensorsFile(path);
    expect(read.metadata).toEqual({ format: 'pt' });
    expect(read.tensors.get('weight')).toEqual(weight);
    expect(read.tensors.get('embeddings.position_ids')).toEqual(ids);
    const header = await readSafetensorsHeader(path);
    expect([...header.entries]).toEqual([
      ['embeddings.position_ids', { dtype: 'I64', shape: [1, 3], dataOffsets: [0, 24] }],
      ['weight', { dtype: 'F32', shape: [2, 2], dataOffsets: [24, 40] }],
    ]);
    // Overwrite in place: still one file, new content.
    await writeSafetensorsFile(path, { weight });
    expect([...(await readSafetensorsFile(path)).tensors.keys()]).toEqual(['weight']);
    expect(await readdir(dir)).toEqual(['model.safetensors']);
  });

  it('a writer error (bad tensor) creates no file and keeps the old one', async () => {
    const path = join(tmp.dir, 'keep.safetensors');
    await writeSafetensorsFile(path, { weight });
    const before = await readFile(path);
    const err = await catchVlErrorAsync(() => writeSafetensorsFile(path, { bad: { ...weight, shape: [3] } }));
    expect(err.subject).toBe(path);
    expect(err.message).toContain('"bad"');
    expect(sameBytes(await readFile(path), before)).toBe(true);
    expect((await readdir(tmp.dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a failure while streaming removes the temp file and keeps the target', async () => {
    const dir = join(tmp.dir, 'atomic');
    await mkdir(dir);
    const path = join(dir, 'target.bin');
    await writeFile(path, 'old');
    await expect(
      writeFileAtomic(path, async (write) => {
        await write(new Uint8Array([1, 2, 3]));
        throw new Error('disk on fire');
      }),
    ).rejects.toThrow('disk on fire');
    expect(await readFile(path, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['target.bin']);
  });

  it('writing into a missing folder is a typed error naming the path', async () => {
    const path = join(tmp.dir, 'no/such/dir/model.safetensors');
    const err = await catchVlErrorAsync(() => writeSafetensorsFile(path, { weight }));
    expect(err.subject).toBe(path);
    expect(err.message).toMatch(/write failed: ENOENT/);
  });

  it('missing files and folders are typed errors naming the path', async () => {
    const missing = join(tmp.dir, 'missing.safetensors');
    const err = await catchVlErrorAsync(() => readSafetensorsFile(missing));
    expect(err.subject).toBe(missing);
    expect(err.message).toMatch(/cannot open: ENOENT/);
    expect(err.hint).toMatch(/path exists/);
    const dirErr = await catchVlErrorAsync(() => readSafetensorsHeader(tmp.dir));
    expect(dirErr.subject).toBe(tmp.dir);
    expect(dirErr.message).toMatch(/not a regular file|EISDIR/);
  });

  it('validation errors from files carry the path as subject', async () => {
    const path = join(tmp.dir, 'truncated.safetensors');
    const full = writeSafetensors({ weight });
    await writeFile(path, full.subarray(0, full.length - 1));
    const err = await catchVlErrorAsync(() => readSafetensorsFile(path));
    expect(err.subject).toBe(path);
    expect(err.message).toContain(`[${path}]`);
    expect(err.message).toMatch(/"weight".*run past the end of the data/);
  });
});
