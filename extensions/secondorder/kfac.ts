/**
 * KFAC (Martens & Grosse 2015; BackPACK's KFAC): Kronecker factors of the GGN
 * block of each kernel, `kron(A, G)`, with G from a Monte-Carlo GGN square
 * root (`mcSamples` sampled targets per sample, E[G] = KFLR's G). Kernel →
 * `{ A [I, I], G [O, O] }`, bias → `{ G }`. Cost: a stack `[M, N, ...]`
 * backpropagated once (shared with DiagGGNMC/SqrtGGNMC of the same M and seed).
 */
import type { Extension, ParamContext } from '../../src/engine/extension';
import { SqrtGgnMcQuantity } from '../../src/engine/quantity';
import type { ModelInfo } from '../../src/engine/extension';
import { checkMonteCarlo, validateBackprop } from './common';
import { factorsResult, outputFactor, type KroneckerFactors } from './kroneckerFactors';

export interface KFACOptions {
  /** Number of Monte-Carlo samples M per data point (default 1). */
  mcSamples?: number;
  /** Seed of the sampling (default: the step's seed, `backward({ seed })`). */
  seed?: number;
  /** Result name (default `KFAC`). */
  name?: string;
}

export class KFAC implements Extension<KroneckerFactors> {
  readonly name: string;
  readonly mcSamples: number;
  readonly seed: number | undefined;
  private readonly sqrtGgn: SqrtGgnMcQuantity;
  readonly quantities: readonly SqrtGgnMcQuantity[];

  constructor(options: KFACOptions = {}) {
    this.name = options.name ?? 'KFAC';
    const { mcSamples, seed } = checkMonteCarlo(this.name, options);
    this.mcSamples = mcSamples;
    this.seed = seed;
    this.sqrtGgn = new SqrtGgnMcQuantity(this.mcSamples, this.seed);
    this.quantities = [this.sqrtGgn];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, 'sqrtHessianSampled');
  }

  computeParam(ctx: ParamContext): KroneckerFactors {
    const G = outputFactor(ctx, this.sqrtGgn.key, () => ctx.value(this.sqrtGgn));
    return factorsResult(ctx, G);
  }
}
