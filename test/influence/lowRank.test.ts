/**
 * ArnoldiInfluence and NystromInfluence.
 *
 * Full rank (r = D): both reproduce DirectInfluence (Lanczos with full
 * reorthogonalisation recovers the whole spectrum; the Nyström sketch of a
 * PSD matrix with D probes is the matrix). The GGN of P points with C
 * outputs has rank ≤ P·C < D, so any r ≥ P·C is exact as well for the
 * Woodbury forms. Tolerance 1e-4 relative to the largest |influence|
 * (float32 products, κ ≤ 11 at λ = 0.1·μ_max; measured ≤ 1e-5).
 *
 * Low rank: Arnoldi with r below rank(M) against the explicit formula
 * Σ_{i ≤ r} u_i u_iᵀ / (μ_i + λ) built from a float64 Jacobi
 * eigendecomposition of the explicit GGN (DirectInfluence.blockMatrix), with
 * r at a spectral gap ≥ 30 % so that the Ritz vectors are determined to
 * ~1e-6/gap; tolerance 1e-3. Nyström with r below rank(M): its own factors
 * (U, d) give Uᵀ diag(1/(d+λ) − 1/λ) U + I/λ in float64 (the sketch-and-solve
 * formula), and the sketch satisfies 0 ≼ Â ≼ M.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import { DirectInfluence } from '../../src/influence/direct';
import { perSampleGradients } from '../../src/influence/gradients';
import { ArnoldiInfluence, NystromInfluence } from '../../src/influence/lowRank';
import type { CurvatureMode } from '../../src/influence/types';
import { selectParams } from '../../src/operators/curvature';
import { jacobiEigen, makeProblem, maxRelErr, type Problem } from './reference';

let p: Problem;
let ext: ExtendedModel;
const mats = new Map<CurvatureMode, { M: Float64Array; values: Float64Array; vectors: Float64Array }>();
let D = 0;

beforeAll(() => {
  p = makeProblem({ inputs: 4, hidden: 5, outputs: 3, loss: 'softmaxCrossEntropy', reduction: 'mean' }, 8, 3, 41);
  ext = extend(p.model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
  for (const c of ['ggn', 'hessian'] as const) {
    const d = new DirectInfluence(ext, { regularization: 0, curvature: c, progress: false });
    d.fit({ x: p.xTrain, y: p.yTrain });
    D = d.size;
    const M = d.blockMatrix(0);
    mats.set(c, { M, ...jacobiEigen(M, D) });
    d.dispose();
  }
});
afterAll(() => p.dispose());

const top = (c: CurvatureMode) => Math.max(...Array.from((mats.get(c) as { values: Float64Array }).values, Math.abs));

function directS(c: CurvatureMode, lambda: number): Float32Array {
  const d = new DirectInfluence(ext, { regularization: lambda, curvature: c, progress: false });
  d.fit({ x: p.xTrain, y: p.yTrain });
  const S = d.influences(p.xTest, p.yTest);
  const out = S.dataSync() as Float32Array;
  S.dispose();
  d.dispose();
  return out;
}

/** g_testᵀ A g_train for an explicit D×D float64 A. */
function explicitInfluence(A: Float64Array): Float64Array {
  const sel = selectParams(ext, undefined, 'test');
  const Gt = perSampleGradients(ext, sel, { x: p.xTest, y: p.yTest });
  const Gr = perSampleGradients(ext, sel, { x: p.xTrain, y: p.yTrain });
  const gt = Gt.dataSync();
  const gr = Gr.dataSync();
  const K = Gt.shape[0];
  const N = Gr.shape[0];
  const out = new Float64Array(K * N);
  for (let k = 0; k < K; k++) {
    const v = new Float64Array(D);
    for (let i = 0; i < D; i++) {
      let s = 0;
      for (let j = 0; j < D; j++) s += (A[i * D + j] as number) * (gt[k * D + j] as number);
      v[i] = s;
    }
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let i = 0; i < D; i++) s += (v[i] as number) * (gr[n * D + i] as number);
      out[k * N + n] = s;
    }
  }
  tf.dispose([Gt, Gr]);
  return out;
}

