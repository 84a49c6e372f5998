/**
 * Linear operators and their composition against dense float64 algebra
 * (independent references: explicit matrices multiplied, inverted by
 * Gaussian elimination). Products run in float32, so results are compared
 * with a tolerance relative to the largest reference entry: 1e-5 leaves ×10
 * over the float32 rounding of these O(10)-term sums and inverses of
 * well-conditioned (κ ≤ 30) matrices.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  BlockDiagonalOperator,
  DenseOperator,
  DiagonalOperator,
  IdentityOperator,
  LinearOperator,
  LowRankOperator,
  RestrictedOperator,
  sumOperators,
} from '../../src/operators/index';
import {
  applyF64,
  denseSolve,
  expectNoLeak,
  expectNoLeakAsync,
  gaussianMatrix,
  matmul64,
  maxRelErr,
  symmetricWithSpectrum,
} from './reference';

const TOL = 1e-5;
const n = 12;
const A = symmetricWithSpectrum([3, 2.5, 2, 1.7, 1.2, 1, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1], 11);
const B = symmetricWithSpectrum([1, -0.5, 0.7, 0.2, -0.1, 0.3, 0.9, -0.8, 0.05, 0.4, 0.6, -0.3], 12);
const v = gaussianMatrix(1, n, 13);
const mv = (M: ArrayLike<number>, x: ArrayLike<number>) => matmul64(M, x, n, n, 1);

function dense(fn: (i: number, j: number) => number, size = n): Float64Array {
  const out = new Float64Array(size * size);
  for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) out[i * size + j] = fn(i, j);
  return out;
}

describe('explicit operators', () => {
  it('DenseOperator: vector and stack products, toDense round trip', () => {
    const op = new DenseOperator(A, n);
    expect(maxRelErr(applyF64(op, v), mv(A, v))).toBeLessThan(TOL);
    const V = gaussianMatrix(3, n, 5);
    const R = expectNoLeak(() => {
      const t = tf.tensor2d(Float32Array.from(V), [3, n]);
      const r = op.apply(t);
      const d = Float64Array.from(r.dataSync());
      expect(r.shape).toEqual([3, n]);
      tf.dispose([t, r]);
      return d;
    });
    // Row k of the result is A v_k.
    const ref = matmul64(V, A, 3, n, n); // V Aᵀ = V A (A symmetric)
    expect(maxRelErr(R, ref)).toBeLessThan(TOL);
    expect(maxRelErr(op.toDense(), A)).toBe(0);
    expect(op.symmetric).toBe(true);
    op.dispose();
  });

  it('the generic toDense (column by column, chunked) reproduces the matrix', () => {
    const op = new DenseOperator(A, n);
    const view = op.scale(1); // a view without its own toDense
    expect(maxRelErr(view.toDense({ chunk: 5 }), A)).toBeLessThan(TOL);
    op.dispose();
  });

  it('identity, diagonal and their inverses', () => {
    const d = Array.from({ length: n }, (_, i) => 0.5 + i);
    const D = new DiagonalOperator(d);
    expect(maxRelErr(applyF64(D, v), Float64Array.from(v, (x, i) => x * (d[i] as number)))).toBeLessThan(TOL);
    const Di = D.inverse(0.25);
    expect(maxRelErr(applyF64(Di, v), Float64Array.from(v, (x, i) => x / ((d[i] as number) + 0.25)))).toBeLessThan(TOL);
    const I = new IdentityOperator(n, 2);
    expect(maxRelErr(applyF64(I.inverse(1), v), Float64Array.from(v, (x) => x / 3))).toBeLessThan(TOL);
    tf.dispose([D.diagonal]);
    Di.dispose();
  });

  it('DenseOperator.inverse of a symmetric indefinite matrix equals the dense solve', () => {
    const op = new DenseOperator(B, n);
    const inv = op.inverse(1.5); // eigenvalues of B + 1.5 I lie in [0.7, 2.5]
    expect(maxRelErr(applyF64(inv, v), denseSolve(B, n, 1.5, v))).toBeLessThan(TOL);
    expect(() => op.inverse(0.5)).toThrow(/singular/); // eigenvalue −0.5 + 0.5 = 0
    tf.dispose([]);
    inv.dispose();
    op.dispose();
  });

  it('LowRankOperator: product, exact (Woodbury) inverse and projected inverse', () => {
    // U: 3 orthonormal rows = eigenvectors of A (columns of its spectral factor).
    const Q = symmetricWithSpectrum([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 21); // a rank-3 projector
    // Orthonormal rows spanning range(Q): Gram–Schmidt on rows of Q.
    const rows: Float64Array[] = [];
    for (let i = 0; i < n && rows.length < 3; i++) {
      const r = Float64Array.from({ length: n }, (_, j) => Q[i * n + j] as number);
      for (const u of rows) {
        const d = r.reduce((s, x, j) => s + x * (u[j] as number), 0);
        for (let j = 0; j < n; j++) r[j] = (r[j] as number) - d * (u[j] as number);
      }
      const nr = Math.sqrt(r.reduce((s, x) => s + x * x, 0));
      if (nr > 1e-6) rows.push(r.map((x) => x / nr));
    }
    const U = new Float64Array(3 * n);
    rows.forEach((r, i) => U.set(r, i * n));
    const d = [4, 2, 0.5];
    const M = dense((i, j) => d.reduce((s, dk, k) => s + dk * (U[k * n + i] as number) * (U[k * n + j] as number), 0));
    const Ut = tf.tensor2d(Float32Array.from(U), [3, n]);
    const op = new LowRankOperator(Ut, d);
    Ut.dispose();
    expect(maxRelErr(applyF64(op, v), mv(M, v))).toBeLessThan(TOL);
    const lam = 0.3;
    const inv = op.inverse(lam);
    expect(maxRelErr(applyF64(inv, v), denseSolve(M, n, lam, v))).toBeLessThan(TOL);
    // Projected: Uᵀ diag(1/(d+λ)) U v.
    const P = dense((i, j) => d.reduce((s, dk, k) => s + (U[k * n + i] as number) * (U[k * n + j] as number) / (dk + lam), 0));
    const pinv = op.projectedInverse(lam);
    expect(maxRelErr(applyF64(pinv, v), mv(P, v))).toBeLessThan(TOL);
    // Inverse of an inverse: back to the original (shift handled).
    const back = inv.inverse(0);
    expect(maxRelErr(applyF64(back, v), Float64Array.from(denseSolve(dense((i, j) => denseSolve(M, n, lam, Float64Array.from({ length: n }, (_, k) => (k === j ? 1 : 0)))[i] as number), n, 0, v)))).toBeLessThan(1e-4);
    expect(() => op.inverse(0)).toThrow(/damping > 0/);
    for (const o of [op, inv, pinv, back]) o.dispose();
  });
});

describe('composition against dense algebra', () => {
  it('scale, add, damp', () => {
    const a = new DenseOperator(A, n);
    const b = new DenseOperator(B, n);
    const op = a.scale(2).add(b).damp(0.5);
    const M = dense((i, j) => 2 * (A[i * n + j] as number) + (B[i * n + j] as number) + (i === j ? 0.5 : 0));
    expect(maxRelErr(applyF64(op, v), mv(M, v))).toBeLessThan(TOL);
    const s = sumOperators([a, b, new IdentityOperator(n, 3)]);
    expect(maxRelErr(applyF64(s, v), mv(dense((i, j) => (A[i * n + j] as number) + (B[i * n + j] as number) + (i === j ? 3 : 0)), v))).toBeLessThan(TOL);
    // Inverses of scaled and damped operators with closed forms.
    const inv = a.scale(2).damp(0.5).inverse(0.25); // (2A + 0.75 I)⁻¹
    expect(maxRelErr(applyF64(inv, v), denseSolve(dense((i, j) => 2 * (A[i * n + j] as number)), n, 0.75, v))).toBeLessThan(TOL);
    expect(() => op.inverse(0.1)).toThrow(/no closed-form inverse/);
    inv.dispose();
    a.dispose();
    b.dispose();
  });

  it('restrict to a list of indices and to ranges equals the dense submatrix', () => {
    const a = new DenseOperator(A, n);
    const idx = [9, 1, 4, 5, 6];
    const sorted = [...idx].sort((x, y) => x - y);
    const sub = a.restrict(idx);
    expect(sub.size).toBe(5);
    const ref = Float64Array.from({ length: 25 }, (_, k) => A[(sorted[Math.floor(k / 5)] as number) * n + (sorted[k % 5] as number)] as number);
    expect(maxRelErr(sub.toDense(), ref)).toBeLessThan(TOL);
    const byRanges = a.restrict([[1, 2], [4, 7], [9, 10]]);
    expect(maxRelErr(byRanges.toDense(), ref)).toBeLessThan(TOL);
    expect(() => a.restrict([1, 1])).toThrow(/twice/);
    expect(() => a.restrict([12])).toThrow(/\[0, 12\)/);
    a.dispose();
  });

  it('blockDiagonal(groups) keeps the diagonal blocks (any order, scattered groups) and inverts blockwise', () => {
    const a = new DenseOperator(A, n);
    const groups = [[0, 3, 4], [[6, 9]] as [number, number][], [1, 2]];
    const member = new Int32Array(n).fill(-1);
    member[0] = member[3] = member[4] = 0;
    member[6] = member[7] = member[8] = 1;
    member[1] = member[2] = 2;
    const ref = dense((i, j) => (member[i] !== -1 && member[i] === member[j] ? (A[i * n + j] as number) : 0));
    const bd = a.blockDiagonal(groups);
    expect(maxRelErr(bd.toDense(), ref)).toBeLessThan(TOL);
    // Dense blocks have inverses; coordinates outside every group get 1/λ.
    const blocks = groups.map((g) => new DenseOperator(a.restrict(g).toDense()));
    const exp = new BlockDiagonalOperator(blocks, { sets: (bd as BlockDiagonalOperator).sets, size: n, owns: true });
    expect(maxRelErr(exp.toDense(), ref)).toBeLessThan(TOL);
    const lam = 0.2;
    const before = tf.memory().numTensors;
    const inv = exp.inverse(lam);
    expect(maxRelErr(applyF64(inv, v), denseSolve(ref, n, lam, v))).toBeLessThan(TOL);
    inv.dispose(); // owns the block inverses it created
    expect(tf.memory().numTensors).toBe(before);
    expect(() => expectNoLeak(() => exp.inverse(0))).toThrow(/damping > 0/);
    exp.dispose();
    a.dispose();
  });

  it('BlockDiagonalOperator over consecutive blocks and restriction views', () => {
    const a = new DenseOperator(A, n);
    const op = new BlockDiagonalOperator([a.restrict([[0, 5]]), new IdentityOperator(3, 2), new DiagonalOperator([1, 2, 3, 4])]);
    expect(op.size).toBe(12);
    const ref = dense((i, j) => {
      if (i < 5 && j < 5) return A[i * n + j] as number;
      if (i >= 5 && i < 8) return i === j ? 2 : 0;
      if (i >= 8 && i === j) return i - 7;
      return 0;
    });
    expect(maxRelErr(op.toDense(), ref)).toBeLessThan(TOL);
    expect(op.blocks[0]).toBeInstanceOf(RestrictedOperator);
    (op.blocks[2] as DiagonalOperator).dispose();
    a.dispose();
  });
});

describe('product functions', () => {
  const M = new Float32Array(A);
  const Mt = tf.tensor2d(M, [n, n]);
  const fn = (x: tf.Tensor) => tf.tidy(() => tf.reshape(tf.matMul(Mt, tf.reshape(x, [n, 1])), [n]));

  it('wraps a vector function (called per row of a stack) and an async one', async () => {
    const op = LinearOperator.fromMatvec(n, fn);
    const V = tf.tensor2d(Float32Array.from(gaussianMatrix(2, n, 3)), [2, n]);
    const R = op.apply(V);
    expect(maxRelErr(R.dataSync(), matmul64(V.dataSync(), A, 2, n, n))).toBeLessThan(TOL);
    const aop = LinearOperator.fromMatvec(n, async (x) => fn(x), { async: true });
    expect(aop.isAsync).toBe(true);
    expect(() => aop.apply(V)).toThrow(/asynchronous.*applyAsync/);
    await expectNoLeakAsync(async () => {
      const R2 = await aop.applyAsync(V);
      expect(maxRelErr(R2.dataSync(), R.dataSync())).toBeLessThan(1e-7);
      R2.dispose();
    });
    tf.dispose([V, R]);
  });

  it('rejects functions that return promises synchronously or wrong shapes', () => {
    const bad = LinearOperator.fromMatvec(n, async (x) => fn(x));
    const x = tf.ones([n]);
    expect(() => bad.apply(x)).toThrow(/returned a Promise.*async: true/);
    const wrong = LinearOperator.fromMatvec(n, () => tf.ones([n + 1]));
    expect(() => expectNoLeak(() => wrong.apply(x))).toThrow(/returned shape \[13\], expected \[12\]/);
    x.dispose();
  });
});

describe('bad input', () => {
  it('names both shapes, the dtype, and leaks nothing', () => {
    const a = new DenseOperator(A, n);
    const bad = [tf.ones([n + 1]), tf.ones([2, n - 1]), tf.ones([1, 2, n]), tf.ones([n], 'int32')];
    expect(() => expectNoLeak(() => a.apply(bad[0] as tf.Tensor))).toThrow(/shape \[13\].*expected \[12\] or \[K, 12\]/);
    expect(() => expectNoLeak(() => a.apply(bad[1] as tf.Tensor))).toThrow(/shape \[2, 11\]/);
    expect(() => expectNoLeak(() => a.apply(bad[2] as tf.Tensor))).toThrow(/shape \[1, 2, 12\]/);
    expect(() => expectNoLeak(() => a.apply(bad[3] as tf.Tensor))).toThrow(/int32.*float32/);
    tf.dispose(bad);
    const x = tf.ones([n]);
    x.dispose();
    expect(() => a.apply(x)).toThrow(/disposed/);
    expect(() => a.damp(-1)).toThrow(/damping must be a finite number ≥ 0/);
    expect(() => a.scale(NaN)).toThrow(/finite/);
    expect(() => a.add(new IdentityOperator(3))).toThrow(/different sizes/);
    expect(() => new IdentityOperator(10_000).toDense()).toThrow(/too large/);
    expect(() => new DenseOperator([1, 2, 3])).toThrow(/row-major/);
    expect(() => new DenseOperator([1, NaN, 0, 1])).toThrow(/entry \[0, 1\] is NaN/);
    a.dispose();
    expect(() => a.apply(tf.ones([n]))).toThrow(/after dispose/);
  });
});
