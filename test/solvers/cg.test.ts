/**
 * Conjugate gradient against dense float64 solves of (G + λI) x = b with
 * the GGN of a small MLP and λ = 0.1·λ_max (condition number ≤ 11: the
 * damping does not hide errors). With rtol = 1e-7 the error bound is
 * κ·rtol ≈ 1e-6, so 1e-4 relative (the brief's target) is a real check; the
 * measured errors are ~1e-7.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { DenseOperator, DiagonalOperator, LinearOperator, ggnOperator, hessianOperator } from '../../src/operators/index';
import { cg, cgAsync, inverseByCg } from '../../src/solvers/index';
import { denseSolve, expectNoLeak, expectNoLeakAsync, matmul64, maxRelErr } from '../operators/reference';
import { curvatureProblem } from './problem';

const P = curvatureProblem();
const { D, G, lambda } = P;
const A = P.ggn.damp(lambda);
const b = tf.randomNormal([D], 0, 1, 'float32', 7);
const bd = Float64Array.from(b.dataSync());
const ref = denseSolve(G, D, lambda, bd);

/** ‖b − (G + λI) x‖ / ‖b‖ in float64. */
function trueResidual(x: ArrayLike<number>, rhs: ArrayLike<number>): number {
  const Ax = matmul64(G, x, D, D, 1);
  let r = 0;
  let n = 0;
  for (let i = 0; i < D; i++) {
    r += ((rhs[i] as number) - (Ax[i] as number) - lambda * (x[i] as number)) ** 2;
    n += (rhs[i] as number) ** 2;
  }
  return Math.sqrt(r / n);
}

describe('cg', () => {
  it('solves (GGN + λI) x = b to 1e-4 relative and reports its convergence', () => {
    const r = cg(A, b, { rtol: 1e-7 });
    expect(maxRelErr(r.x.dataSync(), ref)).toBeLessThan(1e-4);
    expect(r.converged).toBe(true);
    expect(r.iterations).toBeGreaterThan(1);
    expect(r.iterations).toBeLessThan(D);
    expect(r.relativeResidual).toBeLessThanOrEqual(1e-7);
    expect(r.history.length).toBe(r.iterations);
    expect(r.history[r.history.length - 1]).toBe(r.relativeResidual);
    // The recursive residual agrees with the true one (float32 products: ~1e-6).
    expect(trueResidual(r.x.dataSync(), bd)).toBeLessThan(1e-5);
    expect(r.x.shape).toEqual([D]);
    r.x.dispose();
  });

  it('leaks no tensors', () => {
    expectNoLeak(() => cg(A, b, { rtol: 1e-5 }).x.dispose());
  });

  it('warm start: from the solution it stops at once; from a partial solution it needs fewer iterations', () => {
    const cold = cg(A, b, { rtol: 1e-7 });
    const x0 = tf.tensor1d(Float32Array.from(ref));
    const hot = cg(A, b, { rtol: 1e-5, x0 });
    expect(hot.iterations).toBeLessThanOrEqual(1);
    const partial = cg(A, b, { rtol: 1e-7, maxIter: 4 });
    expect(partial.converged).toBe(false);
    expect(partial.iterations).toBe(4);
    const resumed = cg(A, b, { rtol: 1e-7, x0: partial.x });
    expect(resumed.iterations).toBeLessThan(cold.iterations);
    expect(maxRelErr(resumed.x.dataSync(), ref)).toBeLessThan(1e-4);
    tf.dispose([cold.x, x0, hot.x, partial.x, resumed.x]);
  });

  it('a stack of right-hand sides equals separate solves', () => {
    const B = tf.randomNormal([3, D], 0, 1, 'float32', 8);
    const r = cg(A, B, { rtol: 1e-7 });
    const Bd = B.dataSync();
    const X = r.x.dataSync();
    for (let k = 0; k < 3; k++) {
      const rk = denseSolve(G, D, lambda, Bd.slice(k * D, (k + 1) * D));
      expect(maxRelErr(X.slice(k * D, (k + 1) * D), rk)).toBeLessThan(1e-4);
    }
    expect(r.residualNorms.length).toBe(3);
    tf.dispose([B, r.x]);
  });

  it('with a Jacobi preconditioner (exact diagonal) and with a product function', () => {
    const diag = Float32Array.from({ length: D }, (_, i) => 1 / ((G[i * D + i] as number) + lambda));
    const M = new DiagonalOperator(diag);
    const r = cg(A, b, { rtol: 1e-7, preconditioner: M });
    expect(maxRelErr(r.x.dataSync(), ref)).toBeLessThan(1e-4);
    M.dispose();
    const dense = new DenseOperator(G, D);
    const fn = (v: tf.Tensor) => tf.tidy(() => tf.add(dense.apply(v), tf.mul(v, lambda)));
    const r2 = cg(fn, b, { rtol: 1e-7 });
    expect(maxRelErr(r2.x.dataSync(), ref)).toBeLessThan(1e-4);
    tf.dispose([r.x, r2.x]);
    dense.dispose();
  });

  it('inverseByCg is (A + λI)⁻¹ as an operator', () => {
    const inv = inverseByCg(P.ggn, { damping: lambda, rtol: 1e-7 });
    const x = inv.apply(b);
    expect(maxRelErr(x.dataSync(), ref)).toBeLessThan(1e-4);
    x.dispose();
    const tight = inverseByCg(P.ggn, { damping: lambda, maxIter: 2 });
    expect(() => expectNoLeak(() => tight.apply(b))).toThrow(/did not converge in 2 iterations/);
  });

  it('streams a tf.data.Dataset with cgAsync (same solution); cg points to cgAsync', async () => {
    const rows = [tf.unstack(P.x), tf.unstack(P.y)];
    const ds = tf.data.zip({ xs: tf.data.array(rows[0] as tf.Tensor[]), ys: tf.data.array(rows[1] as tf.Tensor[]) }).batch(16);
    const op = ggnOperator(P.ext, ds as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>).damp(lambda);
    expect(() => expectNoLeak(() => cg(op, b))).toThrow(/cgAsync/);
    const r = await expectNoLeakAsync(async () => {
      const s = await cgAsync(op, b, { rtol: 1e-7 });
      const d = Float64Array.from(s.x.dataSync());
      s.x.dispose();
      return { d, s };
    });
    expect(maxRelErr(r.d, ref)).toBeLessThan(1e-4);
    expect(r.s.converged).toBe(true);
    tf.dispose(rows.flat());
  });
});

