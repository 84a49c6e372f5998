/** LeakyReLU: x > 0 ? x : α·x (piecewise linear: zero residual). */
import * as tf from '@tensorflow/tfjs';
import { ElementwiseDerivatives } from './activation';

export function leakyReLUDerivatives(alpha: number): ElementwiseDerivatives {
  return new ElementwiseDerivatives(`LeakyReLU(${alpha})`, {
    forward: (x) => tf.leakyRelu(x, alpha),
    d1: (x) => tf.where(tf.greater(x, 0), tf.onesLike(x), tf.fill(x.shape, alpha)),
  });
}
