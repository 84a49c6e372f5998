/**
 * tridiagonalInverseIteration against the float64 QL eigenvectors of
 * `tridiagonalEigen` (an independent algorithm): random tridiagonals, the
 * Wilkinson matrix W⁺₂₁ (pairs of eigenvalues equal to ~1e-14), a split
 * matrix with exactly repeated eigenvalues, and the trivial sizes.
 *
 * Tolerances: residuals ‖T x − λx‖ ≤ 1e-12·‖T‖ (a few n·ε); orthogonality
 * |xᵢᵀxⱼ| ≤ 1e-9 (vectors of eigenvalues ≥ 1e-6·‖T‖ apart are not
 * re-orthogonalised: ~ε‖T‖/gap); for eigenvalues ≥ 1e-3·‖T‖ from their
 * neighbours |cos∠(x, v)| ≥ 1 − 1e-12 (angle ≲ n·ε·‖T‖/gap); within a
 * cluster the vectors span the reference's subspace (projection of every
 * reference vector on the span ≥ 1 − 1e-10).
 */
import { describe, expect, it } from 'vitest';
import { tridiagonalEigen } from '../../src/linalg/index';
import { tridiagonalInverseIteration } from '../../src/linalg/inverseIteration';
import { Rng } from '../../src/utils/random';

function residual(d: Float64Array, e: Float64Array, x: Float64Array, k: number, j: number, lam: number): number {
  const n = d.length;
  let r = 0;
  for (let i = 0; i < n; i++) {
    let t = (d[i]! - lam) * x[i * k + j]!;
    if (i > 0) t += e[i - 1]! * x[(i - 1) * k + j]!;
    if (i < n - 1) t += e[i]! * x[(i + 1) * k + j]!;
    r += t * t;
  }
  return Math.sqrt(r);
}

function column(x: Float64Array, n: number, k: number, j: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => x[i * k + j]!);
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Checks selected vectors against tridiagonalEigen; returns nothing, asserts. */
function check(d: Float64Array, e: Float64Array, select: number[]): void {
  const n = d.length;
  const ref = tridiagonalEigen(d, e.subarray(0, n - 1));
  const norm = Math.max(...Array.from(d, (v, i) => Math.abs(v) + (i > 0 ? Math.abs(e[i - 1]!) : 0) + (i < n - 1 ? Math.abs(e[i]!) : 0)));
  const lambdas = select.map((j) => ref.values[j]!);
  const { vectors, residual: worst } = tridiagonalInverseIteration(d, e, n, lambdas);
  const k = select.length;
  expect(worst).toBeLessThan(1e-12);
  const cols = select.map((_, j) => column(vectors, n, k, j));
  select.forEach((idx, j) => {
    expect(residual(d, e, vectors, k, j, lambdas[j]!)).toBeLessThan(1e-12 * norm);
    for (let q = 0; q <= j; q++) expect(Math.abs(dot(cols[j]!, cols[q]!) - (q === j ? 1 : 0))).toBeLessThan(1e-9);
    const v = column(ref.vectors!, n, n, idx);
    let gap = Infinity;
    if (idx > 0) gap = Math.min(gap, ref.values[idx]! - ref.values[idx - 1]!);
    if (idx < n - 1) gap = Math.min(gap, ref.values[idx + 1]! - ref.values[idx]!);
    if (gap > 1e-3 * norm) {
      expect(Math.abs(dot(cols[j]!, v))).toBeGreaterThan(1 - 1e-12);
    } else {
      // Cluster: v lies in the span of the selected cluster vectors (all cluster members are selected here).
      const proj = cols.reduce((s, c) => s + dot(c, v) ** 2, 0);
      expect(proj).toBeGreaterThan(1 - 1e-10);
    }
  });
}

describe('tridiagonalInverseIteration', () => {
  it('random tridiagonals: top, bottom and middle eigenvectors', () => {
    for (const [n, seed] of [
      [50, 1],
      [300, 2],
    ] as const) {
      const rng = new Rng(seed);
      const d = Float64Array.from({ length: n }, () => rng.normal());
      const e = Float64Array.from({ length: n }, (_, i) => (i < n - 1 ? rng.normal() : 0));
      check(d, e, [0, 1, Math.floor(n / 2), n - 2, n - 1]);
    }
  });

  it('Wilkinson W⁺₂₁ (eigenvalue pairs closer than 1e-13): the pairs are spanned', () => {
    const n = 21;
    const d = Float64Array.from({ length: n }, (_, i) => Math.abs(10 - i));
    const e = Float64Array.from({ length: n }, (_, i) => (i < n - 1 ? 1 : 0));
    check(d, e, Array.from({ length: n }, (_, i) => i));
  });

  it('a spectrum decaying geometrically (all 100 vectors, gaps down to ~3e-6·‖T‖, not re-orthogonalised): orthonormal', () => {
    // Diagonal-dominant tridiagonal with eigenvalues ≈ 0.9^i: a GGN-like decay.
    const n = 100;
    const d = Float64Array.from({ length: n }, (_, i) => 0.9 ** i);
    const e = Float64Array.from({ length: n }, (_, i) => (i < n - 1 ? 1e-3 * 0.9 ** i : 0));
    check(d, e, Array.from({ length: n }, (_, i) => i));
  });

  it('a cluster of more than 32 selected vectors is left to the caller (residual Infinity)', () => {
    const n = 40;
    const d = new Float64Array(n).fill(1);
    const e = new Float64Array(n); // diagonal: one 40-fold eigenvalue
    expect(tridiagonalInverseIteration(d, e, n, new Array(40).fill(1)).residual).toBe(Infinity);
    expect(tridiagonalInverseIteration(d, e, n, new Array(32).fill(1)).residual).toBeLessThan(1e-12);
  });

  it('exactly repeated eigenvalues of a split matrix; n = 1; zero matrix', () => {
    // Two identical 3×3 blocks with e[2] = 0: every eigenvalue twice.
    const d = Float64Array.from([2, 1, 3, 2, 1, 3]);
    const e = Float64Array.from([0.5, 0.7, 0, 0.5, 0.7, 0]);
    check(d, e, [0, 1, 2, 3, 4, 5]);
    const one = tridiagonalInverseIteration(Float64Array.from([4]), Float64Array.from([0]), 1, [4]);
    expect(Array.from(one.vectors)).toEqual([1]);
    const zero = tridiagonalInverseIteration(new Float64Array(3), new Float64Array(3), 3, [0, 0]);
    expect(Array.from(zero.vectors)).toEqual([1, 0, 0, 1, 0, 0]);
    expect(tridiagonalInverseIteration(Float64Array.from([1, 2]), Float64Array.from([1, 0]), 2, []).vectors.length).toBe(0);
  });
});
