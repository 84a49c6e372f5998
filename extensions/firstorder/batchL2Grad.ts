/**
 * BatchL2Grad: squared norms of the per-sample gradients `‖∂ℓ_n/∂p‖²` → `[n]`.
 * Dense layers never form the per-sample gradients (‖x_n‖²·‖δ_n‖²); Conv2D
 * takes the cheaper of a patch-Gram contraction and explicit products.
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ParamContext } from '../../src/engine/extension';
import { copySubsampling, NO_QUANTITIES, type FirstOrderOptions } from './common';

export class BatchL2Grad implements Extension<tf.Tensor> {
  readonly name: string;
  readonly quantities = NO_QUANTITIES;
  readonly subsampling: readonly number[] | undefined;

  constructor(options: FirstOrderOptions = {}) {
    this.name = options.name ?? 'BatchL2Grad';
    this.subsampling = copySubsampling(options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const s = this.subsampling;
    return tf.tidy(() => tf.squeeze(ctx.perSampleSquaredNorm(ctx.gradStack(s), s), [0]));
  }
}
