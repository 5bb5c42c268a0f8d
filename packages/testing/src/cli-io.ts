// What a CLI run printed, and the argv of a fixture `verify`: runCli/runVl write through an `io` of two line
// callbacks instead of the process streams, so tests hand them one of these and read the lines back.
import { join } from 'node:path';

/** stdout and stderr lines kept apart. */
export function captureIo(): { out: string[]; err: string[]; io: { out: (l: string) => void; err: (l: string) => void } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => void out.push(l), err: (l: string) => void err.push(l) } };
}

/** stdout and stderr lines in one list, in the order they were written. */
export function captureLines(): { lines: string[]; io: { out: (l: string) => void; err: (l: string) => void } } {
  const lines: string[] = [];
  return { lines, io: { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) } };
}

/** `verify` against a fixture folder (its inputs.json; expected.json unless `expected`) on cpu. */
export function verifyArgs(dir: string, expected = join(dir, 'expected.json'), checkpoint = dir): string[] {
  return ['verify', '--checkpoint', checkpoint, '--inputs', join(dir, 'inputs.json'), '--expected', expected, '--backend', 'cpu'];
}
