/**
 * BatchDiagGGNExact / BatchDiagGGNMC: per-sample GGN diagonals
 * `[n, ...paramShape]`, entry n = diag(J_nᵀ H_n J_n) restricted to the
 * parameter (exact, or from M Monte-Carlo samples of H_n's square root).
 * With reduction `mean` each term carries the 1/norm factor, so they sum to
 * DiagGGN. Dense kernels: a broadcast product `x_n² ⊗ Σ_v δ_vn²`.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ParamContext } from '../../src/engine/extension';
import { ensureFits, SqrtGgnExactExtension, SqrtGgnMcExtension, type MonteCarloOptions, type SecondOrderOptions } from './common';

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

export class BatchDiagGGNExact extends SqrtGgnExactExtension {
  constructor(options: SecondOrderOptions = {}) {
    super('BatchDiagGGNExact', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return perSampleDiag(this.name, ctx, ctx.value(this.quantity), this.subsampling);
  }
}

export class BatchDiagGGNMC extends SqrtGgnMcExtension {
  constructor(options: MonteCarloOptions = {}) {
    super('BatchDiagGGNMC', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return perSampleDiag(this.name, ctx, ctx.value(this.quantity), this.subsampling);
  }
}
