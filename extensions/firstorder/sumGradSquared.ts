/**
 * SumGradSquared: `Σ_n (∂ℓ_n/∂p)²` (element-wise) → `[...paramShape]`;
 * Dense layers: one matMul `(x²)ᵀ δ²`.
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ParamContext } from '../../src/engine/extension';
import { copySubsampling, NO_QUANTITIES, type FirstOrderOptions } from './common';

export class SumGradSquared implements Extension<tf.Tensor> {
  readonly name: string;
  readonly quantities = NO_QUANTITIES;
  readonly subsampling: readonly number[] | undefined;

  constructor(options: FirstOrderOptions = {}) {
    this.name = options.name ?? 'SumGradSquared';
    this.subsampling = copySubsampling(options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const s = this.subsampling;
    return ctx.sumSquared(ctx.gradStack(s), s);
  }
}
