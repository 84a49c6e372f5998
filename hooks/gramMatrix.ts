/**
 * GramMatrix: the Gram matrix of the GGN square root of each group,
 * `G = (N/n) · [⟨s_vm, s_wn⟩]` → `[V·n, V·n]` with rows/columns `(v, n) ↦ v·n + n`
 * (v-major, ViViT's `[C, N]` flattening), V = C (exact) or M (Monte-Carlo),
 * n = N or the number of `subsampling` indices. Its nonzero eigenvalues are
 * those of the group's GGN block (subsampled: of `(N/n) Σ_{n∈sub} J_nᵀ H_n J_n`).
 *
 * Cost per Dense kernel `[I, O]`: `n²·I + (V·n)²·O` multiply-adds (two 2-D
 * matMuls, `(X Xᵀ) ⊙ (S Sᵀ)`), never the per-sample `[V, n, I, O]` products.
 */
import * as tf from '@tensorflow/tfjs';
import type { StepInfo } from '../src/engine/extension';
import type { ResolvedGroup } from '../src/engine/hook';
import { CURVATURE_ONLY_REJECTS, curvatureSampling, GramSpaceHook, type CurvatureSamplingOptions, type GramContribution, type VivitBaseOptions } from './gramSpace';

export interface GramMatrixOptions extends VivitBaseOptions, CurvatureSamplingOptions {
  /** 0 (default): exact square root, V = C. M ≥ 1: Monte-Carlo square root with M samples, V = M. */
  mcSamples?: number;
}

export type GramMatrixResult = {
  /** `[V·n, V·n]` float32, including the factor N/n. */
  gram: tf.Tensor2D;
  /** Rows of the loss Hessian's square root (C or M). */
  V: number;
  /** Curvature samples. */
  n: number;
};

export class GramMatrix extends GramSpaceHook<GramMatrixResult> {
  protected readonly needs = { cross: false, paramSpace: false };

  constructor(options: GramMatrixOptions) {
    const rejects = {
      ...CURVATURE_ONLY_REJECTS,
      method: 'GramMatrix returns the Gram matrix itself (Eigvalsh, Eigh and the directional hooks take a solver method)',
      reduceFactor: "GramMatrix always returns the Gram matrix of BackPACK's factor (size C·n)",
    };
    super('GramMatrix', options, curvatureSampling(options?.name ?? 'GramMatrix', options, rejects), false);
  }

  finishGroup(_group: ResolvedGroup, contributions: readonly GramContribution[], step: StepInfo): GramMatrixResult {
    const N = step.batchSize;
    const n = this.curvatureCount(N);
    const gram = tf.tidy(() => {
      const raw = this.rawGram(contributions);
      return N === n ? raw : (tf.mul(raw, N / n) as tf.Tensor2D);
    });
    return { gram, V: gram.shape[0] / n, n };
  }
}
