/**
 * Eigvalsh: the nonzero eigenvalues (ascending) of each group's GGN block,
 * from the eigenvalues of its Gram matrix `(N/n)·VᵀV` (size V·n, see
 * GramMatrix), computed in float64 on the CPU; the D_g × D_g GGN is never
 * formed. Eigenvalues with `|λ| ≤ relativeCutoff · max|λ|` (default 1e-8) are
 * dropped.
 *
 * Cost: the Gram matrix (GramMatrix) plus the eigenvalues of a V·n matrix
 * (float64: `≈ 4/3 (V·n)³` flops; for V·n ≥ 320 the default two-stage solver
 * does the bulk in TF.js matMuls). Softmax cross-entropy uses the reduced
 * factor (V = C − 1, `reduceFactor`); Monte-Carlo (`mcSamples: 1`, V = 1) and
 * curvature subsampling shrink V·n further.
 */
import type { StepInfo } from '../src/engine/extension';
import type { ResolvedGroup } from '../src/engine/hook';
import {
  curvatureSampling,
  GramSpaceHook,
  type CurvatureSamplingOptions,
  type EigenvalueMethod,
  type GramContribution,
  type VivitBaseOptions,
  type VivitSolverOptions,
} from './gramSpace';

export interface EigvalshOptions extends VivitBaseOptions, VivitSolverOptions, CurvatureSamplingOptions {
  /**
   * Eigenvalue solver (default 'auto': the two-stage float32/float64 solver of
   * src/linalg/large.ts for Gram size V·n ≥ 320 off the cpu backend — several
   * times faster at 1280, absolute error ≲ 1e-6 · λ_max, so on that route
   * eigenvalues below `max(relativeCutoff, 1e-6) · λ_max` are dropped —, else
   * float64). 'float64' resolves eigenvalues down to the Gram matrix's own
   * float32 noise (~1e-7 · λ_max).
   */
  method?: EigenvalueMethod;
}

export type EigvalshResult = {
  /** Nonzero GGN eigenvalues of the group, ascending. */
  evals: number[];
};

export class Eigvalsh extends GramSpaceHook<EigvalshResult> {
  protected readonly needs = { cross: false, paramSpace: false };

  constructor(options: EigvalshOptions) {
    super('Eigvalsh', options, curvatureSampling(options?.name ?? 'Eigvalsh', options));
  }

  finishGroup(_group: ResolvedGroup, contributions: readonly GramContribution[], step: StepInfo): EigvalshResult {
    return { evals: this.eigenvalues(contributions, step.batchSize).evals };
  }
}
