/**
 * Parameter products of an output stack for modules linear in their weights,
 * dispatched on the parameter's role and reshaped to the parameter's layout.
 * `X [n, T, I]` is the unfolded input, `stack [V, n, ...out]`.
 */
import * as tf from '@tensorflow/tfjs';
import type { LinearModuleDerivatives, ParamRole } from '../derivatives/types';
import {
  perSampleKernelProduct,
  perSampleSquaredNorm,
  perSampleSumSquaredKernelProduct,
  sumSquaredKernelProduct,
  summedKernelProduct,
} from '../derivatives/weightProducts';

export type ProductKind = 'perSample' | 'summed' | 'sumSquared' | 'perSampleSumSquared' | 'perSampleSquaredNorm';

export function paramProduct(
  kind: ProductKind,
  module: LinearModuleDerivatives,
  role: ParamRole,
  paramShape: readonly number[],
  X: tf.Tensor3D | undefined,
  stack: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    const D = module.foldOutput(stack); // [V, n, T, O]
    const [V, n] = D.shape;
    if (role === 'bias') {
      const b = tf.sum(D, 2); // [V, n, O]
      switch (kind) {
        case 'perSample':
          return tf.reshape(b, [V, n, ...paramShape]);
        case 'summed':
          return tf.reshape(tf.sum(b, 1), [V, ...paramShape]);
        case 'sumSquared':
          return tf.reshape(tf.sum(tf.square(b), [0, 1]), paramShape as number[]);
        case 'perSampleSumSquared':
          return tf.reshape(tf.sum(tf.square(b), 0), [n, ...paramShape]);
        case 'perSampleSquaredNorm':
          return tf.sum(tf.square(b), 2);
      }
    }
    if (X === undefined) throw new Error(`${module.kind}: kernel product needs the unfolded input.`);
    if (X.shape[0] !== n) {
      throw new Error(
        `${module.kind}: stack has ${n} samples but the unfolded input has ${X.shape[0]}; pass the same 'samples' to both.`,
      );
    }
    switch (kind) {
      case 'perSample':
        return tf.reshape(perSampleKernelProduct(X, D), [V, n, ...paramShape]);
      case 'summed':
        return tf.reshape(summedKernelProduct(X, D), [V, ...paramShape]);
      case 'sumSquared':
        return tf.reshape(sumSquaredKernelProduct(X, D), paramShape as number[]);
      case 'perSampleSumSquared':
        return tf.reshape(perSampleSumSquaredKernelProduct(X, D), [n, ...paramShape]);
      case 'perSampleSquaredNorm':
        return perSampleSquaredNorm(X, D);
    }
  });
}
