/** Shared by the first-order extensions: the gradient stack and subsampling. */
import type * as tf from '@tensorflow/tfjs';
import type { Quantity } from '../../src/engine/quantity';

export interface FirstOrderOptions {
  /** Indices into the batch: compute only for these samples (in this order). */
  subsampling?: readonly number[];
  /** Result name (default: the class name); needed to run two instances at once. */
  name?: string;
}

/** First-order extensions need only the gradient, which the engine always carries. */
export const NO_QUANTITIES: readonly Quantity<tf.TensorContainer>[] = [];

/** Copy the subsampling option (a user's array is never kept or mutated). */
export function copySubsampling(options: FirstOrderOptions | undefined): readonly number[] | undefined {
  return options?.subsampling === undefined ? undefined : Object.freeze([...options.subsampling]);
}
