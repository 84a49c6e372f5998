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

/** `[V, N, ...shape] → [V·N, ...shape]` and back: stacks fold into the batch axis. */
export function foldStack(mat: tf.Tensor): { folded: tf.Tensor; V: number; N: number } {
  const [V, N] = mat.shape as [number, number];
  return { folded: tf.reshape(mat, [V * N, ...mat.shape.slice(2)]), V, N };
}

export function unfoldStack(folded: tf.Tensor, V: number, N: number): tf.Tensor {
  return tf.reshape(folded, [V, N, ...folded.shape.slice(1)]);
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
