// Conv2DBackpropFilter (a conv layer's weight gradient) for the wasm backend, which has none:
// im2col on the wasm heap, then one fast matmul, dW[fh·fw·cin, cout] = colsᵀ · dy.
import * as tf from '@tensorflow/tfjs-core';
import { wasmMatMul } from './matmul.js';
import { asWasmBackend, f32View, reshapedInfo, runKernel, type WasmBackendLike } from './wasm-internals.js';

/** im2col buffers are built a few images at a time so a large batch never needs one huge buffer. */
const MAX_COLS_FLOATS = 16 * 1024 * 1024;

function toChannelsLast(backend: WasmBackendLike, t: tf.TensorInfo): tf.TensorInfo {
  return runKernel('Transpose', { inputs: { x: t }, backend, attrs: { perm: [0, 2, 3, 1] } });
}

const conv2DBackpropFilter: tf.KernelFunc = (args) => {
  const backend = asWasmBackend(args.backend);
  const { x, dy } = args.inputs as unknown as Record<'x' | 'dy', tf.TensorInfo>;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`Conv2DBackpropFilter on wasm supports float32 only, got ${x.dtype}/${dy.dtype}`);
  }
  const channelsFirst = dataFormat === 'NCHW';
  const xL = channelsFirst ? toChannelsLast(backend, x) : x;
  const dyL = channelsFirst ? toChannelsLast(backend, dy) : dy;
  let result: tf.TensorInfo | null = null;
  try {
    const info = tf.backend_util.computeConv2DInfo(
      xL.shape as [number, number, number, number],
      filterShape,
      strides,
      1,
      pad,
      dimRoundingMode,
      false,
      'channelsLast',
    );
    const { batchSize, outHeight, outWidth, outChannels } = info;
    const patchLen = info.filterHeight * info.filterWidth * info.inChannels;
    const rowsPerImage = outHeight * outWidth;
    const imagesPerChunk = Math.max(1, Math.floor(MAX_COLS_FLOATS / Math.max(1, rowsPerImage * patchLen)));

    for (let b0 = 0; b0 < batchSize; b0 += imagesPerChunk) {
      const images = Math.min(imagesPerChunk, batchSize - b0);
      const rows = images * rowsPerImage;
      const cols = backend.makeOutput([rows, patchLen], 'float32');
      // All of dy when one chunk covers the batch; otherwise a copy of this chunk's rows.
      const dyCopy =
        images === batchSize
          ? null
          : backend.makeOutput(
              [rows, outChannels],
              'float32',
              undefined,
              f32View(backend, dyL).slice(b0 * rowsPerImage * outChannels, (b0 + images) * rowsPerImage * outChannels),
            );
      try {
        im2col(backend, xL, cols, info, b0, images);
        const partial = wasmMatMul(backend, cols, dyCopy ?? reshapedInfo(dyL, [rows, outChannels]), true, false);
        if (result === null) {
          result = partial; // [patchLen, outChannels]
        } else {
          const acc = f32View(backend, result);
          const add = f32View(backend, partial);
          for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as number) + (add[i] as number);
          backend.disposeData(partial.dataId);
        }
      } finally {
        backend.disposeData(cols.dataId);
        if (dyCopy) backend.disposeData(dyCopy.dataId);
      }
    }
    if (result === null) {
      // An empty batch: the gradient is zero.
      result = backend.makeOutput([patchLen, outChannels], 'float32');
      f32View(backend, result).fill(0);
    }
    return { dataId: result.dataId, shape: [...filterShape], dtype: 'float32' };
  } catch (err) {
    if (result) backend.disposeData(result.dataId);
    throw err;
  } finally {
    if (channelsFirst) {
      backend.disposeData(xL.dataId);
      backend.disposeData(dyL.dataId);
    }
  }
};

/** cols[row, (fh·fw_n + fw)·cin + c] = x[b, oh·sh − top + fh, ow·sw − left + fw, c], zero outside. */
function im2col(
  backend: WasmBackendLike,
  x: tf.TensorInfo,
  cols: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
  firstImage: number,
  images: number,
): void {
  const { inHeight, inWidth, inChannels, outHeight, outWidth, filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const patchLen = filterHeight * filterWidth * inChannels;
  // Views taken here, after every allocation of the caller: a growing heap detaches old ones.
  const src = f32View(backend, x);
  const dst = f32View(backend, cols);
  let row = 0;
  for (let b = firstImage; b < firstImage + images; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++, row++) {
        let d = row * patchLen;
        for (let fh = 0; fh < filterHeight; fh++) {
          const xr = oh * strideHeight - top + fh;
          for (let fw = 0; fw < filterWidth; fw++, d += inChannels) {
            const xc = ow * strideWidth - left + fw;
            if (xr < 0 || xr >= inHeight || xc < 0 || xc >= inWidth) {
              dst.fill(0, d, d + inChannels);
              continue;
            }
            const s = ((b * inHeight + xr) * inWidth + xc) * inChannels;
            if (inChannels >= 16) {
              dst.set(src.subarray(s, s + inChannels), d);
            } else {
              for (let c = 0; c < inChannels; c++) dst[d + c] = src[s + c] as number;
            }
          }
        }
      }
    }
  }
}

export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter,
};
