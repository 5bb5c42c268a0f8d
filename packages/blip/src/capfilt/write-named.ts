// File writes whose failures name the file: Node's ENOSPC/EIO from write() do not say which file.
import { VlError } from '@vl/core';

/** Runs a file operation; a failure becomes WRITE_FAILED naming the output (ENOSPC names no file by itself). */
export async function writeNamed<T>(name: string, path: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof VlError) throw err;
    const code = (err as { code?: string }).code;
    throw new VlError('WRITE_FAILED', `cannot write ${name}${code ? ` (${code})` : ''}: ${(err as Error).message}`, {
      subject: path,
      hint: `${code === 'ENOSPC' ? 'free disk space' : 'fix the folder'}, then rerun the same command (it resumes)`,
      cause: err,
    });
  }
}
