/**
 * Variance: BackPACK's gradient variance `Σ_n g_n²/n − (Σ_n g_n / n)²`
 * → `[...paramShape]`, with g_n the per-sample gradients (which already carry
 * 1/N under reduction `mean`) and n the number of samples used (batch size,
 * or the length of `subsampling`).
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ParamContext } from '../../src/engine/extension';
import { copySubsampling, NO_QUANTITIES, type FirstOrderOptions } from './common';

export class Variance implements Extension<tf.Tensor> {
  readonly name: string;
  readonly quantities = NO_QUANTITIES;
  readonly subsampling: readonly number[] | undefined;

  constructor(options: FirstOrderOptions = {}) {
    this.name = options.name ?? 'Variance';
    this.subsampling = copySubsampling(options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const s = this.subsampling;
    const n = s?.length ?? ctx.batchSize;
    return tf.tidy(() => {
      const stack = ctx.gradStack(s);
      const sgs = ctx.sumSquared(stack, s);
      const g = s === undefined ? ctx.gradient : tf.squeeze(ctx.summed(stack, s), [0]);
      return tf.sub(tf.div(sgs, n), tf.square(tf.div(g, n)));
    });
  }
}
