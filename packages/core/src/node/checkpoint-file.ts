// Reading a checkpoint from disk in any supported format — a folder, a .safetensors file, a sharded
// index, or a torch.save .pth/.pt/.bin — into a host state dict. The one seam model loaders call. Node-only.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VlError } from '../errors.js';
import { sniffCheckpoint, SNIFF_BYTES, unsupportedFormatError } from '../io/checkpoint-format.js';
import { readShardedCheckpoint } from './safetensors-sharded.js';
import { openSafetensorsShard } from './safetensors-shard.js';
import type { CheckpointTensors, ReadTorchOptions } from '../io/torch-checkpoint.js';
import { readTorchCheckpointFile } from './torch-checkpoint-file.js';
import { IO_HINT, withFileSource } from './file-source.js';
import type { HostTensor } from '../io/safetensors.js';

export interface ReadCheckpointOptions extends ReadTorchOptions {
  /**
   * Safetensors only (one file or shards): F32 and I32 tensors are not read now but when used —
   * `data` on first access, or `readInto` straight into backend memory, which loadStateDict does
   * on wasm (see io/safetensors.ts DeferredHostTensor). For a checkpoint that is loaded into a
   * model right away; the file must stay in place until then (a file replaced meanwhile is a
   * CHECKPOINT_INVALID error at load, which leaves the model partly loaded: dispose it). The reads
   * are synchronous and block the event loop for each tensor. Default false.
   */
  deferData?: boolean;
}

/** File names looked for in a folder, in order of preference (safetensors first: fast and code-free). */
export const CHECKPOINT_FILE_NAMES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'open_clip_model.safetensors',
  'pytorch_model.bin',
  'pytorch_model.pth',
  'pytorch_model.bin.index.json',
  'open_clip_pytorch_model.bin',
] as const;

const WEIGHT_EXTENSIONS = /\.(safetensors|pth|pt|bin|ckpt)$/;

/** The weights file of a folder: a known name, else the only weights-like file in it. */
export async function findCheckpointFile(dir: string): Promise<string> {
  const names = await readdir(dir);
  for (const known of CHECKPOINT_FILE_NAMES) if (names.includes(known)) return join(dir, known);
  const candidates = names.filter((n) => WEIGHT_EXTENSIONS.test(n)).sort();
  if (candidates.length === 1) return join(dir, candidates[0]!);
  throw new VlError(
    'CHECKPOINT_INVALID',
    candidates.length === 0
      ? 'the folder holds no checkpoint file'
      : `the folder holds ${candidates.length} possible checkpoints (${candidates.slice(0, 6).join(', ')})`,
    {
      subject: dir,
      hint: `pass the file itself, or use one of the names ${CHECKPOINT_FILE_NAMES.join(', ')}`,
    },
  );
}

/**
 * Reads a checkpoint into a host state dict: `path` is a folder (see CHECKPOINT_FILE_NAMES) or a file —
 * a .safetensors file, a sharded `*.index.json` (safetensors or torch shards), or a torch.save zip
 * (.pth/.pt/.bin/.ckpt). The format is taken from the file's bytes, not its name. For torch files the
 * state dict is found as `locateStateDict` says (`key`, `stripPrefix`); only its tensors are read, and
 * only those `filter` accepts. The report says which files, where the state dict was, what was skipped.
 */
export async function readCheckpoint(path: string, options: ReadCheckpointOptions = {}): Promise<CheckpointTensors> {
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new VlError('CHECKPOINT_INVALID', `cannot read: ${(cause as Error).message}`, { subject: path, hint: IO_HINT, cause });
  }
  const file = info.isDirectory() ? await findCheckpointFile(path) : path;
  if (file.endsWith('.json')) return readShardedCheckpoint(file, options);
  const format = await withFileSource(file, async (source) => sniffCheckpoint(await source.read(0, Math.min(SNIFF_BYTES, source.size))));
  if (format === 'torch-zip') return readTorchCheckpointFile(file, options);
  if (format !== 'safetensors') throw unsupportedFormatError(file, format);
  if (options.key !== undefined && options.key !== '') {
    throw new VlError(
      'INVALID_ARGUMENT',
      `key ${JSON.stringify(options.key)} was given, but a safetensors file holds one flat state dict`,
      {
        subject: file,
        hint: 'leave the key out for safetensors files',
      },
    );
  }
  const shard = await openSafetensorsShard(file);
  try {
    const prefix = options.stripPrefix ?? '';
    const wanted = shard.names.filter((n) => !options.filter || options.filter(strip(n, prefix)));
    const tensors = new Map<string, HostTensor>();
    for (const [name, t] of await shard.read(wanted, { defer: options.deferData })) tensors.set(strip(name, prefix), t);
    return {
      tensors,
      report: {
        format: 'safetensors',
        files: [file],
        container: '(root)',
        strippedPrefix: prefix,
        otherKeys: [],
        placeholders: [],
        skipped: [],
      },
    };
  } finally {
    await shard.close();
  }
}

function strip(name: string, prefix: string): string {
  return prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name;
}
