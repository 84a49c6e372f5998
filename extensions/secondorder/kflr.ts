/**
 * KFLR (Botev et al. 2017; BackPACK's KFLR): Kronecker factors of the GGN
 * block of each kernel, `kron(A, G)`, with G from the exact GGN square root
 * `S_n J_n` (C backpropagated vectors per sample). Kernel → `{ A [I, I], G [O, O] }`,
 * bias → `{ G }` (exactly the bias GGN block). See kroneckerFactors.ts for the
 * definitions (FORMAT.md §6.1). Cost: the exact square root stack `[C, N, ...]`
 * backpropagated once (shared with SqrtGGNExact, DiagGGNExact, EKFAC), plus
 * `I²·N·T + O²·C·N` per layer.
 */
import type { Extension, ParamContext } from '../../src/engine/extension';
import { SqrtGgnExactQuantity } from '../../src/engine/quantity';
import type { ModelInfo } from '../../src/engine/extension';
import { validateBackprop } from './common';
import { factorsResult, outputFactor, type KroneckerFactors } from './kroneckerFactors';

export interface KFLROptions {
  /** Result name (default `KFLR`). */
  name?: string;
}

export class KFLR implements Extension<KroneckerFactors> {
  readonly name: string;
  private readonly sqrtGgn = new SqrtGgnExactQuantity();
  readonly quantities = [this.sqrtGgn];

  constructor(options: KFLROptions = {}) {
    this.name = options.name ?? 'KFLR';
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, 'sqrtHessian');
  }

  computeParam(ctx: ParamContext): KroneckerFactors {
    const G = outputFactor(ctx, this.sqrtGgn.key, () => ctx.value(this.sqrtGgn));
    return factorsResult(ctx, G);
  }
}