describe('cg bad input', () => {
  it('indefinite operator: a clear error, no leaked tensors', () => {
    // The Hessian of this net is indefinite (λ_min < 0); without damping CG must fail loudly.
    expect(P.hessEig.values[0]).toBeLessThan(0);
    const H = hessianOperator(P.ext, P.data);
    expect(() => expectNoLeak(() => cg(H, b, { rtol: 1e-10 }))).toThrow(/not positive definite/);
  });

  it('non-finite operator output: a clear error, no leaked tensors', () => {
    const nan = LinearOperator.fromMatvec(D, (v) => tf.mul(v, NaN));
    expect(() => expectNoLeak(() => cg(nan, b))).toThrow(/non-finite/);
    const d = tf.linspace(1, 10, D);
    let calls = 0;
    const after3 = LinearOperator.fromMatvec(D, (v) => (++calls > 3 ? tf.mul(v, Infinity) : tf.mul(v, d)));
    const B2 = tf.randomNormal([2, D], 0, 1, 'float32', 1);
    expect(() => expectNoLeak(() => cg(after3, B2, { rtol: 1e-12 }))).toThrow(/Infinity at iteration 2.*non-finite/) // fn is called per row: call 4 = iteration 2;
    tf.dispose([d, B2]);
  });

  it('size mismatches, bad tolerances and bad warm starts', () => {
    const short = tf.ones([D - 1]);
    expect(() => expectNoLeak(() => cg(A, short))).toThrow(new RegExp(`length ${D}.*length ${D - 1}`));
    expect(() => expectNoLeak(() => cg(A, b, { rtol: 0 }))).toThrow(/both 0/);
    expect(() => expectNoLeak(() => cg(A, b, { maxIter: 0 }))).toThrow(/maxIter/);
    expect(() => expectNoLeak(() => cg(A, b, { x0: short }))).toThrow(/x0/);
    expect(() => cg(A, b, { preconditioner: new DiagonalOperator([1, 2]) })).toThrow(/preconditioner acts on length 2/);
    short.dispose();
  });

  it('a zero right-hand side returns 0 without iterating', () => {
    const z = tf.zeros([D]);
    const r = cg(A, z);
    expect(r.iterations).toBe(0);
    expect(Array.from(r.x.dataSync()).every((v) => v === 0)).toBe(true);
    tf.dispose([z, r.x]);
  });
});
