/**
 * InverseHarmonicMeanInfluence against its explicit formula (DataInf), built
 * in float64 from autodiff per-sample gradients (cpu backend):
 *
 *   A_b = (1/(λ_b P)) Σ_j (I − g_j g_jᵀ / (λ_b + ‖g_j‖²))   (g_j restricted to block b)
 *
 * influence = Σ_b g_test,bᵀ A_b g_train,b. λ_b = 0.1·(largest eigenvalue of
 * the block's empirical Fisher). Tolerance 1e-4 relative to the largest
 * |influence| (a closed form in float32: ~1e-6 measured).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import { InverseHarmonicMeanInfluence } from '../../src/influence/inverseHarmonicMean';
import { buildReference, jacobiEigen, makeProblem, range, maxRelErr, type Problem, type Reference } from './reference';

let p: Problem;
let ref: Reference;
let ext: ExtendedModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  p = makeProblem({ inputs: 4, hidden: 5, outputs: 3, loss: 'mse', reduction: 'mean' }, 8, 3, 61);
  ref = buildReference(p, { hessian: false });
  ext = extend(p.model, { loss: 'mse', reduction: 'mean' });
});
afterAll(() => p.dispose());

function explicit(blocks: { idx: number[]; lambda: number }[]): Float64Array {
  const P = ref.gTrain.length;
  const out = new Float64Array(ref.gTest.length * P);
  for (const { idx, lambda } of blocks) {
    const dot = (a: Float64Array, b: Float64Array) => idx.reduce((s, i) => s + (a[i] as number) * (b[i] as number), 0);
    ref.gTest.forEach((gt, t) =>
      ref.gTrain.forEach((gr, n) => {
        // gtᵀ A_b gr = (1/(λP)) Σ_j (gt·gr − (gt·g_j)(g_j·gr)/(λ + ‖g_j‖²))
        let s = 0;
        for (const gj of ref.gTrain) s += dot(gt, gr) - (dot(gt, gj) * dot(gj, gr)) / (lambda + dot(gj, gj));
        out[t * P + n] = (out[t * P + n] as number) + s / (lambda * P);
      }),
    );
  }
  return out;
}

function topEf(idx: number[]): number {
  const n = idx.length;
  const A = new Float64Array(n * n);
  idx.forEach((i, r) => idx.forEach((j, q) => (A[r * n + q] = ref.empiricalFisher[i * ref.D + j] as number)));
  return Math.max(...Array.from(jacobiEigen(A, n).values));
}

describe('InverseHarmonicMeanInfluence vs the explicit DataInf formula (tanh MLP 4-5-3, mse)', () => {
  it('layer blocks (default) with one λ each, and the full block', () => {
    const l0 = range(0, 25);
    const l1 = range(25, 43);
    const lam = [0.1 * topEf(l0), 0.1 * topEf(l1)];
    const before = tf.memory().numTensors;
    const m = new InverseHarmonicMeanInfluence(ext, { regularization: lam, progress: false });
    expect(m.blocks.map((b) => b.size)).toEqual([25, 18]);
    m.fit({ x: p.xTrain, y: p.yTrain, batchSize: 5 });
    const S = m.influences(p.xTest, p.yTest);
    expect(maxRelErr(S.dataSync(), explicit([{ idx: l0, lambda: lam[0] as number }, { idx: l1, lambda: lam[1] as number }]))).toBeLessThan(1e-4);
    S.dispose();
    m.dispose();
    const all = range(0, 43);
    const lf = 0.1 * topEf(all);
    const mf = new InverseHarmonicMeanInfluence(ext, { regularization: lf, blocks: 'full', progress: false });
    mf.fit({ x: p.xTrain, y: p.yTrain });
    const Sf = mf.influences(p.xTest, p.yTest);
    expect(maxRelErr(Sf.dataSync(), explicit([{ idx: all, lambda: lf }]))).toBeLessThan(1e-4);
    Sf.dispose();
    mf.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('needs λ > 0 and is an empirical-Fisher method', () => {
    expect(() => new InverseHarmonicMeanInfluence(ext, { regularization: 0 })).toThrow(/must be a finite number > 0/);
    expect(() => new InverseHarmonicMeanInfluence(ext, { regularization: 1, curvature: 'ggn' } as never)).toThrow(/inverse empirical Fisher/);
  });
});
