// The torch.save reader on real files: every shared reference .pth loads bit-identically to its safetensors
// twin, and the generator's files (dtypes, views, containers, Lightning, deflate, big-endian, shards) read exactly.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../node/checkpoint-file.js';
import { readSafetensorsFile } from '../../node/safetensors-file.js';
import { readTorchCheckpoint } from '../torch-checkpoint.js';
import { readTorchCheckpointFile } from '../../node/torch-checkpoint-file.js';
import { bytesSource, readZipDirectory, readZipEntry } from '../zip.js';
import { catchVlErrorAsync, FIXTURES_DIR, sameBytes } from './helpers.js';
import { buildZip, expectTensor, PTH_FIXTURE_FOLDERS, TORCH_FIXTURES, type ExpectedTensor } from './torch-helpers.js';

async function expected(name: string): Promise<Record<string, ExpectedTensor>> {
  return JSON.parse(await readFile(join(TORCH_FIXTURES, name), 'utf8')) as Record<string, ExpectedTensor>;
}

describe('reference pytorch_model.pth files load bit-identically to their model.safetensors', () => {
  for (const folder of PTH_FIXTURE_FOLDERS) {
    it(folder, async () => {
      const dir = join(FIXTURES_DIR, folder);
      const pth = await readTorchCheckpointFile(join(dir, 'pytorch_model.pth'));
      const st = await readSafetensorsFile(join(dir, 'model.safetensors'));
      expect([...pth.tensors.keys()].sort()).toEqual([...st.tensors.keys()].sort());
      for (const [name, want] of st.tensors) {
        const got = pth.tensors.get(name)!;
        expect(got.shape, name).toEqual(want.shape);
        expect(got.fileDtype, name).toBe(want.fileDtype);
        expect(sameBytes(got.data, want.data), name).toBe(true);
      }
      // BLIP and BEiT-3 release {"model": state_dict}; VLMo and OpenCLIP the bare state dict.
      const wrapped = folder.startsWith('blip-official') || folder.startsWith('beit3-official');
      expect(pth.report.container).toBe(wrapped ? 'model' : '(root)');
      expect(pth.report.placeholders).toEqual([]);
    });
  }
});

