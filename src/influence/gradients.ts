/**
 * Per-sample quantities of the single-sample loss ℓ_j = loss({(x_j, y_j)})
 * (FORMAT.md §6.5: the model's loss type and reduction applied with N = 1,
 * no 1/nTrain), computed for a whole batch in one forward/backward pass:
 *
 * - `perSampleGradients`: `[N, D]` rows ∇_θ ℓ_j over the selected parameters
 *   (flat order). From the per-sample gradient factors of the batch loss
 *   (kernel `X_jᵀ D_j`, bias `Σ_t D_j,t`), rescaled by norm(N)/norm(1).
 * - `mixedInputGradients`: `[K, N, ...inputShape]` rows
 *   ∇_{x_j} ⟨v_k, ∇_θ ℓ_j⟩ (the perturbation influence of direction v_k):
 *   the input gradient of the directional derivative, by Pearlmutter's
 *   R-operator with θ-direction v_k through the module derivatives — a
 *   forward pass carrying R{h_i} = J_i R{h_{i−1}} + (∂h_i/∂θ_i) v_i, then
 *   R{δ_L} = H_loss R{f} and, backwards to the input,
 *   R{δ_in} = J_iᵀ R{δ_out} + (φ''(x) ⊙ δ_out) ⊙ R{x} (elementwise modules)
 *   + J_i(v_kernel)ᵀ δ_out (Dense/Conv2D: the input Jacobian is the kernel).
 *   Since ∇_{x_j} of the batch loss involves ℓ_j only, R{δ_in}[j] is exactly
 *   ∇_{x_j} ⟨v, ∇_θ ℓ_j⟩ for every j at once. Cost: about two
 *   forward+backward passes with K-wide stacks.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { ParamInfo } from '../engine/params';
import type { ForwardRecord, ModuleDerivatives } from '../derivatives/types';
import { perSampleKernelProduct } from '../derivatives/weightProducts';
import { addSecondOrderTerms, batchScale, gradientFactors, rForward, splitStack, type Selection } from '../operators/curvature';
import type { Batch } from '../operators/data';

/** `[N, Dsel]`: ∇_θ ℓ_j of every row of the batch, over the selection in flat order. */
export function perSampleGradients(model: ExtendedModel, sel: Selection, batch: Batch): tf.Tensor2D {
  return tf.tidy(() => {
    const N = batch.x.shape[0] as number;
    const { factors, scale } = gradientFactors(model, sel, batch);
    const parts = factors.map((g) => {
      if (g.X === undefined) {
        const [, T, O] = g.D.shape;
        return T === 1 ? tf.reshape(g.D, [N, O]) : tf.sum(g.D, 1);
      }
      return tf.reshape(perSampleKernelProduct(g.X, tf.expandDims(g.D, 0) as tf.Tensor4D), [N, g.param.size]);
    });
    const G = parts.length === 1 ? (parts[0] as tf.Tensor) : tf.concat(parts, 1);
    return tf.mul(G, scale) as tf.Tensor2D;
  });
}

/** Throws for modules whose second derivative the R-operator cannot handle. */
export function checkSecondDerivatives(model: ExtendedModel, where: string): void {
  for (const m of model.modules) {
    const d = m.derivatives;
    if (d.residualDiag !== undefined && !d.elementwise) {
      throw new Error(`${where}: ${d.kind} has a second derivative that only elementwise modules may have; perturbation influence is not available for this model.`);
    }
  }
}

/** `[K, N, ...inputShape]`: ∇_{x_j} ⟨v_k, ∇_θ ℓ_j⟩ for V `[K, Dsel]` (see the file comment). */
export function mixedInputGradients(model: ExtendedModel, sel: Selection, batch: Batch, V: tf.Tensor2D): tf.Tensor {
  const mods = model.modules.map((m) => m.derivatives);
  return tf.tidy(() => {
    const K = V.shape[0];
    const vOf = splitStack(sel, V);
    const { recs, Rin, f, Rf } = rForward(mods, sel, batch.x, vOf);
    const targets = model.loss.prepareTargets(f, batch.y);
    let RD: tf.Tensor = model.loss.hessianMatProd(f, targets, Rf); // [K, N, C]
    let delta: tf.Tensor = model.loss.gradient(f, targets); // [N, C]
    for (let i = mods.length - 1; i >= 0; i--) {
      const d = mods[i] as ModuleDerivatives;
      const rec = recs[i] as ForwardRecord;
      RD = addSecondOrderTerms(d.jacTMatProd(rec, RD), d, rec, Rin[i], delta, sel.byModule[i] as readonly ParamInfo[], vOf);
      if (i > 0) delta = tf.reshape(d.jacTMatProd(rec, tf.expandDims(delta, 0)), rec.input.shape);
    }
    const N = batch.x.shape[0] as number;
    return tf.mul(tf.reshape(RD, [K, N, ...model.inputShape]), batchScale(model, N));
  });
}

/** Whether every entry is finite: Σ (0·x) is NaN iff some entry is NaN or ±Inf (one reduction, one download). */
export function isAllFinite(t: tf.Tensor): boolean {
  const s = tf.tidy(() => tf.sum(tf.mul(t, 0)));
  const v = s.dataSync()[0] as number;
  s.dispose();
  return !Number.isNaN(v);
}
