// UnsortedSegmentSum for the wasm backend, which has none. It is gather's gradient, so every
// embedding table needs it; the cpu kernel loops once per segment (vocabulary-sized), so this
// one scatters each row once, straight on the wasm heap.
import * as tf from '@tensorflow/tfjs-core';
import { asWasmBackend, f32View, i32View } from './wasm-internals.js';

const unsortedSegmentSum: tf.KernelFunc = (args) => {
  const backend = asWasmBackend(args.backend);
  const { x, segmentIds } = args.inputs as unknown as Record<'x' | 'segmentIds', tf.TensorInfo>;
  const { numSegments } = args.attrs as unknown as tf.UnsortedSegmentSumAttrs;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum on wasm supports float32 and int32, got ${x.dtype}`);
  }
  if (segmentIds.dtype !== 'int32') throw new Error(`UnsortedSegmentSum: segmentIds must be int32, got ${segmentIds.dtype}`);
  const rows = tf.util.sizeFromShape(segmentIds.shape);
  const inner = rows === 0 ? 0 : tf.util.sizeFromShape(x.shape) / rows;
  const outShape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  const out = backend.makeOutput(outShape, x.dtype);
  // Views are taken after makeOutput: an allocation can grow (and so detach) the heap buffer.
  const ids = i32View(backend, segmentIds);
  const src = x.dtype === 'float32' ? f32View(backend, x) : i32View(backend, x);
  const dst = x.dtype === 'float32' ? f32View(backend, out) : i32View(backend, out);
  dst.fill(0);
  for (let r = 0; r < rows; r++) {
    const seg = ids[r] as number;
    // Out-of-range ids are dropped, as in TensorFlow.
    if (seg < 0 || seg >= numSegments) continue;
    const from = r * inner;
    const to = seg * inner;
    for (let j = 0; j < inner; j++) dst[to + j] = (dst[to + j] as number) + (src[from + j] as number);
  }
  return out;
};

export const unsortedSegmentSumConfig: tf.KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSum,
};
