// Telling checkpoint formats apart by their first bytes (never by the file name), and the errors for
// the formats this project does not read (legacy torch.save, plain pickles). Browser-safe.
import { VlError } from '../errors.js';

export type SniffedFormat = 'torch-zip' | 'safetensors' | 'torch-legacy' | 'torch-legacy-tar' | 'pickle' | 'unknown';

/** Bytes needed by sniffCheckpoint: 512 covers a tar header's `ustar` magic at 257. */
export const SNIFF_BYTES = 512;

/** The magic number legacy torch.save pickles first (0x1950a86a20f9469cfc6c, as a protocol-2 LONG1). */
const LEGACY_MAGIC = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

function hasAt(bytes: Uint8Array, at: number, pattern: readonly number[]): boolean {
  if (at + pattern.length > bytes.length) return false;
  return pattern.every((b, i) => bytes[at + i] === b);
}

/** Classifies a file from its first bytes (up to SNIFF_BYTES of them). */
export function sniffCheckpoint(head: Uint8Array): SniffedFormat {
  if (hasAt(head, 0, [0x50, 0x4b, 0x03, 0x04]) || hasAt(head, 0, [0x50, 0x4b, 0x05, 0x06])) return 'torch-zip';
  // safetensors: a little-endian u64 header length (below 2^40), then a JSON object with a string key
  // (`{"`). Checked before pickles: a header length whose low byte is 0x80 starts like a pickle's PROTO.
  if (head.length >= 10 && head[5] === 0 && head[6] === 0 && head[7] === 0 && head[8] === 0x7b && head[9] === 0x22) return 'safetensors';
  if (hasAt(head, 257, [0x75, 0x73, 0x74, 0x61, 0x72])) return 'torch-legacy-tar';
  if (head[0] === 0x80) {
    for (let at = 0; at < Math.min(head.length, 32); at++) if (hasAt(head, at, LEGACY_MAGIC)) return 'torch-legacy';
    return 'pickle';
  }
  return 'unknown';
}

const CONVERT_HINT =
  'convert it once with PyTorch: python -c "import torch; ' +
  "torch.save(torch.load('IN', map_location='cpu', weights_only=True), 'OUT.pth')\" " +
  '(or save it as safetensors: safetensors.torch.save_file(state_dict, "model.safetensors"))';

/** The typed error for a format that is recognised but not read. */
export function unsupportedFormatError(subject: string, format: SniffedFormat): VlError {
  switch (format) {
    case 'torch-legacy':
      return new VlError(
        'CHECKPOINT_UNSUPPORTED',
        'this is the legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization=False): a bare pickle stream, not a zip',
        { subject, hint: CONVERT_HINT },
      );
    case 'torch-legacy-tar':
      return new VlError('CHECKPOINT_UNSUPPORTED', 'this is the tar-based torch.save format of PyTorch ≤ 0.3', {
        subject,
        hint: CONVERT_HINT,
      });
    case 'pickle':
      return new VlError('CHECKPOINT_UNSUPPORTED', 'this is a plain Python pickle, not a torch.save archive', {
        subject,
        hint: CONVERT_HINT,
      });
    default:
      return new VlError('CHECKPOINT_INVALID', 'not a checkpoint this project reads (expected a torch.save zip or a safetensors file)', {
        subject,
        hint: 'pass a .safetensors file, a model.safetensors.index.json, a .pth/.pt/.bin written by torch.save, or a folder holding one',
      });
  }
}
