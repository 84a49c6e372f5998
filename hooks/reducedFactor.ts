/**
 * The rank-reduced square root of the softmax cross-entropy Hessian, for the
 * ViViT hooks that only need the GGN (its eigenvalues, eigenvectors,
 * directional derivatives, Newton steps) — not BackPACK's factor itself.
 *
 * BackPACK's factor is `S_n = (I − u uᵀ) diag(u) / √norm` with `u = √p_n`
 * (C×C, `S_nᵀ S_n = H_n = (diag p − p pᵀ)/norm`). Since `uᵀ S_n = 0` it has
 * rank C − 1: with the Householder reflection `R = I − w wᵀ/(1 + u_C)`,
 * `w = u + e_C` (`R u = −e_C`; `1 + u_C ≥ 1`, so no cancellation), the last
 * row of `R S_n` is `−uᵀ S_n = 0` and the first C − 1 rows
 *
 *   S̃_n[r, c] = (δ_rc u_c − u_r p_c / (1 + u_C)) / √norm     c < C
 *   S̃_n[r, C] = −u_r u_C / √norm                              r = 1..C−1
 *
 * satisfy `S̃_nᵀ S̃_n = S_nᵀ R² S_n = H_n`. The GGN `Σ_n J_nᵀ S̃_nᵀ S̃_n J_n`
 * is unchanged, but its Gram matrix has size (C−1)·n instead of C·n (0.73× the
 * eigen-decomposition flops for C = 10, 0.81× the Gram products).
 */
import * as tf from '@tensorflow/tfjs';
import type { LossDerivatives } from '../src/derivatives/losses/types';
import { SoftmaxCrossEntropyLoss } from '../src/derivatives/losses/softmaxCrossEntropy';
import { samplesKey, toBatchNormalization, type LossContext } from '../src/engine/quantity';
import type { ForwardRecord, ModuleDerivatives } from '../src/derivatives/types';

/** Whether `loss` is curvpack's own softmax cross-entropy (its factor has the rank-(C−1) structure above). */
export function hasReducibleFactor(loss: LossDerivatives): boolean {
  return (
    loss instanceof SoftmaxCrossEntropyLoss &&
    loss.sqrtHessian === SoftmaxCrossEntropyLoss.prototype.sqrtHessian &&
    loss.normalizer === SoftmaxCrossEntropyLoss.prototype.normalizer
  );
}

/**
 * `S̃ [C−1, n, C]` from the logits `[n, C]` (float64 on the CPU; the factor is
 * tiny) with the loss's normaliser `norm(n, C)`.
 */
export function reducedSoftmaxFactor(logits: tf.Tensor2D, norm: number): tf.Tensor3D {
  const [n, C] = logits.shape;
  if (C < 2) throw new Error(`reducedSoftmaxFactor: need C ≥ 2 classes, got logits [${logits.shape}].`);
  const z = logits.dataSync();
  const out = new Float32Array((C - 1) * n * C);
  const s = 1 / Math.sqrt(norm);
  const p = new Float64Array(C);
  const u = new Float64Array(C);
  for (let m = 0; m < n; m++) {
    // Softmax in float64 (max-shifted).
    let zmax = -Infinity;
    for (let c = 0; c < C; c++) zmax = Math.max(zmax, z[m * C + c] as number);
    let sum = 0;
    for (let c = 0; c < C; c++) {
      p[c] = Math.exp((z[m * C + c] as number) - zmax);
      sum += p[c] as number;
    }
    for (let c = 0; c < C; c++) {
      p[c] = (p[c] as number) / sum;
      u[c] = Math.sqrt(p[c] as number);
    }
    const uC = u[C - 1] as number;
    const f = 1 / (1 + uC);
    for (let r = 0; r < C - 1; r++) {
      const ur = u[r] as number;
      const base = (r * n + m) * C;
      for (let c = 0; c < C - 1; c++) out[base + c] = s * ((r === c ? (u[c] as number) : 0) - ur * (p[c] as number) * f);
      out[base + C - 1] = -s * ur * uC;
    }
  }
  return tf.tensor3d(out, [C - 1, n, C]);
}

/**
 * The reduced exact square root `S̃_n J_n`, stack `[C−1, n, ...]`
 * (softmax cross-entropy only: hooks choose it in `validate`).
 */
export class SqrtGgnReducedQuantity {
  readonly key: string;
  constructor(readonly samples?: readonly number[]) {
    this.key = `sqrtGgnExactReduced${samplesKey(samples)}`;
  }
  init(ctx: LossContext): tf.Tensor {
    if (!hasReducibleFactor(ctx.loss)) {
      throw new Error(`the reduced GGN square root needs curvpack's softmaxCrossEntropy loss, got '${ctx.loss.name}'.`);
    }
    const [n, C] = ctx.output.shape;
    return toBatchNormalization(ctx, reducedSoftmaxFactor(ctx.output, ctx.loss.normalizer(n, C)));
  }
  propagate(module: ModuleDerivatives, rec: ForwardRecord, value: tf.Tensor): tf.Tensor {
    return module.jacTMatProd(rec, value);
  }
}
