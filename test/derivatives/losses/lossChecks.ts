/**
 * Shared checks of a loss's derivatives against TF.js's own loss functions
 * (tf.losses.*, an independent implementation) and their autodiff gradients.
 *
 * The per-sample Hessian H_n = ∇²_{f_n} loss is computed from the TF.js
 * autodiff gradient g = ∇_f loss by central differences with Richardson
 * extrapolation (column c: perturb f[:, c] for all samples at once — samples
 * are independent): (4·D(h/2) − D(h))/3, D(h) = (g(f + h e_c) − g(f − h e_c))/2h,
 * h = 0.04: truncation O(h⁴) ~ 1e-6, float32 rounding ~1.5·6e-8·|g|/h ~ 2e-6 of
 * max|H| (|g| and |H| share the 1/norm scale). Nested tf.grad is no option:
 * TF.js 4.22 silently drops the second-order terms of ops whose gradient uses
 * their saved output (exp, sigmoid), e.g. ∂²/∂f² of log Σ exp f comes out
 * with the wrong diagonal. Tolerance 1e-4 relative to max|H|.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import type { LossDerivatives, Reduction } from '../../../src/derivatives/losses/types';
import { Rng } from '../../../src/utils/random';
import { expectNoLeak, maxRelErr } from '../helpers';

export interface LossSpec {
  create(reduction: Reduction): LossDerivatives;
  /** TF.js's own loss of logits f and prepared targets `[N, C]`. */
  tfLoss(reduction: Reduction, f: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar;
  /** Raw targets as a user passes them (class ids for softmax CE). */
  targets(N: number, C: number, seed: number): tf.Tensor;
}

/** Reference H `[N, C, C]` (float64) by extrapolated differences of the autodiff gradient. */
export function referenceHessian(g: (f: tf.Tensor2D) => tf.Tensor2D, f: tf.Tensor2D): Float64Array {
  const [N, C] = f.shape;
  const H = new Float64Array(N * C * C);
  for (let c = 0; c < C; c++) {
    const col = tf.tidy(() => {
      const e = tf.tensor2d(Float32Array.from({ length: C }, (_, j) => (j === c ? 1 : 0)), [1, C]);
      const D = (h: number) => tf.div(tf.sub(g(tf.add(f, tf.mul(e, h))), g(tf.sub(f, tf.mul(e, h)))), 2 * h);
      return tf.div(tf.sub(tf.mul(D(0.02), 4), D(0.04)), 3).dataSync();
    });
    // col[n, j] = ∂g[n, j]/∂f[n, c] = H_n[j, c]
    for (let n = 0; n < N; n++) for (let j = 0; j < C; j++) H[(n * C + j) * C + c] = col[n * C + j] as number;
  }
  return H;
}

/** `Σ_v S[v, n]ᵀ S[v, n]` `[N, C, C]` from a factor `[V, N, C]`, and (optionally) per-entry sample variances. */
function gram(S: tf.Tensor, withVariance = false): { mean: Float64Array; se: Float64Array } {
  const [V, N, C] = S.shape as [number, number, number];
  const s = S.dataSync();
  const sum = new Float64Array(N * C * C);
  const sq = new Float64Array(N * C * C);
  for (let v = 0; v < V; v++)
    for (let n = 0; n < N; n++)
      for (let i = 0; i < C; i++)
        for (let j = 0; j < C; j++) {
          const z = (s[(v * N + n) * C + i] as number) * (s[(v * N + n) * C + j] as number);
          sum[(n * C + i) * C + j] += z;
          if (withVariance) sq[(n * C + i) * C + j] += z * z * V * V;
        }
  const se = new Float64Array(N * C * C);
  if (withVariance) {
    // z_m = V·s_m,i·s_m,j has mean H (sum = mean of z); SE of the mean = sd(z)/√V.
    for (let k = 0; k < se.length; k++) {
      const mean = sum[k] as number;
      const variance = Math.max((sq[k] as number) / V - mean * mean, 0);
      se[k] = Math.sqrt(variance / V);
    }
  }
  return { mean: sum, se };
}

