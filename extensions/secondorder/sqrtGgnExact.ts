/**
 * SqrtGGNExact: BackPACK's exact square root of the GGN, per parameter
 * `[C, n, ...paramShape]` with entry `[v, n] = (S_n J_n)[v, :]` restricted to
 * the parameter (S_n from the loss, FORMAT.md §4), so that
 * `Σ_{v,n} vec(s_vn) vec(s_vn)ᵀ` is the parameter's GGN block.
 *
 * Cost: the stack `[C, n, ...out]` is backpropagated once (shared with
 * DiagGGNExact, KFLR, …); the result holds C·n·size floats per parameter
 * (a 784×256 kernel with C = 10, n = 128 is 1 GiB): subsample, or use
 * SqrtGGNMC with M < C.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ParamContext } from '../../src/engine/extension';
import { perSampleFactor, SqrtGgnExactExtension, type SecondOrderOptions } from './common';

export class SqrtGGNExact extends SqrtGgnExactExtension {
  constructor(options: SecondOrderOptions = {}) {
    super('SqrtGGNExact', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    return perSampleFactor(this.name, ctx, ctx.value(this.quantity), this.subsampling, 'or use SqrtGGNMC with mcSamples < C');
  }
}
