/**
 * Lanczos (eigsh) and the Arnoldi low-rank inverse against float64 dense
 * eigendecompositions (src/linalg eigh) of the explicit curvature matrices:
 *
 * - eigenvalues to 1e-5·λ_max (float32 products: ~1e-7), Ritz vectors by
 *   their residual ‖M u − θ u‖ ≤ 1e-4·λ_max measured with the dense matrix
 *   (independent of eigenvector signs and of clustered eigenvalues);
 * - full rank (k = D, including a rank-deficient GGN where Lanczos must
 *   restart after breakdowns): (M + λI)⁻¹ b to 1e-4 against the dense solve;
 * - low rank: V(Λ+λ)⁻¹Vᵀ b (and + (I − VVᵀ)b/λ with the Woodbury
 *   correction) against the same formula with the dense top-k eigenpairs.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { eigh } from '../../src/linalg/eigh';
import { DenseOperator, LinearOperator, ggnOperator } from '../../src/operators/index';
import { arnoldi, arnoldiAsync, eigsh } from '../../src/solvers/index';
import { buildMlp, classTargets, denseSolve, expectNoLeak, matmul64, randomTensor, maxRelErr, symmetricWithSpectrum } from '../operators/reference';
import { curvatureProblem } from './problem';

const P = curvatureProblem();
const { D, G, H, lambda, top } = P;
const b = tf.randomNormal([D], 0, 1, 'float32', 41);
const bd = Float64Array.from(b.dataSync());

function ritzResidual(M: Float64Array, n: number, u: ArrayLike<number>, theta: number): number {
  const Mu = matmul64(M, u, n, n, 1);
  return Math.sqrt(Array.from(Mu).reduce((s, v, i) => s + (v - theta * (u[i] as number)) ** 2, 0));
}

/** Σ_k f(λ_k) v_k v_kᵀ b over the dense eigenpairs with indices `idx`. */
function spectralApply(M: Float64Array, n: number, idx: number[], f: (l: number) => number, rhs: ArrayLike<number>): Float64Array {
  const { values, vectors } = eigh(M, n);
  const V = vectors as Float64Array;
  const out = new Float64Array(n);
  for (const k of idx) {
    let c = 0;
    for (let i = 0; i < n; i++) c += (V[i * n + k] as number) * (rhs[i] as number);
    c *= f(values[k] as number);
    for (let i = 0; i < n; i++) out[i] = (out[i] as number) + c * (V[i * n + k] as number);
  }
  return out;
}

describe('eigsh', () => {
  it('top-5 eigenpairs of the GGN: values, Ritz residuals, orthonormal vectors, convergence info', () => {
    const r = expectNoLeak(() => {
      const e = eigsh(P.ggn, 5);
      const out = { ...e, v: Float64Array.from(e.vectors.dataSync()) };
      e.vectors.dispose();
      return out;
    });
    const ref = P.ggnEig.values.slice(D - 5);
    expect(maxRelErr(r.values, ref)).toBeLessThan(1e-5);
    for (let i = 0; i < 5; i++) {
      expect(ritzResidual(G, D, r.v.slice(i * D, (i + 1) * D), r.values[i] as number)).toBeLessThan(1e-4 * top);
    }
    const gramUU = matmul64(r.v, Array.from({ length: D * 5 }, (_, k) => r.v[(k % 5) * D + Math.floor(k / 5)] as number), 5, D, 5);
    expect(maxRelErr(gramUU, Float64Array.from({ length: 25 }, (_, k) => (k % 6 === 0 ? 1 : 0)))).toBeLessThan(1e-5);
    expect(r.converged).toBe(true);
    expect(r.iterations).toBeLessThanOrEqual(D);
    expect(r.residuals.length).toBe(5);
    expect(Math.max(...r.residuals)).toBeLessThan(1e-5 * top);
    expect(Array.from(r.values)).toEqual([...r.values].sort((a, c) => a - c)); // ascending
  });

  it('smallest eigenvalues of an SPD matrix and largest-magnitude eigenvalues of the indefinite Hessian', () => {
    const spec = Array.from({ length: 40 }, (_, i) => 0.05 * (i + 1) ** 1.5);
    const M = new DenseOperator(symmetricWithSpectrum(spec, 2), 40);
    const s = eigsh(M, 3, { which: 'smallest', maxIter: 40 });
    expect(maxRelErr(s.values, spec.slice(0, 3))).toBeLessThan(1e-4);
    s.vectors.dispose();
    M.dispose();
    const mag = eigsh(P.hessian, 4, { which: 'magnitude' });
    const hv = Array.from(P.hessEig.values).sort((a, c) => Math.abs(c) - Math.abs(a)).slice(0, 4).sort((a, c) => a - c);
    expect(hv[0]).toBeLessThan(0); // the set contains a negative eigenvalue
    expect(maxRelErr(mag.values, hv)).toBeLessThan(1e-5);
    mag.vectors.dispose();
  });
});

