// Reads a reference gradients file (fixtures/*/README.md "Gradients"): `grads.safetensors` keyed
// `<loss>/<official parameter name>`, and, when it sits next to it, `grads.json` with the losses'
// values and the tolerance.
import { existsSync } from 'node:fs';
import { VlError } from '../errors.js';
import { splitLossGradients, type ReferenceGradients } from '../verify/grads.js';
import { readJsonFile } from './json-file.js';
import { readSafetensorsFile } from './safetensors-file.js';

/** `X.safetensors` → `X.json` (grads.safetensors → grads.json). */
function sidecarOf(path: string): string {
  return path.replace(/\.safetensors$/, '') + '.json';
}

export async function readReferenceGradients(path: string): Promise<ReferenceGradients> {
  if (!existsSync(path)) {
    throw new VlError('INVALID_ARGUMENT', 'no such gradients file', {
      subject: path,
      hint: "--grads takes the reference's grads.safetensors (keys '<loss>/<parameter name>')",
    });
  }
  const file = await readSafetensorsFile(path);
  const losses = splitLossGradients(file.tensors, path);
  const values: Record<string, number> = {};
  let tolerance: number | undefined;
  const sidecar = sidecarOf(path);
  if (sidecar !== path && existsSync(sidecar)) {
    const meta = (await readJsonFile(sidecar)) as Record<string, unknown> | null;
    const raw = meta && typeof meta === 'object' ? meta.losses : undefined;
    if (raw && typeof raw === 'object') {
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) if (typeof v === 'number') values[k] = v;
    }
    if (meta && typeof meta.tolerance_max_abs === 'number') tolerance = meta.tolerance_max_abs;
  }
  return { losses, values, tolerance, source: path };
}
