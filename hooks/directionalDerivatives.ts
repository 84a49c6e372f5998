/**
 * DirectionalDerivatives: per-sample first- and second-order derivatives of
 * the loss along the GGN eigenvectors e_k the group's criterion selects
 * (FORMAT.md §6.4, ViViT's convention with the factor N):
 *
 *   γ_nk = N ⟨e_k, g_n⟩                 [n_grad, K]   g_n = ∂ℓ_n/∂θ_g
 *   λ_nk = N Σ_v ⟨e_k, s_vn⟩²           [n_ggn, K]    (mean over n = λ_k)
 *
 * Gradient samples (`subsamplingGrad`) and curvature samples (`subsamplingGgn`,
 * which also define the eigenvectors) are chosen separately; `mcSamplesGgn`
 * replaces the exact square root by a Monte-Carlo one (V = M).
 *
 * Computed in Gram space: γ from the cross products `⟨s_vm, g_n⟩`
 * (Dense: `(X_ggn X_gradᵀ) ⊙ (S Gᵀ)`, two 2-D matMuls per kernel) and the Gram
 * eigenvectors, `γ = N · [⟨s, g⟩]ᵀ · c U Λ^{-1/2}`; λ from the Gram eigenvectors
 * alone, `λ_nk = n λ_k Σ_v u_k[(v,n)]²`. No parameter-space vector is formed
 * unless `evecs: true`.
 */
import type * as tf from '@tensorflow/tfjs';
import type { StepInfo } from '../src/engine/extension';
import type { ResolvedGroup } from '../src/engine/hook';
import {
  DIRECTIONAL_REJECTS,
  GramSpaceHook,
  hostToTensor,
  rejectOptions,
  samplingSettings,
  type GramContribution,
  type VivitDirectionOptions,
  type VivitWarning,
} from './gramSpace';

export interface DirectionalOptions extends VivitDirectionOptions {
  /** Gradient samples for γ: indices into the batch (unique). Default: the whole batch. */
  subsamplingGrad?: readonly number[];
  /** Curvature samples for the eigenvectors and λ: indices into the batch (unique). Default: the whole batch. */
  subsamplingGgn?: readonly number[];
  /** 0 (default): exact GGN. M ≥ 1: Monte-Carlo GGN with M samples (ViViT allows M = 1). */
  mcSamplesGgn?: number;
  /** Also return the parameter-space eigenvectors (default false). */
  evecs?: boolean;
}

export type DirectionalDerivativesResult = {
  /** Nonzero GGN eigenvalues of the group, ascending. */
  evals: number[];
  /** Indices into `evals` of the K directions (the criterion's answer, in its order). */
  selected: number[];
  /** `[n_grad, K]` first-order directional derivatives. */
  gammas: tf.Tensor2D;
  /** `[n_ggn, K]` second-order directional derivatives. */
  lambdas: tf.Tensor2D;
  /** With `evecs: true`: unit eigenvectors `[K, ...paramShape]` per group parameter. */
  evecs?: tf.Tensor[];
  /** Variable names of the group's parameters (order of `evecs`). */
  params: string[];
  warnings: VivitWarning[];
};

/** Normalised sampling of the directional hooks. */
export function directionalSampling(name: string, options: DirectionalOptions) {
  rejectOptions(name, options, DIRECTIONAL_REJECTS);
  return samplingSettings(name, {
    curvature: options?.subsamplingGgn,
    curvatureOption: 'subsamplingGgn',
    gradient: options?.subsamplingGrad,
    mcSamples: options?.mcSamplesGgn,
    mcOption: 'mcSamplesGgn',
  });
}

export class DirectionalDerivatives extends GramSpaceHook<DirectionalDerivativesResult> {
  protected readonly needs: { cross: boolean; paramSpace: boolean };
  readonly returnsEvecs: boolean;

  constructor(options: DirectionalOptions) {
    super('DirectionalDerivatives', options, directionalSampling(options?.name ?? 'DirectionalDerivatives', options));
    this.returnsEvecs = options.evecs === true;
    this.needs = { cross: true, paramSpace: this.returnsEvecs };
  }

  finishGroup(group: ResolvedGroup, contributions: readonly GramContribution[], step: StepInfo): DirectionalDerivativesResult {
    const d = this.directional(group, contributions, step, this.returnsEvecs);
    return {
      evals: d.eig.evals,
      selected: d.dirs.selected,
      gammas: d.gammas,
      lambdas: hostToTensor(d.lambdas),
      ...(d.evecs ? { evecs: d.evecs } : {}),
      params: group.params.map((p) => p.name),
      warnings: d.dirs.warnings,
    };
  }
}
