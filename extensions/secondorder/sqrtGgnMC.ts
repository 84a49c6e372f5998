/**
 * SqrtGGNMC: Monte-Carlo square root of the GGN, per parameter
 * `[M, n, ...paramShape]`: entry `[m, n] = J_nᵀ s̃_mn` restricted to the
 * parameter, with `s̃_mn` the loss's sampled factor (scaled by 1/√M), so that
 * `E[Σ_{m,n} vec(·) vec(·)ᵀ]` is the GGN block.
 *
 * Randomness comes from `seed` (or the step's seed); extensions with equal
 * `mcSamples`, `seed` and `subsampling` share the same samples.
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ModelInfo, ParamContext } from '../../src/engine/extension';
import { SqrtGgnMcQuantity } from '../../src/engine/quantity';
import {
  checkMonteCarlo,
  copySubsampling,
  perSampleFactor,
  validateBackprop,
  type MonteCarloOptions,
} from './common';

export class SqrtGGNMC implements Extension<tf.Tensor> {
  readonly name: string;
  readonly subsampling: readonly number[] | undefined;
  readonly mcSamples: number;
  readonly seed: number | undefined;
  readonly quantity: SqrtGgnMcQuantity;
  readonly quantities: readonly SqrtGgnMcQuantity[];

  constructor(options: MonteCarloOptions = {}) {
    this.name = options.name ?? 'SqrtGGNMC';
    const { mcSamples, seed } = checkMonteCarlo(this.name, options);
    this.mcSamples = mcSamples;
    this.seed = seed;
    this.subsampling = copySubsampling(this.name, options);
    this.quantity = new SqrtGgnMcQuantity(mcSamples, seed, this.subsampling);
    this.quantities = [this.quantity];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, 'sqrtHessianSampled');
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return perSampleFactor(this.name, ctx, ctx.value(this.quantity), this.subsampling, 'or fewer Monte-Carlo samples (option mcSamples)');
  }
}
