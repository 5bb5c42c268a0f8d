// Whether tfjs is recording operations for gradients (inside tf.grad / variableGrads / minimize). Inference
// shortcuts — a kernel without a gradient, tensors cached across calls — are only safe when it is not.
import * as tf from '@tensorflow/tfjs-core';

export function recordingGradients(): boolean {
  return ((tf.engine() as unknown as { state: { gradientDepth?: number } }).state.gradientDepth ?? 0) > 0;
}
