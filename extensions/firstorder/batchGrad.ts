/**
 * BatchGrad: per-sample gradients `∂ℓ_n/∂p` → `[n, ...paramShape]`
 * (n = batch size, or the length of `subsampling`). With reduction `mean`
 * they include the 1/N factor and sum to the gradient (BackPACK convention).
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ParamContext } from '../../src/engine/extension';
import { copySubsampling, NO_QUANTITIES, type FirstOrderOptions } from './common';

export class BatchGrad implements Extension<tf.Tensor> {
  readonly name: string;
  readonly quantities = NO_QUANTITIES;
  readonly subsampling: readonly number[] | undefined;

  constructor(options: FirstOrderOptions = {}) {
    this.name = options.name ?? 'BatchGrad';
    this.subsampling = copySubsampling(options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const s = this.subsampling;
    return tf.tidy(() => tf.squeeze(ctx.perSample(ctx.gradStack(s), s), [0]));
  }
}
