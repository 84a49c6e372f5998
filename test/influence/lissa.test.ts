/**
 * LissaInfluence against the tolerance its iteration count implies.
 *
 * With full products and dampen = 0, t iterations give exactly the truncated
 * Neumann series f_t = (1/s) Σ_{i=0}^{t} Tⁱ g, T = I − (M + λI)/s, whose
 * distance to (M + λI)⁻¹ g is (M + λI)⁻¹ T^{t+1} g — at most κ·ρ^{t+1}
 * relative, ρ = 1 − (μ_min + λ)/s, κ = (μ_max + λ)/(μ_min + λ). Checked:
 * (1) after 10 iterations the factors equal the float64 truncated series
 *     built from the explicit GGN (DirectInfluence.blockMatrix) — tolerance
 *     1e-4 (ten float32 products);
 * (2) with t chosen so that κ·ρ^{t+1} ≤ 1e-5, the influences agree with
 *     DirectInfluence to 1e-4 (the bound plus float32 rounding of the
 *     accumulated sum);
 * (3) minibatches covering every training point are the full products.
 * λ = 0.1·μ_max (the largest the issue allows; it keeps t in the hundreds).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import { DirectInfluence } from '../../src/influence/direct';
import { LissaInfluence } from '../../src/influence/lissa';
import { perSampleGradients } from '../../src/influence/gradients';
import { jacobiEigen, makeProblem, maxRelErr, type Problem } from './reference';

let p: Problem;
let ext: ExtendedModel;
let M: Float64Array;
let D: number;
let mu: Float64Array;
let lambda: number;
let directS: Float32Array;
let directF: Float32Array;

beforeAll(() => {
  p = makeProblem({ inputs: 4, hidden: 5, outputs: 3, loss: 'mse', reduction: 'mean' }, 10, 3, 31);
  ext = extend(p.model, { loss: 'mse', reduction: 'mean' });
  const d0 = new DirectInfluence(ext, { regularization: 0, curvature: 'ggn', progress: false });
  d0.fit({ x: p.xTrain, y: p.yTrain });
  D = d0.size;
  M = d0.blockMatrix(0);
  mu = jacobiEigen(M, D).values;
  d0.dispose();
  lambda = 0.1 * (mu[D - 1] as number);
  const d = new DirectInfluence(ext, { regularization: lambda, curvature: 'ggn', progress: false });
  d.fit({ x: p.xTrain, y: p.yTrain });
  const S = d.influences(p.xTest, p.yTest);
  const F = d.influenceFactors(p.xTest, p.yTest);
  directS = S.dataSync() as Float32Array;
  directF = F.dataSync() as Float32Array;
  tf.dispose([S, F]);
  d.dispose();
});
afterAll(() => p.dispose());

describe('LissaInfluence (tanh MLP 4-5-3, mse, GGN, D = 43)', () => {
  it('after t iterations: the truncated Neumann series (float64 from the explicit GGN)', () => {
    const before = tf.memory().numTensors;
    const m = new LissaInfluence(ext, { regularization: lambda, curvature: 'ggn', rtol: 0, maxIter: 10, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const s = m.scales[0] as number;
    // scale 'auto' = max|μ| + λ (Lanczos): within 1e-3 of the explicit top eigenvalue.
    expect(Math.abs(s - ((mu[D - 1] as number) + lambda)) / s).toBeLessThan(1e-3);
    const F = m.influenceFactors(p.xTest, p.yTest);
    expect(m.lastSolves[0]?.iterations).toBe(10);
    const G = perSampleGradients(ext, m.selection, { x: p.xTest, y: p.yTest });
    const g = G.dataSync();
    const K = G.shape[0];
    const expected = new Float64Array(K * D);
    for (let k = 0; k < K; k++) {
      let term = Float64Array.from(g.subarray(k * D, (k + 1) * D));
      const acc = Float64Array.from(term);
      for (let it = 1; it <= 10; it++) {
        const next = new Float64Array(D);
        for (let i = 0; i < D; i++) {
          let mv = 0;
          for (let j = 0; j < D; j++) mv += (M[i * D + j] as number) * (term[j] as number);
          next[i] = (term[i] as number) - (mv + lambda * (term[i] as number)) / s;
        }
        term = next;
        for (let i = 0; i < D; i++) acc[i] = (acc[i] as number) + (term[i] as number);
      }
      for (let i = 0; i < D; i++) expected[k * D + i] = (acc[i] as number) / s;
    }
    expect(maxRelErr(F.dataSync(), expected)).toBeLessThan(1e-4);
    // …and still far from the solution (the test would notice a solver that ignores maxIter).
    expect(maxRelErr(F.dataSync(), directF)).toBeGreaterThan(1e-2);
    tf.dispose([F, G]);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('with the iteration count for κ·ρ^(t+1) ≤ 1e-5: DirectInfluence to 1e-4', () => {
    const s = (mu[D - 1] as number) + lambda;
    const lo = Math.max(mu[0] as number, 0) + lambda;
    const rho = 1 - lo / s;
    const kappa = s / lo;
    const t = Math.ceil(Math.log(1e-5 / kappa) / Math.log(rho));
    expect(t).toBeLessThan(400);
    const m = new LissaInfluence(ext, { regularization: lambda, curvature: 'ggn', rtol: 0, maxIter: t, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const S = m.influences(p.xTest, p.yTest);
    expect(maxRelErr(S.dataSync(), directS)).toBeLessThan(1e-4);
    S.dispose();
    m.dispose();
  });

  it('minibatches that cover the training set are the full products; an unconverged solve warns', () => {
    const full = new LissaInfluence(ext, { regularization: lambda, scale: 2 * (mu[D - 1] as number), rtol: 0, maxIter: 30, progress: false });
    const mb = new LissaInfluence(ext, { regularization: lambda, scale: 2 * (mu[D - 1] as number), rtol: 0, maxIter: 30, minibatch: 10, progress: false });
    full.fit({ x: p.xTrain, y: p.yTrain });
    mb.fit({ x: p.xTrain, y: p.yTrain });
    const a = full.influences(p.xTest, p.yTest);
    const b = mb.influences(p.xTest, p.yTest);
    expect(maxRelErr(b.dataSync(), a.dataSync())).toBeLessThan(1e-5);
    tf.dispose([a, b]);
    const warnings: string[] = [];
    const few = new LissaInfluence(ext, { regularization: lambda, maxIter: 3, progress: false });
    few.on('warning', (w) => warnings.push(w.message));
    few.fit({ x: p.xTrain, y: p.yTrain });
    few.influenceFactors(p.xTest, p.yTest).dispose();
    expect(warnings.join()).toMatch(/LiSSA did not reach rtol in 3 iterations/);
    [full, mb, few].forEach((m) => m.dispose());
  });

  it('diverges with a clear error when the scale is too small', () => {
    const before = tf.memory().numTensors;
    const m = new LissaInfluence(ext, { regularization: lambda, scale: 0.1 * (mu[D - 1] as number), maxIter: 500, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    expect(() => m.influences(p.xTest, p.yTest)).toThrow(/increase 'scale'/);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => new LissaInfluence(ext, { regularization: 0.1, scale: -1 })).toThrow(/'scale' must be 'auto' or a finite number > 0/);
  });
});
