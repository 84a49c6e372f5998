/** Helpers shared by module derivatives. */
import * as tf from '@tensorflow/tfjs';
import type { ForwardRecord } from './types';

export function makeRecord(
  input: tf.Tensor,
  output: tf.Tensor,
  saved: Record<string, tf.Tensor> = {},
  constants: Record<string, tf.Tensor> = {},
): ForwardRecord {
  return { input, output, saved, constants };
}

/** All tensors a record holds (for disposal). */
export function recordTensors(rec: ForwardRecord): tf.Tensor[] {
  return [rec.input, rec.output, ...Object.values(rec.saved), ...Object.values(rec.constants)];
}

/** Shape check for a stack `[V, N, ...shape]` against a module's record tensor `[N, ...shape]`. */
export function assertStack(kind: string, what: string, mat: tf.Tensor, ref: tf.Tensor): void {
  const ok =
    mat.rank === ref.rank + 1 && mat.shape.slice(1).every((d, i) => d === ref.shape[i]);
  if (!ok) {
    throw new Error(
      `${kind}: ${what} expects a stack [V, ${ref.shape.join(', ')}], got [${mat.shape.join(', ')}].`,
    );
  }
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
