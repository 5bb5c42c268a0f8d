// Test helpers: where the Hugging Face reference fixtures live, and a tensor-leak check.
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/blip-hf/', import.meta.url));
export const CAPTIONING = `${FIXTURES}blip-captioning-seed0`;
export const RETRIEVAL = `${FIXTURES}blip-retrieval-seed0`;

/** Runs `fn` twice and returns how many tensors the second run left behind. */
export async function leakedTensors(fn: () => Promise<void>): Promise<number> {
  await fn();
  const before = tf.memory().numTensors;
  await fn();
  return tf.memory().numTensors - before;
}