describe('generated torch.save files', () => {
  it('reads every dtype: F32, F16, BF16, F64, I64, I32, I16, I8, U8, bool, 0-d and empty', async () => {
    const want = await expected('dtypes.expected.json');
    const { tensors } = await readCheckpoint(join(TORCH_FIXTURES, 'dtypes.pth'));
    expect([...tensors.keys()]).toEqual(Object.keys(want));
    for (const [name, w] of Object.entries(want)) expectTensor(name, tensors.get(name), w);
  });

  it('reads deflated entries and big-endian archives to the same values', async () => {
    const want = await expected('dtypes.expected.json');
    for (const file of ['dtypes-deflated.pth', 'dtypes-big-endian.pth']) {
      const { tensors } = await readCheckpoint(join(TORCH_FIXTURES, file));
      for (const [name, w] of Object.entries(want)) expectTensor(`${file}:${name}`, tensors.get(name), w);
    }
  });

  it('honours strides and storage offsets: tied weights, transposes, slices, expands', async () => {
    const want = await expected('views.expected.json');
    const { tensors } = await readCheckpoint(join(TORCH_FIXTURES, 'views.pth'));
    for (const [name, w] of Object.entries(want)) expectTensor(name, tensors.get(name), w);
    // Tied names hold equal values but separate memory, so updating one cannot silently change the other.
    expect(tensors.get('embed.weight')!.data).not.toBe(tensors.get('decoder.weight')!.data);
  });

  it('finds a Lightning state dict, strips its module prefix and lists the objects it did not run', async () => {
    const want = await expected('lightning.expected.json');
    const { tensors, report } = await readCheckpoint(join(TORCH_FIXTURES, 'lightning.ckpt'));
    for (const [name, w] of Object.entries(want)) expectTensor(name, tensors.get(name), w);
    expect(report.container).toBe('state_dict');
    expect(report.strippedPrefix).toBe('model.');
    expect(report.otherKeys).toEqual(expect.arrayContaining(['epoch', 'global_step', 'optimizer_states', 'hyper_parameters', 'callbacks']));
    expect(report.placeholders).toEqual(['argparse.Namespace ×1']);
  });

  it('takes the prefix as given when asked, and another key when named', async () => {
    const kept = await readCheckpoint(join(TORCH_FIXTURES, 'lightning.ckpt'), { stripPrefix: '' });
    expect([...kept.tensors.keys()].every((k) => k.startsWith('model.'))).toBe(true);
    const err = await catchVlErrorAsync(
      () => readCheckpoint(join(TORCH_FIXTURES, 'lightning.ckpt'), { key: 'hyper_parameters' }),
      'CHECKPOINT_INVALID',
    );
    expect(err.message).toContain('"hyper_parameters" holds a placeholder argparse.Namespace');
  });

  it('finds {"model": …} (BLIP/ALBEF training files) and {"module": …} with DataParallel prefixes', async () => {
    const want = await expected('model-container.expected.json');
    const a = await readCheckpoint(join(TORCH_FIXTURES, 'model-container.pth'));
    expect(a.report.container).toBe('model');
    expect(a.report.otherKeys).toEqual(['optimizer', 'config', 'epoch']);
    const b = await readCheckpoint(join(TORCH_FIXTURES, 'module-container.pt'));
    expect(b.report).toMatchObject({ container: 'module', strippedPrefix: 'module.' });
    const c = await readCheckpoint(join(TORCH_FIXTURES, 'parameters.pth'));
    expect(c.report.container).toBe('(root)');
    for (const r of [a, b, c]) for (const [name, w] of Object.entries(want)) expectTensor(name, r.tensors.get(name), w);
  });

  it("reads only the chosen state dict: the optimizer's storages may even be missing", async () => {
    const bytes = new Uint8Array(await readFile(join(TORCH_FIXTURES, 'model-container.pth')));
    const zip = await readZipDirectory(bytesSource(bytes, 'model-container.pth'));
    const full = await readCheckpoint(join(TORCH_FIXTURES, 'model-container.pth'));
    // The model's four tensors use storages 0-3; the optimizer's exp_avg etc. use the rest.
    const keep = [...zip.entries.values()].filter((e) => !/\/data\/([4-9]|\d\d)$/.test(e.name));
    expect(keep.length).toBeLessThan(zip.entries.size);
    const pruned = buildZip(
      await Promise.all(keep.map(async (e) => ({ name: e.name, data: await readZipEntry(zip, e, { maxBytes: 1 << 20 }) }))),
    );
    const { tensors } = await readTorchCheckpoint(bytesSource(pruned, 'pruned.pth'));
    for (const [name, t] of full.tensors) expect(sameBytes(tensors.get(name)!.data, t.data), name).toBe(true);
  });

  it('reads only the tensors a filter accepts', async () => {
    const { tensors } = await readCheckpoint(join(TORCH_FIXTURES, 'dtypes.pth'), { filter: (n) => n.startsWith('f') });
    expect([...tensors.keys()]).toEqual(['f32', 'f16', 'f64']);
  });

  it('reads a sharded torch checkpoint (pytorch_model.bin.index.json), by folder or by index', async () => {
    const want = await expected('dtypes.expected.json');
    for (const path of [join(TORCH_FIXTURES, 'sharded-bin'), join(TORCH_FIXTURES, 'sharded-bin', 'pytorch_model.bin.index.json')]) {
      const { tensors, report } = await readCheckpoint(path);
      expect(report.files).toHaveLength(2);
      expect([...tensors.keys()]).toEqual(Object.keys(want));
      for (const [name, w] of Object.entries(want)) expectTensor(name, tensors.get(name), w);
    }
  });

  it('reads the Hugging Face BLIP fixture saved as pytorch_model.bin bit-identically to its model.safetensors', async () => {
    const bin = await readCheckpoint(join(TORCH_FIXTURES, 'blip-hf-captioning.bin'));
    const st = await readSafetensorsFile(join(FIXTURES_DIR, 'blip-hf/blip-captioning-seed0/model.safetensors'));
    expect(bin.tensors.size).toBe(st.tensors.size);
    for (const [name, want] of st.tensors) {
      expect(bin.tensors.get(name)?.shape, name).toEqual(want.shape);
      expect(sameBytes(bin.tensors.get(name)!.data, want.data), name).toBe(true);
    }
  });

  it('refuses the legacy (pre-1.6) format, naming it and how to convert', async () => {
    const err = await catchVlErrorAsync(() => readCheckpoint(join(TORCH_FIXTURES, 'legacy.pth')), 'CHECKPOINT_UNSUPPORTED');
    expect(err.message).toContain('legacy torch.save format');
    expect(err.subject).toContain('legacy.pth');
    expect(err.hint).toContain('torch.save(torch.load(');
  });

  it('reads a folder, preferring model.safetensors over pytorch_model.pth', async () => {
    const dir = join(FIXTURES_DIR, PTH_FIXTURE_FOLDERS[0]);
    const { report } = await readCheckpoint(dir);
    expect(report.format).toBe('safetensors');
    expect(report.files).toEqual([join(dir, 'model.safetensors')]);
  });
});
