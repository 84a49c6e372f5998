/**
 * BatchDiagGGNExact / BatchDiagGGNMC: per-sample GGN diagonals
 * `[n, ...paramShape]`, entry n = diag(J_nᵀ H_n J_n) restricted to the
 * parameter (exact, or from M Monte-Carlo samples of H_n's square root).
 * With reduction `mean` each term carries the 1/norm factor, so they sum to
 * DiagGGN. Dense kernels: a broadcast product `x_n² ⊗ Σ_v δ_vn²`.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Extension, ModelInfo, ParamContext } from '../../src/engine/extension';
import { SqrtGgnExactQuantity, SqrtGgnMcQuantity } from '../../src/engine/quantity';
import {
  checkMonteCarlo,
  copySubsampling,
  ensureFits,
  validateBackprop,
  type MonteCarloOptions,
  type SecondOrderOptions,
} from './common';

function perSampleDiag(extension: string, ctx: ParamContext, stack: tf.Tensor, samples: readonly number[] | undefined): tf.Tensor {
  const n = samples?.length ?? ctx.batchSize;
  ensureFits(
    extension,
    `parameter '${ctx.param.name}' (shape [${ctx.param.shape.join(', ')}]) with n = ${n} samples`,
    n * ctx.param.size,
    `Pass fewer samples (option 'subsampling').`,
  );
  return ctx.perSampleSumSquared(stack, samples);
}

export class BatchDiagGGNExact implements Extension<tf.Tensor> {
  readonly name: string;
  readonly subsampling: readonly number[] | undefined;
  readonly quantity: SqrtGgnExactQuantity;
  readonly quantities: readonly SqrtGgnExactQuantity[];

  constructor(options: SecondOrderOptions = {}) {
    this.name = options.name ?? 'BatchDiagGGNExact';
    this.subsampling = copySubsampling(this.name, options);
    this.quantity = new SqrtGgnExactQuantity(this.subsampling);
    this.quantities = [this.quantity];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, 'sqrtHessian');
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return perSampleDiag(this.name, ctx, ctx.value(this.quantity), this.subsampling);
  }
}

export class BatchDiagGGNMC implements Extension<tf.Tensor> {
  readonly name: string;
  readonly subsampling: readonly number[] | undefined;
  readonly mcSamples: number;
  readonly seed: number | undefined;
  readonly quantity: SqrtGgnMcQuantity;
  readonly quantities: readonly SqrtGgnMcQuantity[];

  constructor(options: MonteCarloOptions = {}) {
    this.name = options.name ?? 'BatchDiagGGNMC';
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
    return perSampleDiag(this.name, ctx, ctx.value(this.quantity), this.subsampling);
  }
}
