/**
 * Tensor-leak checks for the tests: every tensor a computation creates must
 * be disposed by it (or returned to the caller), on success paths.
 */
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeEach, expect } from 'vitest';

/** Run `fn` and expect `tf.memory().numTensors` unchanged afterwards; returns fn's result. */
export function expectNoLeak<T>(fn: () => T, what = 'step'): T {
  const before = tf.memory().numTensors;
  const out = fn();
  expect(tf.memory().numTensors - before, `${what} leaked tensors`).toBe(0);
  return out;
}

/** `expectNoLeak` for an asynchronous `fn`. */
export async function expectNoLeakAsync<T>(fn: () => Promise<T>, what = 'step'): Promise<T> {
  const before = tf.memory().numTensors;
  const out = await fn();
  expect(tf.memory().numTensors - before, `${what} leaked tensors`).toBe(0);
  return out;
}

/**
 * Register, for the calling test file, a check that every test leaves
 * `tf.memory().numTensors` as it found it (after `cleanup`, for what the
 * file keeps across a test, e.g. optimizers).
 */
export function expectNoLeaksPerTest(cleanup?: () => void): void {
  let before = 0;
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    cleanup?.();
    expect(tf.memory().numTensors).toBe(before);
  });
}
