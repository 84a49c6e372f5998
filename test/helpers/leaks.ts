/**
 * Tensor-leak checks for the tests: every tensor a computation creates must
 * be disposed by it (or returned to the caller) — on success and on error
 * paths. When `fn` throws, the leak is checked before the error is rethrown,
 * so `expect(() => expectNoLeak(bad)).toThrow(/…/)` fails on a leak.
 */
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeEach, expect } from 'vitest';

/** Run `fn` and expect `tf.memory().numTensors` unchanged afterwards; returns fn's result. */
export function expectNoLeak<T>(fn: () => T, what = 'step'): T {
  const before = tf.memory().numTensors;
  let out: T;
  try {
    out = fn();
  } catch (e) {
    expect(tf.memory().numTensors - before, `${what} leaked tensors on its error path`).toBe(0);
    throw e;
  }
  expect(tf.memory().numTensors - before, `${what} leaked tensors`).toBe(0);
  return out;
}

/** `expectNoLeak` for an asynchronous `fn`. */
export async function expectNoLeakAsync<T>(fn: () => Promise<T>, what = 'step'): Promise<T> {
  const before = tf.memory().numTensors;
  let out: T;
  try {
    out = await fn();
  } catch (e) {
    expect(tf.memory().numTensors - before, `${what} leaked tensors on its error path`).toBe(0);
    throw e;
  }
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
