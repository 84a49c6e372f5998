/**
 * Comparisons against float64 references: the error is measured relative to
 * the largest magnitude of the reference tensor (FORMAT.md §8), since many
 * entries are legitimately (near) zero.
 */
import * as tf from '@tensorflow/tfjs';

export type Num = ArrayLike<number>;

function values(a: tf.Tensor | Num): Num {
  return a instanceof tf.Tensor ? a.dataSync() : a;
}

/**
 * max |a − e| / max |e| (absolute error where the reference is all zero) —
 * the one relative-error helper of the tests. Tensors are read with
 * dataSync. Infinity on a length mismatch; NaN when an entry is NaN, so that
 * a NaN fails every comparison (`judge` counts it as Infinity).
 */
export function maxRelErr(actual: tf.Tensor | Num, expected: tf.Tensor | Num): number {
  const a = values(actual);
  const e = values(expected);
  if (a.length !== e.length) return Infinity;
  let scale = 0;
  for (let i = 0; i < e.length; i++) scale = Math.max(scale, Math.abs(e[i] as number));
  return maxErrScaled(a, e, scale);
}

/** max |a − e| / scale for an explicit scale (absolute for scale 0); Infinity on a length mismatch, NaN for NaN entries. */
export function maxErrScaled(actual: Num, expected: Num, scale: number): number {
  if (actual.length !== expected.length) return Infinity;
  let err = 0;
  for (let i = 0; i < expected.length; i++) err = Math.max(err, Math.abs((actual[i] as number) - (expected[i] as number)));
  return scale > 0 ? err / scale : err;
}

export function maxAbs(a: Num): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
