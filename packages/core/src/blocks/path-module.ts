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

export abstract class PathModule extends Module {
  /** The container at `segments` below this module, created when absent. */
  protected containerAt(segments: readonly string[]): Container | null {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- a cursor that walks down from this module
    let node: Module = this;
    for (const seg of segments) {
      const existing = node.namedChildren().find(([n]) => n === seg)?.[1];
      node = existing ?? node.registerModule(seg, new Container());
    }
    if (node === this) return null;
    if (!(node instanceof Container)) throw new Error(`'${segments.join('.')}' is a ${node.constructor.name}, not a container`);
    return node;
  }

  /** Registers a parameter at a dotted path; takes ownership of `value`. */
  protected placeParameter(path: string, value: tf.Tensor): tf.Variable {
    const [parents, name] = splitPath(path);
    const c = this.containerAt(parents);
    return c ? c.addParameter(name, value) : this.registerParameter(name, value);
  }

  /** Registers a child module at a dotted path. */
  protected placeModule<T extends Module>(path: string, module: T): T {
    const [parents, name] = splitPath(path);
    const c = this.containerAt(parents);
    return (c ?? this).registerModule(name, module);
  }

  /** Registers a list of modules at a dotted path ('encoder.layers' → encoder.layers.0.…). */
  protected placeModuleList<T extends Module>(path: string, modules: readonly T[]): ModuleList<T> {
    const [parents, name] = splitPath(path);
    const c = this.containerAt(parents);
    return (c ?? this).registerModuleList(name, modules);
  }
}
