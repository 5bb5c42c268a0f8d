// One safetensors file opened lazily: the header is read and validated on open, each tensor's bytes
// only when asked for. What sharded checkpoints and filtered reads are built on. Node-only.
import { VlError } from '../errors.js';
import { openFileSource, type FileSource } from './file-source.js';
import { deferredTensor } from './safetensors-deferred.js';
import { adoptTensor, parseSafetensorsHeader, readHeaderLength, type HostTensor, type SafetensorsHeader } from '../io/safetensors.js';

export interface SafetensorsShard {
  path: string;
  header: SafetensorsHeader;
  /** Tensor names in data order. */
  names: string[];
  /**
   * Reads the named tensors (each must exist), in the order given. With `defer`, F32 and I32
   * tensors are not read now: their bytes are read when used (see safetensors-deferred.ts).
   */
  read(names: readonly string[], options?: { defer?: boolean }): Promise<Map<string, HostTensor>>;
  close(): Promise<void>;
}

export async function openSafetensorsShard(path: string): Promise<SafetensorsShard> {
  const source: FileSource = await openFileSource(path);
  try {
    const prefix = await source.read(0, Math.min(8, source.size));
    const n = readHeaderLength(prefix, source.size, path);
    const header = parseSafetensorsHeader(await source.read(8, n), source.size - 8 - n, path);
    const dataStart = 8 + n;
    return {
      path,
      header,
      names: [...header.entries.keys()],
      async read(names, options = {}) {
        const stamp = { size: source.size, mtimeMs: source.mtimeMs };
        const out = new Map<string, HostTensor>();
        for (const name of names) {
          const entry = header.entries.get(name);
          if (!entry) {
            throw new VlError('CHECKPOINT_INVALID', `no tensor ${JSON.stringify(name)} in this file`, {
              subject: path,
              hint: 'the index and its shards disagree; download the checkpoint again',
            });
          }
          const [b, e] = entry.dataOffsets;
          if (options.defer && (entry.dtype === 'F32' || entry.dtype === 'I32')) {
            out.set(name, deferredTensor(path, stamp, name, entry, dataStart + b));
            continue;
          }
          // A fresh buffer of exactly this tensor: F32/I32 are used as they are, not copied.
          out.set(name, adoptTensor(name, entry, await source.read(dataStart + b, e - b), path));
        }
        return out;
      },
      close: () => source.close(),
    };
  } catch (cause) {
    await source.close().catch(() => undefined);
    throw cause;
  }
}
