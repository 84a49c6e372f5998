/**
 * SqrtGGNMC: Monte-Carlo square root of the GGN, per parameter
 * `[M, n, ...paramShape]`: entry `[m, n] = J_nᵀ s̃_mn` restricted to the
 * parameter, with `s̃_mn` the loss's sampled factor (scaled by 1/√M), so that
 * `E[Σ_{m,n} vec(·) vec(·)ᵀ]` is the GGN block.
 *
 * Randomness comes from `seed` (or the step's seed); extensions with equal
 * `mcSamples`, `seed` and `subsampling` share the same samples.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ParamContext } from '../../src/engine/extension';
import { perSampleFactor, SqrtGgnMcExtension, type MonteCarloOptions } from './common';

export class SqrtGGNMC extends SqrtGgnMcExtension {
  constructor(options: MonteCarloOptions = {}) {
    super('SqrtGGNMC', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return perSampleFactor(this.name, ctx, ctx.value(this.quantity), this.subsampling, 'or fewer Monte-Carlo samples (option mcSamples)');
  }
}
