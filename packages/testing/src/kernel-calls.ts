// Counting the calls of a registered kernel: tests that check a fast path really ran (or really did not) wrap
// the kernel in place and put the original back afterwards.
import * as tf from '@tensorflow/tfjs-core';

export interface KernelCallCounter {
  /** The kernel as registered before counting; undefined when it was not registered (nothing is counted). */
  readonly original: tf.KernelConfig | undefined;
  /** Calls since the counter was made or last reset. */
  readonly calls: number;
  reset(): void;
  /** Registers the original kernel again in place of the counting one. */
  restore(): void;
}

/** Re-registers `kernelName` on `backendName` with a wrapper that counts its calls; a no-op when it is absent. */
export function countKernelCalls(kernelName: string, backendName: string): KernelCallCounter {
  const original = tf.getKernel(kernelName, backendName);
  let calls = 0;
  if (original) {
    tf.unregisterKernel(kernelName, backendName);
    tf.registerKernel({ ...original, kernelFunc: (args) => (calls++, original.kernelFunc(args)) });
  }
  return {
    original,
    get calls() {
      return calls;
    },
    reset() {
      calls = 0;
    },
    restore() {
      if (!original) return;
      tf.unregisterKernel(kernelName, backendName);
      tf.registerKernel(original);
    },
  };
}
