/**
 * Breakdown-free block CG against dense float64 solves of
 * (GGN + λI) X = B (λ = 0.1·λ_max, κ ≤ 11), 1e-4 relative per system
 * (rtol 1e-7: error bound κ·rtol ≈ 1e-6).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { LinearOperator } from '../../src/operators/index';
import { blockCg, blockCgAsync, cg, nystromPreconditioner, orthonormalRows } from '../../src/solvers/index';
import { denseSolve, expectNoLeak, maxRelErr } from '../operators/reference';
import { curvatureProblem } from './problem';

const P = curvatureProblem();
const { D, G, lambda } = P;
const A = P.ggn.damp(lambda);

function checkSolutions(X: tf.Tensor, B: tf.Tensor, tol = 1e-4): void {
  const K = B.shape[0] as number;
  const Bd = B.dataSync();
  const Xd = X.dataSync();
  for (let k = 0; k < K; k++) {
    const ref = denseSolve(G, D, lambda, Bd.slice(k * D, (k + 1) * D));
    const nrm = Math.max(...Array.from(ref, Math.abs));
    if (nrm === 0) expect(Math.max(...Array.from(Xd.slice(k * D, (k + 1) * D), Math.abs))).toBe(0);
    else expect(maxRelErr(Xd.slice(k * D, (k + 1) * D), ref), `system ${k}`).toBeLessThan(tol);
  }
}

describe('blockCg', () => {
  it('solves 6 systems to 1e-4 in fewer iterations than the slowest single CG', () => {
    const B = tf.randomNormal([6, D], 0, 1, 'float32', 11);
    const r = blockCg(A, B, { rtol: 1e-7 });
    checkSolutions(r.x, B);
    expect(r.converged).toBe(true);
    expect(r.relativeResidual).toBeLessThanOrEqual(1e-7);
    const single = cg(A, B, { rtol: 1e-7 }); // lockstep CG: iterations of the slowest system
    expect(r.iterations).toBeLessThanOrEqual(single.iterations);
    expect(r.history.length).toBe(r.iterations);
    tf.dispose([B, r.x, single.x]);
  });

  it('is breakdown-free: duplicated, dependent and zero right-hand sides', () => {
    const base = tf.randomNormal([2, D], 0, 1, 'float32', 12);
    const B = tf.tidy(() => {
      const [u, w] = tf.unstack(base) as [tf.Tensor1D, tf.Tensor1D];
      return tf.stack([u, u, tf.add(tf.mul(u, 2), tf.mul(w, -3)), w, tf.zeros([D])]);
    });
    const r = expectNoLeak(() => {
      const s = blockCg(A, B, { rtol: 1e-7 });
      return { ...s, xd: (() => { const d = Float64Array.from(s.x.dataSync()); s.x.dispose(); return d; })() };
    });
    expect(r.converged).toBe(true);
    const X = tf.tensor2d(Float32Array.from(r.xd), [5, D]);
    checkSolutions(X, B);
    tf.dispose([base, B, X]);
  });

  it('with a Nyström preconditioner, a warm start, and K = 1 (equals CG)', () => {
    const B = tf.randomNormal([4, D], 0, 1, 'float32', 13);
    const M = nystromPreconditioner(P.ggn, 20, { damping: lambda, seed: 1 });
    const r = blockCg(A, B, { rtol: 1e-7, preconditioner: M });
    checkSolutions(r.x, B);
    const warm = blockCg(A, B, { rtol: 1e-6, x0: r.x });
    expect(warm.iterations).toBeLessThanOrEqual(1);
    const b = tf.randomNormal([D], 0, 1, 'float32', 14);
    const one = blockCg(A, b, { rtol: 1e-7 });
    const ref = cg(A, b, { rtol: 1e-7 });
    expect(one.x.shape).toEqual([D]);
    expect(maxRelErr(one.x.dataSync(), ref.x.dataSync())).toBeLessThan(1e-4);
    tf.dispose([B, r.x, warm.x, b, one.x, ref.x]);
    M.dispose();
  });

  it('streams a dataset with blockCgAsync', async () => {
    const op = LinearOperator.fromMatvec(D, async (v) => A.apply(v), { async: true });
    const B = tf.randomNormal([3, D], 0, 1, 'float32', 15);
    expect(() => blockCg(op, B)).toThrow(/blockCgAsync/);
    const r = await blockCgAsync(op, B, { rtol: 1e-7 });
    checkSolutions(r.x, B);
    tf.dispose([B, r.x]);
  });

  it('orthonormalRows drops dependent rows and returns orthonormal ones', () => {
    const W = tf.tensor2d([[1, 0, 0], [2, 0, 0], [0, 1, 1]]);
    const Q = orthonormalRows(W, 1e-5) as tf.Tensor2D;
    expect(Q.shape).toEqual([2, 3]);
    const QQt = tf.matMul(Q, Q, false, true);
    expect(maxRelErr(QQt.dataSync(), [1, 0, 0, 1])).toBeLessThan(1e-6);
    expect(orthonormalRows(tf.zeros([2, 3]) as tf.Tensor2D, 1e-5)).toBeUndefined();
    tf.dispose([W, Q, QQt]);
  });

  it('bad input: indefinite operator, non-finite output, bad options — clear errors, no leaks', () => {
    const B = tf.randomNormal([3, D], 0, 1, 'float32', 16);
    expect(() => expectNoLeak(() => blockCg(P.hessian, B, { rtol: 1e-10 }))).toThrow(/not positive definite/);
    const nan = LinearOperator.fromMatvec(D, (v) => tf.mul(v, NaN));
    expect(() => expectNoLeak(() => blockCg(nan, B))).toThrow(/non-finite/);
    expect(() => expectNoLeak(() => blockCg(A, B, { rankTol: 0 }))).toThrow(/rankTol/);
    const wrongLength = tf.ones([2, D + 1]); // the caller's tensor: created and disposed outside the leak check
    expect(() => expectNoLeak(() => blockCg(A, wrongLength))).toThrow(/length/);
    wrongLength.dispose();
    B.dispose();
  });
});
