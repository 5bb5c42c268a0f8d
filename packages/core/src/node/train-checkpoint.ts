// Training checkpoints: one folder per step (model.safetensors, optimizer.safetensors,
// trainer.json), written under a temporary name and renamed into place, plus latest.json
// pointing at the newest complete one. A crash mid-save leaves the previous checkpoint intact.
import type * as tf from '@tensorflow/tfjs-core';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VlError } from '../errors.js';
import type { HostTensor } from '../io/safetensors.js';
import { readJsonFile, writeJsonFile } from './json-file.js';
import { readSafetensorsFile, writeSafetensorsFile } from './safetensors-file.js';
import type { Module, StoredDtype } from '../nn/module.js';
import type { RngState } from '../runtime/rng.js';

export const CHECKPOINT_FORMAT = 'vl-train-checkpoint/1';

/** Everything besides tensors that a resumed run needs to continue exactly. */
export interface TrainerState {
  format: typeof CHECKPOINT_FORMAT;
  /** Optimizer steps completed. */
  step: number;
  epoch: number;
  /** Micro-batches of `epoch` already consumed (skipped on resume). */
  batchInEpoch: number;
  rng: RngState;
  optimizer: { steps: Record<string, number>; hyper: Record<string, unknown> };
  /** Free-form JSON from the caller (config, dataset fingerprint, …). */
  extra?: unknown;
  savedAt: string;
}

export interface CheckpointContents {
  dir: string;
  model: Map<string, HostTensor>;
  optimizer: Map<string, HostTensor>;
  state: TrainerState;
}

/** Host copies of a state dict, with the file dtypes a module asks for (int64 pointers, ids). */
export function toHostTensors(
  tensors: Map<string, tf.Tensor>,
  storedDtypes: Map<string, StoredDtype> = new Map(),
): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [key, t] of tensors) {
    const dtype = t.dtype === 'int32' || t.dtype === 'bool' ? 'int32' : 'float32';
    const raw = t.dataSync();
    const data = dtype === 'int32' ? Int32Array.from(raw as ArrayLike<number>) : Float32Array.from(raw as ArrayLike<number>);
    out.set(key, { dtype, shape: [...t.shape], data, fileDtype: storedDtypes.get(key) ?? (dtype === 'int32' ? 'I32' : 'F32') });
  }
  return out;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** Writes a checkpoint folder atomically and points latest.json at it; returns its path. */
export async function saveCheckpoint(
  root: string,
  parts: { model: Module; optimizerTensors: Map<string, tf.Tensor>; state: TrainerState },
): Promise<string> {
  await mkdir(root, { recursive: true });
  const name = checkpointName(parts.state.step);
  const finalDir = join(root, name);
  const tmpDir = join(root, `.${name}.${process.pid}.tmp`);
  await rm(tmpDir, { recursive: true, force: true });
  await mkdir(tmpDir);
  try {
    const model = toHostTensors(parts.model.stateDict(), parts.model.storedDtypes());
    await writeSafetensorsFile(join(tmpDir, 'model.safetensors'), model, { format: 'pt' });
    await writeSafetensorsFile(join(tmpDir, 'optimizer.safetensors'), toHostTensors(parts.optimizerTensors), { format: 'pt' });
    await writeJsonFile(join(tmpDir, 'trainer.json'), parts.state);
    await rm(finalDir, { recursive: true, force: true }); // a re-save of the same step replaces it
    await rename(tmpDir, finalDir);
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  await writeJsonFile(join(root, 'latest.json'), { checkpoint: name, step: parts.state.step });
  return finalDir;
}

/** The newest complete checkpoint folder under root, or null when there is none. */
export async function latestCheckpoint(root: string): Promise<string | null> {
  try {
    const latest = await readJsonFile<{ checkpoint: string }>(join(root, 'latest.json'));
    const dir = join(root, latest.checkpoint);
    await stat(join(dir, 'trainer.json'));
    return dir;
  } catch {
    // No pointer (or it names a folder that was deleted): fall back to the highest step folder.
    let names: string[];
    try {
      names = await readdir(root);
    } catch {
      return null;
    }
    const steps = names.filter((n) => /^step-\d+$/.test(n)).sort();
    for (let i = steps.length - 1; i >= 0; i--) {
      const dir = join(root, steps[i]!);
      try {
        await stat(join(dir, 'trainer.json'));
        return dir;
      } catch {
        // incomplete: keep looking
      }
    }
    return null;
  }
}

export async function loadCheckpoint(dir: string): Promise<CheckpointContents> {
  const state = await readJsonFile<TrainerState>(join(dir, 'trainer.json'));
  if (state.format !== CHECKPOINT_FORMAT) {
    throw new VlError('CONFIG_INVALID', `unknown checkpoint format '${String(state.format)}'`, {
      subject: join(dir, 'trainer.json'),
      hint: `this version reads ${CHECKPOINT_FORMAT}`,
    });
  }
  const model = (await readSafetensorsFile(join(dir, 'model.safetensors'))).tensors;
  const optimizer = (await readSafetensorsFile(join(dir, 'optimizer.safetensors'))).tensors;
  return { dir, model, optimizer, state };
}

/** Deletes all but the newest `keep` step folders. */
export async function pruneCheckpoints(root: string, keep: number): Promise<void> {
  const names = (await readdir(root)).filter((n) => /^step-\d+$/.test(n)).sort();
  for (const n of names.slice(0, Math.max(0, names.length - keep))) await rm(join(root, n), { recursive: true, force: true });
}