describe('arnoldi low-rank inverse', () => {
  it('full rank: (M + λI)⁻¹ b to 1e-4 (exact and projected inverse coincide)', () => {
    const lr = arnoldi(P.ggn, D);
    expect(maxRelErr(lr.values, P.ggnEig.values)).toBeLessThan(1e-5);
    const ref = denseSolve(G, D, lambda, bd);
    for (const inv of [lr.inverse(lambda), lr.projectedInverse(lambda)]) {
      const x = inv.apply(b);
      expect(maxRelErr(x.dataSync(), ref)).toBeLessThan(1e-4);
      x.dispose();
      inv.dispose();
    }
    lr.dispose();
  });

  it('full rank of a rank-deficient GGN (Lanczos restarts after breakdown), also for the indefinite Hessian', () => {
    const spec = { inputs: 6, units: [8, 4], activation: 'tanh' as const, loss: 'softmaxCrossEntropy' as const, reduction: 'mean' as const };
    const model = buildMlp(spec, 1);
    const ext = extend(model, { loss: spec.loss });
    const op = ggnOperator(ext, { x: randomTensor([3, 6], 8), y: classTargets(3, 4, 2) }); // rank ≤ 3·3 = 9 < D
    const M = op.toDense();
    const ev = eigh(M, D).values;
    expect(ev.filter((v) => v > 1e-6 * (ev[D - 1] as number)).length).toBeLessThanOrEqual(9);
    const lr = arnoldi(op, D);
    expect(maxRelErr(lr.values, ev)).toBeLessThan(1e-5);
    const lam = 0.1 * (ev[D - 1] as number);
    const inv = lr.inverse(lam);
    const x = inv.apply(b);
    expect(maxRelErr(x.dataSync(), denseSolve(M, D, lam, bd))).toBeLessThan(1e-4);
    tf.dispose([x]);
    inv.dispose();
    lr.dispose();
    // Indefinite: the Hessian with damping beyond its most negative eigenvalue.
    const lh = arnoldi(P.hessian, D);
    const damp = 0.1 * top - (P.hessEig.values[0] as number);
    const ih = lh.inverse(damp);
    const xh = ih.apply(b);
    expect(maxRelErr(xh.dataSync(), denseSolve(H, D, damp, bd))).toBeLessThan(1e-4);
    tf.dispose([xh]);
    ih.dispose();
    lh.dispose();
    model.dispose();
  });

  it('low rank (k = 6): projected and Woodbury inverses equal the explicit low-rank formulas', () => {
    const k = 6;
    const ev = P.ggnEig.values;
    // The top-k subspace is well separated: λ_{D−k} − λ_{D−k−1} is a sizeable fraction of λ_max.
    const gap = ((ev[D - k] as number) - (ev[D - k - 1] as number)) / top;
    expect(gap).toBeGreaterThan(1e-3);
    const lr = arnoldi(P.ggn, k, { tol: 1e-7 });
    const idx = Array.from({ length: k }, (_, i) => D - k + i);
    const proj = spectralApply(G, D, idx, (l) => 1 / (l + lambda), bd);
    const pinv = lr.projectedInverse(lambda);
    const xp = pinv.apply(b);
    expect(maxRelErr(xp.dataSync(), proj)).toBeLessThan(1e-4);
    // Woodbury: + (I − VVᵀ) b / λ.
    const inside = spectralApply(G, D, idx, () => 1, bd);
    const wood = Float64Array.from(proj, (v, i) => v + ((bd[i] as number) - (inside[i] as number)) / lambda);
    const winv = lr.inverse(lambda);
    const xw = winv.apply(b);
    expect(maxRelErr(xw.dataSync(), wood)).toBeLessThan(1e-4);
    tf.dispose([xp, xw]);
    for (const o of [lr, pinv, winv]) o.dispose();
  });

  it('async operators, bad input (rank > D, rank 0, NaN, λ ≤ 0 for the Woodbury inverse), no leaks', async () => {
    const aop = LinearOperator.fromMatvec(D, async (v) => P.ggn.apply(v), { async: true });
    expect(() => arnoldi(aop, 3)).toThrow(/eigshAsync/);
    const lr = await arnoldiAsync(aop, 3);
    expect(maxRelErr(lr.values, P.ggnEig.values.slice(D - 3))).toBeLessThan(1e-5);
    expect(() => lr.inverse(0)).toThrow(/damping > 0/);
    lr.dispose();
    expect(() => expectNoLeak(() => eigsh(P.ggn, D + 1))).toThrow(new RegExp(`rank ${D + 1} is larger than the operator size D = ${D}`));
    expect(() => eigsh(P.ggn, 0)).toThrow(/rank.*≥ 1/);
    expect(() => eigsh(P.ggn, 2, { which: 'biggest' as never })).toThrow(/which/);
    const nan = LinearOperator.fromMatvec(D, (v) => tf.mul(v, NaN));
    expect(() => expectNoLeak(() => eigsh(nan, 2))).toThrow(/non-finite/);
    expect(() => eigsh((v: tf.Tensor) => tf.clone(v), 2)).toThrow(/option 'size'/);
  });
});
