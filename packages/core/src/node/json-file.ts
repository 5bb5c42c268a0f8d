// config.json files: strict read (duplicate keys are errors) with optional zod validation, pretty
// atomic writes; failures are VlError('CONFIG_INVALID') naming the file (and the JSON path of a field).
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { VlError } from '../errors.js';
import { parseJsonText, stringifyJson } from '../io/json-config.js';
import { writeFileAtomic } from './atomic.js';

/**
 * Reads a JSON file (e.g. a Hugging Face `config.json`), rejecting duplicate keys, and validates
 * it with `schema` when given. Errors: CONFIG_INVALID with the file as subject.
 */
export async function readJsonFile<T = unknown>(path: string, schema?: z.ZodType<T>): Promise<T> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (cause) {
    throw new VlError('CONFIG_INVALID', `cannot read: ${(cause as Error).message}`, {
      subject: path,
      hint: 'check that the path exists and is a readable file',
      cause,
    });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (cause) {
    throw new VlError('CONFIG_INVALID', 'not valid UTF-8', { subject: path, hint: 'save the file as UTF-8', cause });
  }
  return parseJsonText(text, path, schema);
}

/** Writes `value` as pretty JSON (2-space indent, trailing newline), atomically. */
export async function writeJsonFile(path: string, value: unknown): Promise<void> {
  const text = stringifyJson(value, path);
  try {
    await writeFileAtomic(path, (write) => write(new TextEncoder().encode(text)));
  } catch (cause) {
    throw new VlError('CONFIG_INVALID', `write failed: ${(cause as Error).message}`, {
      subject: path,
      hint: 'check that the folder exists and is writable',
      cause,
    });
  }
}
