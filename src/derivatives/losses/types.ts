/**
 * Losses on a model output `f [N, C]`. `ℓ_n = s_n / norm` are the per-sample
 * terms (FORMAT.md §4): every per-sample quantity is a derivative of ℓ_n.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Rng } from '../../utils/random';

export type Reduction = 'mean' | 'sum';
export type LossName = 'mse' | 'softmaxCrossEntropy' | 'sigmoidCrossEntropy';
export const LOSS_NAMES: readonly LossName[] = ['mse', 'softmaxCrossEntropy', 'sigmoidCrossEntropy'];
export const REDUCTIONS: readonly Reduction[] = ['mean', 'sum'];

export interface LossDerivatives {
  readonly name: LossName;
  readonly reduction: Reduction;
  /** The reduction's normaliser for N samples and C outputs. */
  normalizer(N: number, C: number): number;
  /**
   * Validate targets against the output and return them as `[N, C]` floats
   * (class ids become one-hot rows). Throws naming both shapes.
   */
  prepareTargets(output: tf.Tensor2D, targets: tf.Tensor): tf.Tensor2D;
  /** Per-sample loss terms `ℓ_n` `[N]` (targets prepared). */
  perSampleLoss(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D;
  /** `∂loss/∂f` `[N, C]`. */
  gradient(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D;
  /** Symmetric factor `S [C, N, C]`, entry `[v, n, c] = S_n[v, c]`, `S_nᵀ S_n = H_n`. */
  sqrtHessian(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor3D;
  /** Monte-Carlo factor `[M, N, C]` with `E[S̃_nᵀ S̃_n] = H_n`. */
  sqrtHessianSampled(output: tf.Tensor2D, targets: tf.Tensor2D, mcSamples: number, rng: Rng): tf.Tensor3D;
  /** `H_n · mat[v, n]` for a stack `[V, N, C]`. */
  hessianMatProd(output: tf.Tensor2D, targets: tf.Tensor2D, mat: tf.Tensor3D): tf.Tensor3D;
  /** `Σ_n H_n` `[C, C]` (the start of the KFRA recursion). */
  sumHessian(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D;
}

export function shapeStr(t: { shape: readonly number[] }): string {
  return `[${t.shape.join(', ')}]`;
}
