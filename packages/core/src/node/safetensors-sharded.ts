// Sharded checkpoints in Hugging Face's layout: `model.safetensors.index.json` (or `pytorch_model.bin.index.json`)
// maps each tensor to a shard file in the same folder; shards are opened only when one of their tensors is read. Node-only.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { VlError } from '../errors.js';
import { JsonParseError, parseJsonStrict, type JsonValue } from '../io/json-strict.js';
import type { HostTensor } from '../io/safetensors.js';
import { openSafetensorsShard, type SafetensorsShard } from './safetensors-shard.js';
import type { CheckpointTensors, ReadTorchOptions } from '../io/torch-checkpoint.js';
import { readTorchCheckpointFile } from './torch-checkpoint-file.js';

/** An index larger than this is not an index (a real one for a 100B model is a few MB). */
export const MAX_INDEX_BYTES = 64 << 20;

export interface ShardIndex {
  path: string;
  /** Tensor name → shard file name (plain names in the index's folder), in the index's order. */
  weightMap: Map<string, string>;
  /** Shard file names in first-use order. */
  shards: string[];
  metadata: Record<string, JsonValue>;
}

function indexError(path: string, message: string): VlError {
  return new VlError('CHECKPOINT_INVALID', message, {
    subject: path,
    hint: 'the index is damaged; download model.safetensors.index.json again',
  });
}

/** Reads and checks an index: every shard is a plain file name in the same folder (no paths, no `..`). */
export async function readShardIndex(path: string): Promise<ShardIndex> {
  const info = await stat(path).catch((cause: Error) => {
    throw new VlError('CHECKPOINT_INVALID', `cannot read: ${cause.message}`, { subject: path, cause });
  });
  if (info.size > MAX_INDEX_BYTES) throw indexError(path, `the index is ${info.size} bytes, over the ${MAX_INDEX_BYTES}-byte limit`);
  let root: JsonValue;
  try {
    root = parseJsonStrict(await readFile(path, 'utf8'), { maxDepth: 8 });
  } catch (cause) {
    if (cause instanceof JsonParseError) throw indexError(path, `not valid JSON: ${cause.problem} (${cause.jsonPath})`);
    throw cause;
  }
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw indexError(path, 'the index must be a JSON object');
  const map = root['weight_map'];
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw indexError(path, '"weight_map" must be an object of tensor name → shard file');
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || file === '' || file === '.' || file === '..' || /[/\\\0]/.test(file)) {
      throw new VlError(
        'CHECKPOINT_UNSAFE',
        `"weight_map" sends ${JSON.stringify(name)} to ${JSON.stringify(file)}, which is not a plain file name in the index's folder`,
        {
          subject: path,
          hint: 'shards must sit next to the index; a path in weight_map is refused',
        },
      );
    }
    weightMap.set(name, file);
    if (!shards.includes(file)) shards.push(file);
  }
  if (weightMap.size === 0) throw indexError(path, '"weight_map" is empty');
  const metadata = root['metadata'];
  return {
    path,
    weightMap,
    shards,
    metadata: typeof metadata === 'object' && metadata !== null && !Array.isArray(metadata) ? metadata : {},
  };
}

export interface ShardedSafetensors {
  index: ShardIndex;
  names: string[];
  /** Reads the named tensors, opening only their shards; `defer` as in SafetensorsShard.read. */
  read(names?: readonly string[], options?: { defer?: boolean }): Promise<Map<string, HostTensor>>;
  close(): Promise<void>;
}

/** Opens a sharded safetensors checkpoint lazily: nothing but the index is read until `read`. */
export async function openShardedSafetensors(indexPath: string): Promise<ShardedSafetensors> {
  const index = await readShardIndex(indexPath);
  const folder = dirname(indexPath);
  const open = new Map<string, SafetensorsShard>();
  const shard = async (file: string): Promise<SafetensorsShard> => {
    let s = open.get(file);
    if (!s) {
      s = await openSafetensorsShard(join(folder, file));
      open.set(file, s);
    }
    return s;
  };
  return {
    index,
    names: [...index.weightMap.keys()],
    async read(names = [...index.weightMap.keys()], options = {}) {
      const byShard = new Map<string, string[]>();
      for (const name of names) {
        const file = index.weightMap.get(name);
        if (file === undefined)
          throw new VlError('CHECKPOINT_INVALID', `the index has no tensor ${JSON.stringify(name)}`, { subject: indexPath });
        const list = byShard.get(file);
        if (list) list.push(name);
        else byShard.set(file, [name]);
      }
      const read = new Map<string, HostTensor>();
      for (const [file, wanted] of byShard) for (const [k, v] of await (await shard(file)).read(wanted, options)) read.set(k, v);
      const out = new Map<string, HostTensor>();
      for (const name of names) out.set(name, read.get(name)!);
      return out;
    },
    async close() {
      for (const s of open.values()) await s.close().catch(() => undefined);
      open.clear();
    },
  };
}

/** Reads a sharded checkpoint (safetensors shards, or torch.save shards of `pytorch_model.bin.index.json`). */
export async function readShardedCheckpoint(
  indexPath: string,
  options: ReadTorchOptions & { deferData?: boolean } = {},
): Promise<CheckpointTensors> {
  const index = await readShardIndex(indexPath);
  const prefix = options.stripPrefix ?? '';
  const strip = (n: string): string => (prefix && n.startsWith(prefix) ? n.slice(prefix.length) : n);
  const wanted = [...index.weightMap.keys()].filter((n) => !options.filter || options.filter(strip(n)));
  const files = index.shards.map((f) => join(dirname(indexPath), f));
  const tensors = new Map<string, HostTensor>();
  if (index.shards.every((f) => f.endsWith('.safetensors'))) {
    const sharded = await openShardedSafetensors(indexPath);
    try {
      for (const [k, v] of await sharded.read(wanted, { defer: options.deferData })) tensors.set(strip(k), v);
    } finally {
      await sharded.close();
    }
    return {
      tensors,
      report: {
        format: 'safetensors-sharded',
        files,
        container: '(root)',
        strippedPrefix: prefix,
        otherKeys: [],
        placeholders: [],
        skipped: [],
      },
    };
  }
  // torch.save shards: each a bare state dict; read only the names the index gives that shard.
  const placeholders = new Set<string>();
  const read = new Map<string, HostTensor>();
  for (const file of index.shards) {
    const mine = new Set(wanted.filter((n) => index.weightMap.get(n) === file));
    if (mine.size === 0) continue;
    const part = await readTorchCheckpointFile(join(dirname(indexPath), file), { ...options, stripPrefix: '', filter: (n) => mine.has(n) });
    for (const p of part.report.placeholders) placeholders.add(p);
    for (const name of mine) {
      const t = part.tensors.get(name);
      if (!t)
        throw new VlError('CHECKPOINT_INVALID', `the index puts ${JSON.stringify(name)} in ${file}, which does not hold it`, {
          subject: indexPath,
        });
      read.set(name, t);
    }
  }
  for (const name of wanted) tensors.set(strip(name), read.get(name)!);
  return {
    tensors,
    report: {
      format: 'torch',
      files,
      container: '(root)',
      strippedPrefix: prefix,
      otherKeys: [],
      placeholders: [...placeholders],
      skipped: [],
    },
  };
}
