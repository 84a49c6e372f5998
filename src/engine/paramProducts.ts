/**
 * Parameter products of an output stack for modules linear in their weights,
 * dispatched on the parameter's role and reshaped to the parameter's layout.
 * `X [n, T, I]` is the unfolded input (or a function that makes it, called
 * only when needed), `stack [V, n, ...out]`.
 *
 * With the module's forward record `rec` (rows of the stack's samples), the
 * summed kernel product uses the module's own `summedKernelProduct` where it
 * has one (Conv2D: one convolution instead of im2col + matMul), and X is
 * not needed.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardRecord, LinearModuleDerivatives, ParamRole } from '../derivatives/types';
import {
  perSampleBiasProduct,
  perSampleKernelProduct,
  perSampleSquaredNorm,
  perSampleSumSquaredKernelProduct,
  summedBiasProduct,
  sumLeadingAxis,
  sumSquaredKernelProduct,
  summedKernelProduct,
} from '../derivatives/weightProducts';

export type ProductKind = 'perSample' | 'summed' | 'sumSquared' | 'perSampleSumSquared' | 'perSampleSquaredNorm';

export function paramProduct(
  kind: ProductKind,
  module: LinearModuleDerivatives,
  role: ParamRole,
  paramShape: readonly number[],
  X: tf.Tensor3D | (() => tf.Tensor3D) | undefined,
  stack: tf.Tensor,
  rec?: ForwardRecord,
): tf.Tensor {
  return tf.tidy(() => {
    if (role === 'kernel' && kind === 'summed' && rec !== undefined && module.summedKernelProduct !== undefined) {
      const V = stack.shape[0] as number;
      return tf.reshape(module.summedKernelProduct(rec, stack), [V, ...paramShape]);
    }
    const D = module.foldOutput(stack); // [V, n, T, O]
    const [V, n, , O] = D.shape;
    if (role === 'bias') {
      if (kind === 'summed') return tf.reshape(summedBiasProduct(D), [V, ...paramShape]);
      const b = perSampleBiasProduct(D); // [V, n, O]
      switch (kind) {
        case 'perSample':
          return tf.reshape(b, [V, n, ...paramShape]);
        case 'sumSquared':
          return tf.reshape(sumLeadingAxis(tf.reshape(tf.square(b), [V * n, O])), paramShape as number[]);
        case 'perSampleSumSquared':
          return tf.reshape(sumLeadingAxis(tf.square(b)), [n, ...paramShape]);
        case 'perSampleSquaredNorm':
          return tf.sum(tf.square(b), 2);
      }
    }
    const Xt = typeof X === 'function' ? X() : X;
    if (Xt === undefined) throw new Error(`${module.kind}: kernel product needs the unfolded input.`);
    if (Xt.shape[0] !== n) {
      throw new Error(
        `${module.kind}: stack has ${n} samples but the unfolded input has ${Xt.shape[0]}; pass the same 'samples' to both.`,
      );
    }
    switch (kind) {
      case 'perSample':
        return tf.reshape(perSampleKernelProduct(Xt, D), [V, n, ...paramShape]);
      case 'summed':
        return tf.reshape(summedKernelProduct(Xt, D), [V, ...paramShape]);
      case 'sumSquared':
        return tf.reshape(sumSquaredKernelProduct(Xt, D), paramShape as number[]);
      case 'perSampleSumSquared':
        return tf.reshape(perSampleSumSquaredKernelProduct(Xt, D), [n, ...paramShape]);
      case 'perSampleSquaredNorm':
        return perSampleSquaredNorm(Xt, D);
    }
  });
}
