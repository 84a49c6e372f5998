/**
 * OutputJacobian: per-sample Jacobians of the model outputs w.r.t. each
 * parameter, `[n, C, ...paramShape]` with entry `[n, c] = ∂f_nc/∂p` (no loss
 * factor). The identity stack `[C, n, C]` is backpropagated once and shared
 * by every OutputJacobian instance with the same `subsampling`.
 * Memory: 2·C·n·size floats at the peak (product and its transpose).
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ModelInfo, ParamContext } from '../../src/engine/extension';
import { OutputJacobianQuantity } from '../../src/engine/quantity';
import { copySubsampling, perSampleFactor, validateBackprop, type SecondOrderOptions } from './common';

export class OutputJacobian implements Extension<tf.Tensor> {
  readonly name: string;
  readonly subsampling: readonly number[] | undefined;
  readonly quantity: OutputJacobianQuantity;
  readonly quantities: readonly OutputJacobianQuantity[];

  constructor(options: SecondOrderOptions = {}) {
    this.name = options.name ?? 'OutputJacobian';
    this.subsampling = copySubsampling(this.name, options);
    this.quantity = new OutputJacobianQuantity(this.subsampling);
    this.quantities = [this.quantity];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, undefined);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const jac = perSampleFactor(this.name, ctx, ctx.value(this.quantity), this.subsampling, '', 1); // [C, n, ...p]
    const perm = [1, 0, ...ctx.param.shape.map((_, i) => i + 2)];
    const out = tf.transpose(jac, perm); // [n, C, ...p]
    jac.dispose();
    return out;
  }
}
