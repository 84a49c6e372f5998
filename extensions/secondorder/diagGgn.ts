/**
 * DiagGGNExact / DiagGGNMC: the diagonal of the GGN block of each parameter,
 * `[...paramShape]` = `Σ_{v,n} (J_nᵀ s_vn)²` restricted to the parameter, from
 * the exact factor (V = C) or M Monte-Carlo samples. Dense kernels use one
 * matMul `(x²)ᵀ Σ_v δ_v²`; no `[V, n, ...paramShape]` buffer is formed.
 * With `subsampling`, the sum runs over the chosen samples only (terms keep
 * the whole batch's normalisation).
 */
import type * as tf from '@tensorflow/tfjs';
import type { Extension, ModelInfo, ParamContext } from '../../src/engine/extension';
import { SqrtGgnExactQuantity, SqrtGgnMcQuantity } from '../../src/engine/quantity';
import {
  checkMonteCarlo,
  copySubsampling,
  validateBackprop,
  type MonteCarloOptions,
  type SecondOrderOptions,
} from './common';

export class DiagGGNExact implements Extension<tf.Tensor> {
  readonly name: string;
  readonly subsampling: readonly number[] | undefined;
  readonly quantity: SqrtGgnExactQuantity;
  readonly quantities: readonly SqrtGgnExactQuantity[];

  constructor(options: SecondOrderOptions = {}) {
    this.name = options.name ?? 'DiagGGNExact';
    this.subsampling = copySubsampling(this.name, options);
    this.quantity = new SqrtGgnExactQuantity(this.subsampling);
    this.quantities = [this.quantity];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, 'sqrtHessian');
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return ctx.sumSquared(ctx.value(this.quantity), this.subsampling);
  }
}

export class DiagGGNMC implements Extension<tf.Tensor> {
  readonly name: string;
  readonly subsampling: readonly number[] | undefined;
  readonly mcSamples: number;
  readonly seed: number | undefined;
  readonly quantity: SqrtGgnMcQuantity;
  readonly quantities: readonly SqrtGgnMcQuantity[];

  constructor(options: MonteCarloOptions = {}) {
    this.name = options.name ?? 'DiagGGNMC';
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
    return ctx.sumSquared(ctx.value(this.quantity), this.subsampling);
  }
}