/** Every check of one loss for N samples, C outputs and a reduction. */
export function checkLoss(spec: LossSpec, reduction: Reduction, N: number, C: number, seed: number): void {
  const loss = spec.create(reduction);
  expect(loss.reduction).toBe(reduction);
  const f = tf.randomNormal([N, C], 0, 1.5, 'float32', seed) as tf.Tensor2D;
  const raw = spec.targets(N, C, seed + 1);
  expectNoLeak(() => {
    const t = loss.prepareTargets(f, raw);
    expect(t.shape).toEqual([N, C]);
    const tfl = (z: tf.Tensor2D) => spec.tfLoss(reduction, z, t);
    const g = tf.grad((z: tf.Tensor) => tfl(z as tf.Tensor2D)) as (z: tf.Tensor2D) => tf.Tensor2D;
    tf.tidy(() => {
      // Value and gradient vs TF.js's loss (float32 sums of ≤ 12 terms: 1e-5).
      const per = loss.perSampleLoss(f, t);
      expect(per.shape).toEqual([N]);
      expect(maxRelErr(tf.sum(per), tfl(f))).toBeLessThan(1e-5);
      expect(maxRelErr(loss.gradient(f, t), g(f))).toBeLessThan(1e-5);
    });
    const H = referenceHessian(g, f);
    tf.tidy(() => {
      // Exact factor: S [C, N, C] with Σ_v S_vᵀ S_v = H_n.
      const S = loss.sqrtHessian(f, t);
      expect(S.shape).toEqual([C, N, C]);
      expect(maxRelErr(gram(S).mean, H)).toBeLessThan(1e-4);
      // H·mat, Σ_n H_n.
      const V = 3;
      const mat = tf.randomNormal([V, N, C], 0, 1, 'float32', seed + 2) as tf.Tensor3D;
      const mv = mat.dataSync();
      const want = new Float64Array(V * N * C);
      for (let v = 0; v < V; v++)
        for (let n = 0; n < N; n++)
          for (let i = 0; i < C; i++)
            for (let j = 0; j < C; j++) want[(v * N + n) * C + i] += (H[(n * C + i) * C + j] as number) * (mv[(v * N + n) * C + j] as number);
      const hm = loss.hessianMatProd(f, t, mat);
      expect(hm.shape).toEqual([V, N, C]);
      expect(maxRelErr(hm, want)).toBeLessThan(1e-4);
      const sumH = new Float64Array(C * C);
      for (let n = 0; n < N; n++) for (let k = 0; k < C * C; k++) sumH[k] += H[n * C * C + k] as number;
      const sh = loss.sumHessian(f, t);
      expect(sh.shape).toEqual([C, C]);
      expect(maxRelErr(sh, sumH)).toBeLessThan(1e-4);
    });
    // Monte-Carlo factor: Σ_m S̃_mᵀ S̃_m → H (each term carries 1/M). With z_m = M·S̃_m,i S̃_m,j,
    // the estimate is mean(z) with standard error sd(z)/√M; |estimate − H| ≤ 5·SE (+ the
    // 1e-4 reference tolerance) fails with probability < 1e-6 per entry under the CLT
    // (M = 20000), and SE ≤ 3% of max|H| keeps the test able to see a wrong scale or sign.
    tf.tidy(() => {
      const M = 20000;
      const St = loss.sqrtHessianSampled(f, t, M, new Rng(seed + 3));
      expect(St.shape).toEqual([M, N, C]);
      const { mean, se } = gram(St, true);
      let scale = 0;
      for (const h of H) scale = Math.max(scale, Math.abs(h));
      for (let k = 0; k < H.length; k++) {
        expect(Math.abs((mean[k] as number) - (H[k] as number)), `MC entry ${k}`).toBeLessThanOrEqual(5 * (se[k] as number) + 1e-4 * scale);
        expect(se[k] as number).toBeLessThan(0.03 * scale);
      }
      // Same seed, same samples.
      const again = loss.sqrtHessianSampled(f, t, 5, new Rng(seed + 3));
      expect(maxRelErr(again, tf.slice(loss.sqrtHessianSampled(f, t, 5, new Rng(seed + 3)), [0], [5]))).toBe(0);
    });
    tf.dispose([t]);
  });
  tf.dispose([f, raw]);
}

/** Target-shape errors name both shapes. */
export function checkTargetErrors(spec: LossSpec, N: number, C: number, bad: tf.Tensor, pattern: RegExp): void {
  const loss = spec.create('mean');
  expectNoLeak(() => {
    const f = tf.zeros([N, C]) as tf.Tensor2D;
    expect(() => loss.prepareTargets(f, bad)).toThrow(pattern);
    f.dispose();
  });
}