describe('ArnoldiInfluence and NystromInfluence (tanh MLP 4-5-3, softmax CE, D = 43, 8 points)', () => {
  for (const c of ['ggn', 'hessian'] as const) {
    it(`Arnoldi with full rank = Direct (${c})`, () => {
      const lambda = 0.1 * top(c);
      const before = tf.memory().numTensors;
      const m = new ArnoldiInfluence(ext, { regularization: lambda, curvature: c, rank: D, progress: false });
      m.fit({ x: p.xTrain, y: p.yTrain });
      const S = m.influences(p.xTest, p.yTest);
      expect(maxRelErr(S.dataSync(), directS(c, lambda))).toBeLessThan(1e-4);
      S.dispose();
      m.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('Arnoldi with rank ≥ rank(GGN) and the Woodbury complement (projected: false) = Direct', () => {
    const lambda = 0.1 * top('ggn');
    const m = new ArnoldiInfluence(ext, { regularization: lambda, curvature: 'ggn', rank: 24, projected: false, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const S = m.influences(p.xTest, p.yTest);
    expect(maxRelErr(S.dataSync(), directS('ggn', lambda))).toBeLessThan(1e-4);
    S.dispose();
    m.dispose();
  });

  it('Arnoldi with low rank = the explicit top-r eigen formula (pyDVL projection)', () => {
    const { values, vectors } = mats.get('ggn') as { values: Float64Array; vectors: Float64Array };
    // Largest relative gap among r = 3..8 (eigenvalues descending).
    const desc = Array.from(values).reverse();
    let r = 3;
    for (let k = 3; k <= 8; k++) if (((desc[k - 1] as number) - (desc[k] as number)) / (desc[k - 1] as number) > ((desc[r - 1] as number) - (desc[r] as number)) / (desc[r - 1] as number)) r = k;
    expect(((desc[r - 1] as number) - (desc[r] as number)) / (desc[r - 1] as number)).toBeGreaterThan(0.3);
    const lambda = 0.01 * top('ggn');
    const A = new Float64Array(D * D);
    for (let k = 0; k < r; k++) {
      const col = D - 1 - k;
      const w = 1 / ((values[col] as number) + lambda);
      for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) A[i * D + j] = (A[i * D + j] as number) + w * (vectors[i * D + col] as number) * (vectors[j * D + col] as number);
    }
    const m = new ArnoldiInfluence(ext, { regularization: lambda, curvature: 'ggn', rank: r, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const S = m.influences(p.xTest, p.yTest);
    expect(maxRelErr(S.dataSync(), explicitInfluence(A))).toBeLessThan(1e-3);
    // …which differs from the full inverse (the test can tell the two apart).
    expect(maxRelErr(S.dataSync(), directS('ggn', lambda))).toBeGreaterThan(1e-2);
    S.dispose();
    m.dispose();
  });

  it('Nyström with full rank and with rank ≥ rank(GGN) = Direct', () => {
    const lambda = 0.1 * top('ggn');
    const expected = directS('ggn', lambda);
    for (const rank of [D, 30]) {
      const before = tf.memory().numTensors;
      const m = new NystromInfluence(ext, { regularization: lambda, curvature: 'ggn', rank, progress: false });
      m.fit({ x: p.xTrain, y: p.yTrain });
      const S = m.influences(p.xTest, p.yTest);
      expect(maxRelErr(S.dataSync(), expected), `rank ${rank}`).toBeLessThan(1e-4);
      S.dispose();
      m.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('Nyström with low rank = the sketch-and-solve formula of its own sketch; 0 ≼ Â ≼ M', () => {
    const lambda = 0.01 * top('ggn');
    const m = new NystromInfluence(ext, { regularization: lambda, curvature: 'ggn', rank: 10, seed: 3, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const [{ values: d, vectors }] = m.approximations() as [{ values: Float64Array; vectors: tf.Tensor2D }];
    const U = vectors.dataSync();
    const r = d.length;
    expect(r).toBeLessThanOrEqual(10);
    const A = new Float64Array(D * D);
    const Ahat = new Float64Array(D * D);
    for (let i = 0; i < D; i++) A[i * D + i] = 1 / lambda;
    for (let k = 0; k < r; k++) {
      const w = 1 / ((d[k] as number) + lambda) - 1 / lambda;
      for (let i = 0; i < D; i++)
        for (let j = 0; j < D; j++) {
          const uu = (U[k * D + i] as number) * (U[k * D + j] as number);
          A[i * D + j] = (A[i * D + j] as number) + w * uu;
          Ahat[i * D + j] = (Ahat[i * D + j] as number) + (d[k] as number) * uu;
        }
    }
    const S = m.influences(p.xTest, p.yTest);
    expect(maxRelErr(S.dataSync(), explicitInfluence(A))).toBeLessThan(1e-4);
    S.dispose();
    const M = (mats.get('ggn') as { M: Float64Array }).M;
    const diff = M.map((v, i) => v - (Ahat[i] as number));
    const ev = jacobiEigen(diff, D).values;
    expect(ev[0] as number).toBeGreaterThan(-1e-4 * top('ggn'));
    expect(Math.min(...Array.from(d))).toBeGreaterThanOrEqual(0);
    m.dispose();
  });

  it('rank larger than the parameter count, λ ≤ 0 where the inverse needs λ > 0: clear errors', () => {
    expect(() => new ArnoldiInfluence(ext, { regularization: 0.1, rank: 44 })).toThrow(/rank 44 is larger than the number of parameters \(43\); use rank ≤ 43/);
    expect(() => new NystromInfluence(ext, { regularization: 0.1, rank: [10, 30], blocks: 'layer' })).toThrow(/rank 30 is larger than the number of parameters in block/);
    expect(() => new NystromInfluence(ext, { regularization: 0, rank: 5 })).toThrow(/regularization must be a finite number > 0/);
    expect(() => new ArnoldiInfluence(ext, { regularization: 0, rank: 5, projected: false })).toThrow(/regularization must be a finite number > 0/);
    expect(() => new ArnoldiInfluence(ext, { regularization: 0.1 } as never)).toThrow(/option 'rank' is required/);
  });
});
