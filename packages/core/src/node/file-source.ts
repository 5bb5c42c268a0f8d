// Random access to a file on disk as a ByteSource (what the zip and safetensors readers read from). Node-only.
import { open, type FileHandle } from 'node:fs/promises';
import { isVlError, VlError } from '../errors.js';
import type { ByteSource } from '../io/zip.js';

export const IO_HINT = 'check that the path exists, is a regular file and is readable';

/** A ByteSource over an open file; reads go straight to the file, nothing is cached. */
export interface FileSource extends ByteSource {
  /** Modification time when opened: with `size`, how a later read tells the file was replaced. */
  mtimeMs: number;
  close(): Promise<void>;
}

/** Opens `path` for random access. Failures are CHECKPOINT_INVALID naming the path. */
export async function openFileSource(path: string): Promise<FileSource> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    throw new VlError('CHECKPOINT_INVALID', `cannot open: ${(cause as Error).message}`, { subject: path, hint: IO_HINT, cause });
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new VlError('CHECKPOINT_INVALID', 'not a regular file', { subject: path, hint: IO_HINT });
  }
  const size = info.size;
  return {
    name: path,
    size,
    mtimeMs: info.mtimeMs,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size) {
        throw new VlError('CHECKPOINT_INVALID', `bytes [${offset}, ${offset + length}) are outside the file (${size} bytes)`, {
          subject: path,
        });
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw new VlError('CHECKPOINT_INVALID', `file ended at byte ${offset + done} while reading [${offset}, ${offset + length})`, {
            subject: path,
            hint: 'the file changed while being read (still downloading?); retry when it is complete',
          });
        }
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
}

/** Runs `body` on an open file and closes it; non-VlError failures become CHECKPOINT_INVALID naming the file. */
export async function withFileSource<T>(path: string, body: (source: FileSource) => Promise<T>): Promise<T> {
  const source = await openFileSource(path);
  try {
    return await body(source);
  } catch (cause) {
    if (isVlError(cause)) throw cause;
    throw new VlError('CHECKPOINT_INVALID', `read failed: ${(cause as Error).message}`, { subject: path, hint: IO_HINT, cause });
  } finally {
    await source.close().catch(() => undefined);
  }
}
