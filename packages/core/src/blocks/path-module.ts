// A Module that can place parameters and children under dotted paths ('embeddings.class_embedding',
// 'patch_embed.proj'), creating empty containers on the way, so one class serves checkpoints
// that nest the same tensors differently (HF BLIP vs timm vs open_clip).
import type * as tf from '@tensorflow/tfjs-core';
import { Module, type ModuleList, type StoredDtype } from '../nn/module.js';

/** A parameter-less grouping node, like an nn.Module that only holds children. */
export class Container extends Module {
  addParameter(name: string, value: tf.Tensor): tf.Variable {
    return this.registerParameter(name, value);
  }

  addBuffer(name: string, value: tf.Tensor, options: { persistent?: boolean; storedDtype?: StoredDtype } = {}): tf.Tensor {
    return this.registerBuffer(name, value, options);
  }
}

function splitPath(path: string): [string[], string] {
  const parts = path.split('.');
  const last = parts.pop() as string;
  return [parts, last];
}

/** The container at `segments` below `owner`, created when absent; null for no segments. */
function containerAt(owner: Module, segments: readonly string[]): Container | null {
  let node: Module = owner;
  for (const seg of segments) {
    const existing = node.namedChildren().find(([n]) => n === seg)?.[1];
    node = existing ?? node.registerModule(seg, new Container());
  }
  if (node === owner) return null;
  if (!(node instanceof Container)) throw new Error(`'${segments.join('.')}' is a ${node.constructor.name}, not a container`);
  return node;
}

/**
 * Registers `module` under `owner` at a dotted path ('encoder.layer_norm.A'), creating containers
 * on the way; for modules that are not PathModules themselves (attention's multiway projections).
 */
export function placeModuleAt<T extends Module>(owner: Module, path: string, module: T): T {
  const [parents, name] = splitPath(path);
  return (containerAt(owner, parents) ?? owner).registerModule(name, module);
}

export abstract class PathModule extends Module {
  /** Registers a parameter at a dotted path; takes ownership of `value`. */
  protected placeParameter(path: string, value: tf.Tensor): tf.Variable {
    const [parents, name] = splitPath(path);
    const c = containerAt(this, parents);
    return c ? c.addParameter(name, value) : this.registerParameter(name, value);
  }

  /** Registers a child module at a dotted path. */
  protected placeModule<T extends Module>(path: string, module: T): T {
    return placeModuleAt(this, path, module);
  }

  /** Registers a list of modules at a dotted path ('encoder.layers' → encoder.layers.0.…). */
  protected placeModuleList<T extends Module>(path: string, modules: readonly T[]): ModuleList<T> {
    const [parents, name] = splitPath(path);
    return (containerAt(this, parents) ?? this).registerModuleList(name, modules);
  }
}
