/**
 * Eigh: GGN eigenvalues of each group (as Eigvalsh) and unit eigenvectors,
 * in parameter format, for the eigenvalues the group's `criterion` selects
 * (default `aboveRelativeThreshold(1e-4)`).
 *
 * From the Gram eigenpairs `G u_k = λ_k u_k` (float64, CPU), the
 * parameter-space eigenvector is `e_k = c · Σ_{v,n} u_k[(v,n)] s_vn / √λ_k`
 * (c² = N/n), computed per parameter as one summed product of a re-weighted
 * square-root stack (`[n, K, V] × [n, V, T·O]`, then `[I, n·T] × [n·T, K·O]`)
 * and normalised explicitly (as ViViT does). Signs: the largest-magnitude
 * entry of each Gram eigenvector u_k is positive.
 *
 * Cost: GramMatrix + the Gram eigenvectors (Gram size V·n < 320: float64
 * `eigh`, `≈ 9 (V·n)³` flops; from 320 on (`method` 'auto') the two-stage
 * solver, `≈ 2 (V·n)³` flops in TF.js matMuls plus `≈ 10 K (V·n)²` in JS for
 * the K selected vectors) + `K·n·(V·T·O + T·I·O)` per kernel; the result
 * holds K·D_g floats. Softmax cross-entropy uses the reduced factor (V = C−1,
 * `reduceFactor`).
 * Eigenvalues below `warnSmallEigvals` (default 1e-4) among the selected ones
 * raise a warning (`onWarning`), since dividing by √λ is unstable there.
 */
import type * as tf from '@tensorflow/tfjs';
import type { StepInfo } from '../src/engine/extension';
import type { ResolvedGroup } from '../src/engine/hook';
import { curvatureSampling, GramSpaceHook, type CurvatureSamplingOptions, type GramContribution, type VivitDirectionOptions, type VivitWarning } from './gramSpace';

export interface EighOptions extends VivitDirectionOptions, CurvatureSamplingOptions {}

export type EighResult = {
  /** Nonzero GGN eigenvalues of the group, ascending (as Eigvalsh). */
  evals: number[];
  /** Indices into `evals` of the K eigenvectors (the criterion's answer, in its order). */
  selected: number[];
  /** Unit eigenvectors, one tensor `[K, ...paramShape]` per group parameter (flat order, see `params`); row k ↔ `evals[selected[k]]`. */
  evecs: tf.Tensor[];
  /** Variable names of the group's parameters, in the order of `evecs`. */
  params: string[];
  /** Numerical warnings of this group (also sent to `onWarning`). */
  warnings: VivitWarning[];
};

export class Eigh extends GramSpaceHook<EighResult> {
  protected readonly needs = { cross: false, paramSpace: true };

  constructor(options: EighOptions) {
    super('Eigh', options, curvatureSampling(options?.name ?? 'Eigh', options));
  }

  finishGroup(group: ResolvedGroup, contributions: readonly GramContribution[], step: StepInfo): EighResult {
    const { eig, dirs } = this.eigenDirections(group, contributions, step.batchSize);
    return {
      evals: eig.evals,
      selected: dirs.selected,
      evecs: this.eigenvectors(group, contributions, dirs, eig.c2),
      params: group.params.map((p) => p.name),
      warnings: dirs.warnings,
    };
  }
}
