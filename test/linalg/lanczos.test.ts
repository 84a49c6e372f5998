/**
 * Lanczos against eigh on n = 300 matrices with a known spectrum, through a
 * matvec closure: top-k / bottom-k / both values, Ritz vectors vs eigenvectors,
 * true residuals ‖A x − θ x‖ (recomputed here by brute force), the convergence
 * flag, the non-convergence path and validation.
 *
 * Tolerances: with tol = 1e-10 the residuals are ≤ 1e-10‖A‖, so Ritz values are
 * within residual²/gap ≪ 1e-12‖A‖ of eigenvalues for the gaps used here.
 */
import { describe, expect, it } from 'vitest';
import { eigh, lanczos } from '../../src/linalg/index';
import { Rng } from '../../src/utils/random';
import { maxErrScaled, randomOrthogonal, withSpectrum } from './helpers';

const n = 300;
const rng = new Rng(77);
// Spectrum with well separated ends (geometric decay, like a GGN) and a bulk.
const lambda = Array.from({ length: n }, (_, i) => (i < 10 ? 100 * 0.7 ** i : i >= n - 5 ? -5 - (n - i) : rng.uniform()));
const A = withSpectrum(lambda, randomOrthogonal(n, 78, 12));
const ref = eigh(A, n);
let products = 0;
const matvec = (v: Float64Array): Float64Array => {
  products++;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += A[i * n + j]! * v[j]!;
    out[i] = s;
  }
  return out;
};

function checkPairs(values: Float64Array, vectors: Float64Array, residuals: Float64Array, idx: number[]): void {
  const scale = 100;
  expect(maxErrScaled(values, idx.map((i) => ref.values[i]!), scale)).toBeLessThan(1e-12);
  values.forEach((theta, r) => {
    const x = vectors.subarray(r * n, (r + 1) * n);
    const ax = matvec(x);
    let res = 0;
    let nrm = 0;
    for (let t = 0; t < n; t++) {
      res += (ax[t]! - theta * x[t]!) ** 2;
      nrm += x[t]! ** 2;
    }
    expect(Math.abs(nrm - 1)).toBeLessThan(1e-12);
    expect(Math.abs(Math.sqrt(res) - residuals[r]!)).toBeLessThan(1e-12 * scale);
    expect(residuals[r]!).toBeLessThan(1e-10 * scale);
    // |⟨x, v⟩| = 1 for the matching eigenvector of eigh.
    const j = idx[r]!;
    let dot = 0;
    for (let t = 0; t < n; t++) dot += x[t]! * ref.vectors![t * n + j]!;
    expect(Math.abs(Math.abs(dot) - 1)).toBeLessThan(1e-8);
  });
}

describe('lanczos on n = 300 with a matvec closure', () => {
  it('top-k matches eigh and converges well before n products', () => {
    products = 0;
    const res = lanczos(matvec, n, 5, { tol: 1e-10, seed: 1 });
    expect(res.converged).toBe(true);
    expect(res.iterations).toBeLessThan(n);
    expect(products).toBe(res.iterations + 5); // basis + one residual product per pair
    checkPairs(res.values, res.vectors, res.residuals, [n - 5, n - 4, n - 3, n - 2, n - 1]);
  });

  it('bottom-k and both ends', () => {
    const low = lanczos(matvec, n, 3, { which: 'smallest', tol: 1e-10 });
    expect(low.converged).toBe(true);
    checkPairs(low.values, low.vectors, low.residuals, [0, 1, 2]);
    const both = lanczos(matvec, n, 4, { which: 'both', tol: 1e-10, seed: 3 });
    expect(both.converged).toBe(true);
    checkPairs(both.values, both.vectors, both.residuals, [0, 1, n - 2, n - 1]);
  });

  it('reports non-convergence with honest residuals when maxIter is too small', () => {
    const res = lanczos(matvec, n, 5, { maxIter: 8, tol: 1e-12 });
    expect(res.iterations).toBe(8);
    expect(res.converged).toBe(false);
    expect(Math.max(...res.residuals)).toBeGreaterThan(1e-12 * 100);
  });

  it('small operators: k = n recovers the full spectrum (invariant-subspace restarts)', () => {
    // diag(1, 1, 2, 3): the Krylov space from one start vector misses a copy of 1.
    const d = [1, 1, 2, 3];
    const res = lanczos((v) => v.map((x, i) => d[i]! * x), 4, 4, { tol: 1e-12 });
    expect(Array.from(res.values).map((x) => Math.round(x * 1e10) / 1e10)).toEqual([1, 1, 2, 3]);
    expect(res.converged).toBe(true);
  });

  it('validation', () => {
    expect(() => lanczos(matvec, n, n + 1)).toThrow(/k = 301.*n = 300/);
    expect(() => lanczos(() => new Float64Array(3), n, 2)).toThrow(/returned length 3, expected n = 300/);
    expect(() => lanczos((v) => v.map(() => NaN), 4, 1)).toThrow(/non-finite/);
    expect(() => lanczos(matvec, n, 2, { which: 'middle' as 'both' })).toThrow(/which/);
    expect(lanczos(matvec, n, 0).values.length).toBe(0);
  });

  it('does not let matvec mutate its basis', () => {
    const res = lanczos((v) => {
      const out = matvec(v);
      v.fill(0); // a careless operator
      return out;
    }, n, 3, { tol: 1e-10 });
    expect(res.converged).toBe(true);
    expect(maxErrScaled(res.values, [ref.values[n - 3]!, ref.values[n - 2]!, ref.values[n - 1]!], 100)).toBeLessThan(1e-12);
  });
});

describe('lanczos with repeated top eigenvalues', () => {
  it('finds both copies of a double top eigenvalue (restart after the invariant subspace)', () => {
    // diag(3, 3, then 1, ½, ¼, ⅛ eight times each): a start vector spans only a
    // 5-dimensional invariant Krylov space with ONE direction of the 3-eigenspace.
    // The second copy appears only after the restart at step 5 (the first check).
    const m = 34;
    const d = Array.from({ length: m }, (_, i) => (i < 2 ? 3 : 2 ** -((i - 2) % 4)));
    const res = lanczos((v) => v.map((x, i) => d[i]! * x), m, 2, { tol: 1e-12 });
    expect(Array.from(res.values).map((x) => Math.round(x * 1e10) / 1e10)).toEqual([3, 3]);
    expect(res.converged).toBe(true);
  });
});
