// What the coordinator and the workers of a queued job share: the run's identity computed as a
// single-machine run computes it (so the fingerprint, and with it the outputs, are the same), and the
// options in the JSON form kept in Redis.
import { dirname, resolve } from 'node:path';
import { VlError } from '@vl/core';
import { checkpointIdentity, dataIdentity, realpathLoose, type RunIdentity } from '../identity.js';
import { type CapfiltOptions, dataFiles, formatOf, resultOptions } from '../pipeline.js';
import type { QueuedOptions } from './connection.js';

/** The identity of a run of `opts` (options that change results, data files, image root, checkpoints). */
export async function identityOf(opts: CapfiltOptions): Promise<RunIdentity> {
  const files = dataFiles(opts.data);
  const root = resolve(opts.images ?? dirname(files[0] as string));
  return {
    options: resultOptions(opts, formatOf(opts.data)),
    imageRoot: await realpathLoose(root),
    data: await dataIdentity(files),
    captioner: await checkpointIdentity(opts.captioner),
    filter: await checkpointIdentity(opts.filter),
  };
}

/** The options as Redis keeps them: absolute paths, defaults filled in, so every worker reads the same values. */
export function queuedOptions(o: CapfiltOptions): QueuedOptions {
  const files = dataFiles(o.data);
  return {
    data: files.map((f) => resolve(f)),
    images: resolve(o.images ?? dirname(files[0] as string)),
    out: resolve(o.out),
    captioner: resolve(o.captioner),
    filter: resolve(o.filter),
    numCaptions: o.numCaptions ?? 1,
    topP: o.topP ?? 0.9,
    ...(o.beam !== undefined ? { beam: o.beam } : {}),
    ...(o.threshold !== undefined ? { threshold: o.threshold } : {}),
    ...(o.keepRate !== undefined ? { keepRate: o.keepRate } : {}),
    ...(o.calibrateOn !== undefined ? { calibrateOn: o.calibrateOn } : {}),
    itc: Boolean(o.itc),
    ...(o.int8 ? { int8: true } : {}),
    batchSize: o.batchSize ?? 8,
    seed: o.seed ?? 0,
    maxLength: o.maxLength ?? 30,
  };
}

/** A refusal naming the queue job and what differs (exit 2, like a journal of another run). */
export function jobMismatch(job: string, who: string, changes: string[]): VlError {
  return new VlError('RESUME_MISMATCH', `${who} differs from queue job '${job}': ${changes.join('; ')}`, {
    subject: job,
    hint: "use the job's options and files (see `blip capfilt status`), or another --job name",
  });
}
