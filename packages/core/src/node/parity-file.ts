// Reads parity fixture files: `inputs.json` (named tensors and other values) and `expected.json`.
import { readFile } from 'node:fs/promises';
import { VlError } from '../errors.js';
import { decodeTensorJson, isTensorJson, type DecodedTensor } from '../verify/parity.js';

/** Reads a JSON file of tensors (`inputs.json`), decoding every tensor-shaped entry and keeping the rest. */
export async function readTensorJsonFile(
  path: string,
): Promise<{ tensors: Record<string, DecodedTensor>; other: Record<string, unknown> }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new VlError('DATA_INVALID', `cannot read JSON: ${(err as Error).message}`, { subject: path, cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new VlError('DATA_INVALID', 'expected a JSON object of named tensors', { subject: path });
  }
  const tensors: Record<string, DecodedTensor> = {};
  const other: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (isTensorJson(v)) tensors[k] = decodeTensorJson(v, `${path}: ${k}`);
    else other[k] = v;
  }
  return { tensors, other };
}

/** Reads an `expected.json` (`{ meta, outputs: {name: tensor} }`), decoding the outputs. */
export async function readExpectedFile(path: string): Promise<{ meta: Record<string, unknown>; outputs: Record<string, DecodedTensor> }> {
  const { tensors, other } = await readTensorJsonFile(path);
  const rawOutputs = other.outputs;
  if (typeof rawOutputs !== 'object' || rawOutputs === null) {
    throw new VlError('DATA_INVALID', "no 'outputs' object", {
      subject: path,
      hint: 'expected.json holds { meta, outputs: { name: tensor } }',
    });
  }
  const outputs: Record<string, DecodedTensor> = { ...tensors };
  for (const [k, v] of Object.entries(rawOutputs)) {
    if (isTensorJson(v)) outputs[k] = decodeTensorJson(v, `${path}: outputs.${k}`);
    else if (typeof v === 'number') outputs[k] = { kind: 'float', shape: [], data: Float32Array.of(v) };
    else throw new VlError('DATA_INVALID', `outputs.${k} is neither a tensor nor a number`, { subject: path });
  }
  const meta = typeof other.meta === 'object' && other.meta !== null ? (other.meta as Record<string, unknown>) : {};
  return { meta, outputs };
}
