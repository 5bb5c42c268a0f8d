// torch.save files on disk: the zip's directory and entries are read through a file handle, so only the
// pickle and the chosen tensors' storages are ever in memory. Node-only.
import * as zlib from 'node:zlib';
import { sniffCheckpoint, SNIFF_BYTES, unsupportedFormatError } from '../io/checkpoint-format.js';
import { withFileSource } from './file-source.js';
import { readTorchCheckpoint, type CheckpointTensors, type ReadTorchOptions } from '../io/torch-checkpoint.js';

/** zlib's CRC-32 (Node ≥ 20.15) is about 10× the portable one; checking a multi-GB checkpoint should not cost seconds. */
const nativeCrc32 = typeof zlib.crc32 === 'function' ? (bytes: Uint8Array): number => zlib.crc32(bytes) >>> 0 : undefined;

/** Reads the state dict of a torch.save file (.pth/.pt/.bin/.ckpt), entry by entry from disk. */
export async function readTorchCheckpointFile(path: string, options: ReadTorchOptions = {}): Promise<CheckpointTensors> {
  return withFileSource(path, async (source) => {
    const format = sniffCheckpoint(await source.read(0, Math.min(SNIFF_BYTES, source.size)));
    if (format !== 'torch-zip') throw unsupportedFormatError(path, format);
    return readTorchCheckpoint(source, { crc32: nativeCrc32, ...options });
  });
}
