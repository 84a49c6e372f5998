/**
 * OutputJacobian: per-sample Jacobians of the model outputs w.r.t. each
 * parameter, `[n, C, ...paramShape]` with entry `[n, c] = ∂f_nc/∂p` (no loss
 * factor). The identity stack `[C, n, C]` is backpropagated once and shared
 * by every OutputJacobian instance with the same `subsampling`.
 * Memory: 2·C·n·size floats at the peak (product and its transpose).
 */
import * as tf from '@tensorflow/tfjs';
import type { ParamContext } from '../../src/engine/extension';
import { OutputJacobianQuantity } from '../../src/engine/quantity';
import { perSampleFactor, StackExtension, type SecondOrderOptions } from './common';

export class OutputJacobian extends StackExtension<OutputJacobianQuantity> {
  constructor(options: SecondOrderOptions = {}) {
    super(options.name ?? 'OutputJacobian', options, (s) => new OutputJacobianQuantity(s), undefined);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const jac = perSampleFactor(this.name, ctx, ctx.value(this.quantity), this.subsampling, '', 1); // [C, n, ...p]
    const perm = [1, 0, ...ctx.param.shape.map((_, i) => i + 2)];
    const out = tf.transpose(jac, perm); // [n, C, ...p]
    jac.dispose();
    return out;
  }
}
