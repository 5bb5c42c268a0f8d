// Reading an image file as a file, not a path: symlinks resolved and kept inside the dataset root,
// only regular files (a FIFO or a device is refused before it is read), a size cap checked on the
// open file before reading, and a read timeout.
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { sep } from 'node:path';
import type { DropReason } from '../data/records.js';

/** Files over this many bytes are not read (64 MiB: far above any training image). */
export const DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_IMAGE_READ_TIMEOUT_MS = 30_000;

/** Why an image file could not be read, as a record drop reason. */
export class ImageFileError extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message);
  }
}

export interface ImageFileOptions {
  /** The dataset root the resolved file must stay inside (null/undefined: anywhere). */
  root?: string | null;
  maxBytes?: number;
  timeoutMs?: number;
}

const code = (err: unknown) => (err as { code?: string }).code ?? 'EIO';

/** Resolves with `p`'s value, or rejects with `onTimeout()` after `ms` milliseconds. */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The bytes of an image file, or an ImageFileError with the reason the record fails with. */
export async function readImageFile(path: string, options: ImageFileOptions = {}): Promise<Uint8Array> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_IMAGE_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_IMAGE_READ_TIMEOUT_MS;
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    if (code(err) === 'ELOOP') throw new ImageFileError('unsafe_path', `symlink loop: ${path}`);
    throw new ImageFileError('missing_image', `${code(err)}: ${path}`);
  }
  if (options.root) {
    const root = await realpath(options.root).catch(() => options.root as string);
    if (real !== root && !real.startsWith(root.endsWith(sep) ? root : root + sep)) {
      throw new ImageFileError('unsafe_path', `${path} resolves to ${real}, outside the dataset root (symlink)`);
    }
  }
  // O_NOFOLLOW: the resolved name must not have become a symlink since; O_NONBLOCK: opening a FIFO
  // does not wait for a writer (it is refused below as not a regular file).
  let handle;
  try {
    handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (code(err) === 'ELOOP') throw new ImageFileError('unsafe_path', `${path} became a symlink`);
    throw new ImageFileError('missing_image', `${code(err)}: ${path}`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile())
      throw new ImageFileError(
        'not_a_file',
        `${path} is not a regular file (${st.isFIFO() ? 'FIFO' : st.isDirectory() ? 'folder' : 'device or socket'})`,
      );
    if (st.size > maxBytes) throw new ImageFileError('image_too_large', `${path} is ${st.size} bytes, over the limit of ${maxBytes}`);
    const bytes = new Uint8Array(st.size);
    const fh = handle;
    const readAll = async () => {
      let n = 0;
      while (n < bytes.length) {
        const { bytesRead } = await fh.read(bytes, n, bytes.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      return n;
    };
    const reading = readAll();
    reading.catch(() => undefined); // a read still running after the timeout fails when the file closes
    const n = await withTimeout(reading, timeoutMs, () => new ImageFileError('read_timeout', `reading ${path} took over ${timeoutMs} ms`));
    return n === bytes.length ? bytes : bytes.subarray(0, n);
  } catch (err) {
    if (err instanceof ImageFileError) throw err;
    throw new ImageFileError('missing_image', `${code(err)}: ${path}`);
  } finally {
    await handle.close().catch(() => undefined);
  }
}
