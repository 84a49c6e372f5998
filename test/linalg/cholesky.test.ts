/**
 * cholesky / choleskySolve / solveSPD against explicit products: L Lᵀ = A
 * (brute force), A X = B for the returned X, the non-PD error, validation and
 * no mutation. Tolerance: Cholesky is backward stable, ‖LLᵀ − A‖ = O(n ε ‖A‖);
 * the solves are checked by the residual ‖A X − B‖/(‖A‖‖X‖) = O(n ε), so 1e-13
 * has ample headroom for these well-conditioned SPD matrices.
 */
import { describe, expect, it } from 'vitest';
import { cholesky, choleskySolve, solveSPD } from '../../src/linalg/index';
import { fro, mm, randomMatrix, tr } from './helpers';

/** Random SPD: BᵀB + n I. */
function randomSPD(n: number, seed: number): Float64Array {
  const B = randomMatrix(n, n, seed);
  const A = mm(tr(B, n, n), B, n, n, n);
  for (let i = 0; i < n; i++) A[i * n + i] += n;
  return A;
}

function relResidual(A: Float64Array, X: Float64Array, B: Float64Array, n: number, nrhs: number): number {
  const AX = mm(A, X, n, n, nrhs);
  let s = 0;
  for (let i = 0; i < AX.length; i++) s += (AX[i]! - B[i]!) ** 2;
  return Math.sqrt(s) / (fro(A) * fro(X));
}

describe('cholesky', () => {
  for (const n of [1, 2, 7, 100]) {
    it(`n = ${n}: L is lower triangular with positive diagonal and L Lᵀ = A`, () => {
      const A = randomSPD(n, n);
      const copy = Float64Array.from(A);
      const L = cholesky(A, n);
      expect(A).toEqual(copy);
      for (let i = 0; i < n; i++) {
        expect(L[i * n + i]!).toBeGreaterThan(0);
        for (let j = i + 1; j < n; j++) expect(L[i * n + j]).toBe(0);
      }
      const R = mm(L, tr(L, n, n), n, n, n);
      let s = 0;
      for (let i = 0; i < n * n; i++) s += (R[i]! - A[i]!) ** 2;
      expect(Math.sqrt(s) / fro(A)).toBeLessThan(1e-14);
    });
  }

  it('throws for an indefinite matrix, naming the pivot and suggesting damping', () => {
    const A = [4, 2, 0, 2, 1, 0, 0, 0, 3]; // second pivot 1 − 2²/4 = 0
    expect(() => cholesky(A, 3)).toThrow(/pivot 1 .*damping/);
    expect(() => cholesky([1, 0, 0, -2], 2)).toThrow(/not positive definite.*pivot 1 .*-2/);
    expect(() => solveSPD([-1], 1, [1])).toThrow(/pivot 0/);
  });

  it('validates lengths and finiteness', () => {
    expect(() => cholesky([1, 2, 3], 2)).toThrow(/length 3.*2×2.*4/);
    expect(() => cholesky([1, NaN, NaN, 1], 2)).toThrow(/NaN/);
  });
});

describe('choleskySolve and solveSPD', () => {
  it('single and multiple right-hand sides satisfy A X = B', () => {
    const n = 60;
    const A = randomSPD(n, 5);
    for (const nrhs of [1, 4]) {
      const B = randomMatrix(n, nrhs, 6 + nrhs);
      const Bcopy = Float64Array.from(B);
      const X = solveSPD(A, n, B, nrhs);
      expect(B).toEqual(Bcopy);
      expect(X.length).toBe(n * nrhs);
      expect(relResidual(A, X, B, n, nrhs)).toBeLessThan(1e-14);
      const L = cholesky(A, n);
      const Lcopy = Float64Array.from(L);
      const X2 = choleskySolve(L, n, B, nrhs);
      expect(L).toEqual(Lcopy);
      expect(Array.from(X2)).toEqual(Array.from(X));
    }
  });

  it('recovers a known solution', () => {
    const n = 30;
    const A = randomSPD(n, 8);
    const x = randomMatrix(n, 1, 9);
    const b = mm(A, x, n, n, 1);
    const got = solveSPD(A, n, b);
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(got[i]! - x[i]!));
    expect(err).toBeLessThan(1e-12);
  });

  it('validation: lengths, zero diagonal of L, n = 0', () => {
    expect(() => choleskySolve([1, 0, 0, 1], 2, [1, 2, 3])).toThrow(/b has length 3.*2×1.*2/);
    expect(() => choleskySolve([1, 0, 0, 0], 2, [1, 2])).toThrow(/L\[1, 1\] is 0/);
    expect(() => solveSPD([1, 0, 0, 1], 2, [1, 2, 3, 4], 3)).toThrow(/b has length 4.*2×3.*6/);
    expect(solveSPD([], 0, [], 1).length).toBe(0);
  });
});
