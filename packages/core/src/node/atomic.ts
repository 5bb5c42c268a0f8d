// Atomic file replacement: write a temp file in the same folder, fsync it, rename it over the
// target, fsync the folder. A crash leaves the old file or the new one, never half of either.
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** Appends bytes to the file being written; resolves once they are all handed to the OS. */
export type WriteChunk = (chunk: Uint8Array) => Promise<void>;

/**
 * Writes `path` atomically: `fill` streams the content through `write` into a temp file beside the
 * target (same folder, so the rename cannot cross file systems). Errors are Node's own; the temp
 * file is removed on failure and the target is left as it was.
 */
export async function writeFileAtomic(path: string, fill: (write: WriteChunk) => Promise<void>): Promise<void> {
  const target = resolve(path);
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx'); // wx: never clobber a file someone else created under this name
  let done = false;
  try {
    await fill(async (chunk) => {
      let written = 0;
      while (written < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.length - written);
        written += bytesWritten;
      }
    });
    await handle.sync();
    await handle.close();
    done = true;
    await rename(tmp, target);
  } catch (err) {
    if (!done) await handle.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDirectory(dir);
}

/** Makes the rename itself durable. Best effort: some platforms (Windows) cannot open a folder. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // The data is already synced and renamed; only durability across a power cut is weaker.
  }
}
