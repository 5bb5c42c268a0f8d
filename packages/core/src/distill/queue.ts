// FeatureQueue: the fixed-size FIFO of momentum features that widens ITC's candidate set
// (ALBEF `image_queue` / `text_queue` / `queue_ptr` and `_dequeue_and_enqueue`; BLIP adds `idx_queue`).
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';

export interface QueueField {
  /** Feature size D; the buffer is [D, size] as ALBEF (one column per queued item). */
  dim: number;
  /**
   * 'normal' (default, ALBEF: randn normalised along D), 'zeros', or a constant fill (BLIP's
   * `idx_queue` starts at -100 so old slots never match a real image id).
   */
  init?: 'normal' | 'zeros' | number;
  dtype?: 'float32' | 'int32';
}

export interface FeatureQueueOptions {
  /** Number of queued items (ALBEF 65,536; BLIP 57,600). */
  size: number;
  /** Buffer name → field, e.g. `{ image_queue: { dim: 256 }, text_queue: { dim: 256 } }`. */
  fields: Record<string, QueueField>;
  /** Name of the shared pointer buffer (ALBEF: `queue_ptr`), stored as int64 like PyTorch's. */
  pointerName?: string;
  /** Draws the 'normal' initial contents. */
  rng?: Rng;
}

/**
 * Several queues sharing one pointer, as Module buffers (so they are in the state dict and every
 * checkpoint). Keys are `<registered name>.<field name>`; a model whose official keys have no
 * prefix (ALBEF's `image_queue`) maps that prefix in its checkpoint.ts.
 *
 * ALBEF asserts `queue_size % batch_size == 0`. Here any batch works: a batch that crosses the end
 * wraps around to the start (the oldest items are overwritten in FIFO order), and a batch larger
 * than the queue keeps only its last `size` items. With a divisible size this is exactly ALBEF.
 */
export class FeatureQueue extends Module {
  readonly size: number;
  readonly fieldNames: readonly string[];
  private readonly fieldDims = new Map<string, number>();
  readonly pointerName: string;

  constructor(options: FeatureQueueOptions) {
    super();
    this.size = options.size;
    if (!Number.isInteger(this.size) || this.size <= 0) {
      throw new VlError('CONFIG_INVALID', `queue size must be a positive integer, got ${this.size}`, { subject: 'FeatureQueue' });
    }
    this.pointerName = options.pointerName ?? 'queue_ptr';
    this.fieldNames = Object.keys(options.fields);
    for (const [name, field] of Object.entries(options.fields)) {
      this.fieldDims.set(name, field.dim);
      this.registerBuffer(name, initialContents(field, this.size, options.rng, name));
    }
    this.registerBuffer(this.pointerName, tf.zeros([1], 'int32'), { storedDtype: 'I64' });
  }

  /** Current write position in [0, size). */
  get pointer(): number {
    return this.getBuffer(this.pointerName).dataSync()[0]!;
  }

  /** The [D, size] contents of one field (live tensor: read, do not dispose). */
  get(name: string): tf.Tensor {
    if (!this.fieldDims.has(name)) throw new VlError('INVALID_ARGUMENT', `queue has no field '${name}'`, { subject: 'FeatureQueue' });
    return this.getBuffer(name);
  }

  /**
   * Writes a batch of items per field ([B, D] rows, the same B for every field; int fields may
   * be [B]) at the pointer and advances it. Values are copied and cut from any gradient graph.
   */
  enqueue(batch: Record<string, tf.Tensor>): void {
    const names = Object.keys(batch);
    const missing = this.fieldNames.filter((n) => !names.includes(n));
    const extra = names.filter((n) => !this.fieldDims.has(n));
    if (missing.length || extra.length) {
      throw new VlError('INVALID_ARGUMENT', `enqueue fields differ: missing [${missing}] extra [${extra}]`, { subject: 'FeatureQueue' });
    }
    const b = batch[names[0]!]!.shape[0] as number;
    const ptr = this.pointer;
    for (const name of this.fieldNames) {
      const items = batch[name]!;
      if (items.shape[0] !== b)
        throw new VlError('SHAPE_MISMATCH', `field '${name}' has ${items.shape[0]} items, expected ${b}`, { subject: 'FeatureQueue' });
      const next = tf.tidy(() => {
        const old = this.getBuffer(name);
        const dim = old.shape[0] as number;
        // Columns to write, [D, B]; a batch bigger than the queue keeps its newest `size` items.
        let cols = tf.transpose(tf.reshape(tf.cast(items, old.dtype), [b, dim]));
        let start = ptr;
        let count = b;
        if (b > this.size) {
          cols = tf.slice(cols, [0, b - this.size], [dim, this.size]);
          start = (ptr + b - this.size) % this.size;
          count = this.size;
        }
        return writeColumns(old, cols, start, count, this.size);
      });
      this.setBuffer(name, next);
    }
    this.setBuffer(this.pointerName, tf.tensor1d([(ptr + b) % this.size], 'int32'));
  }
}

/** Writes `count` columns at `start`, wrapping past the end to the beginning. */
function writeColumns(queue: tf.Tensor, cols: tf.Tensor, start: number, count: number, size: number): tf.Tensor {
  const dim = queue.shape[0] as number;
  const firstLen = Math.min(count, size - start);
  const rest = count - firstLen;
  const parts: tf.Tensor[] = [];
  if (rest > 0) parts.push(tf.slice(cols, [0, firstLen], [dim, rest])); // wrapped tail → [0, rest)
  const before = start - rest;
  if (before > 0) parts.push(tf.slice(queue, [0, rest], [dim, before]));
  parts.push(tf.slice(cols, [0, 0], [dim, firstLen]));
  const after = size - start - firstLen;
  if (after > 0) parts.push(tf.slice(queue, [0, start + firstLen], [dim, after]));
  return parts.length === 1 ? tf.clone(parts[0]!) : tf.concat(parts, 1);
}

function initialContents(field: QueueField, size: number, rng: Rng | undefined, name: string): tf.Tensor {
  const dtype = field.dtype ?? 'float32';
  const init = field.init ?? 'normal';
  if (init === 'zeros') return tf.zeros([field.dim, size], dtype);
  if (typeof init === 'number') return tf.fill([field.dim, size], init, dtype);
  if (!rng)
    throw new VlError('INVALID_ARGUMENT', `queue field '${name}' starts from normal noise and needs an rng`, { subject: 'FeatureQueue' });
  const data = new Float32Array(field.dim * size);
  for (let i = 0; i < data.length; i++) data[i] = rng.normal();
  // ALBEF: nn.functional.normalize(randn(D, size), dim=0): each queued column is a unit vector.
  return tf.tidy(() => {
    const raw = tf.tensor2d(data, [field.dim, size]);
    return tf.div(raw, tf.maximum(tf.norm(raw, 'euclidean', 0, true), 1e-12));
  });
}
