/**
 * DiagGGNExact / DiagGGNMC: the diagonal of the GGN block of each parameter,
 * `[...paramShape]` = `Σ_{v,n} (J_nᵀ s_vn)²` restricted to the parameter, from
 * the exact factor (V = C) or M Monte-Carlo samples. Dense kernels use one
 * matMul `(x²)ᵀ Σ_v δ_v²`; no `[V, n, ...paramShape]` buffer is formed.
 * With `subsampling`, the sum runs over the chosen samples only (terms keep
 * the whole batch's normalisation).
 */
import type * as tf from '@tensorflow/tfjs';
import type { ParamContext } from '../../src/engine/extension';
import { SqrtGgnExactExtension, SqrtGgnMcExtension, type MonteCarloOptions, type SecondOrderOptions } from './common';

export class DiagGGNExact extends SqrtGgnExactExtension {
  constructor(options: SecondOrderOptions = {}) {
    super('DiagGGNExact', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return ctx.sumSquared(ctx.value(this.quantity), this.subsampling);
  }
}

export class DiagGGNMC extends SqrtGgnMcExtension {
  constructor(options: MonteCarloOptions = {}) {
    super('DiagGGNMC', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return ctx.sumSquared(ctx.value(this.quantity), this.subsampling);
  }
}
