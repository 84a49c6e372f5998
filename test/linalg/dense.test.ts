/**
 * Dense helpers against brute-force loops; qr by its defining properties
 * (Q orthonormal, R upper triangular, QR = A), including rank deficiency.
 * Tolerance 1e-14 relative: Householder QR is backward stable (O(mn ε)).
 */
import { describe, expect, it } from 'vitest';
import { frobeniusNorm, identity, matmul, orthonormalize, qr, symmetrize, transpose } from '../../src/linalg/index';
import { fro, mm, randomMatrix, tr } from './helpers';

describe('dense helpers', () => {
  it('identity, transpose, matmul, symmetrize, frobeniusNorm', () => {
    expect(Array.from(identity(2))).toEqual([1, 0, 0, 1]);
    const a = randomMatrix(37, 45, 1);
    const b = randomMatrix(45, 29, 2);
    expect(Array.from(transpose(a, 37, 45))).toEqual(Array.from(tr(a, 37, 45)));
    const c = matmul(a, b, 37, 45, 29);
    const ref = mm(a, b, 37, 45, 29);
    for (let i = 0; i < c.length; i++) expect(Math.abs(c[i]! - ref[i]!)).toBeLessThan(1e-12);
    const s = randomMatrix(5, 5, 3);
    const sym = symmetrize(s, 5);
    for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) expect(sym[i * 5 + j]).toBe(0.5 * (s[i * 5 + j]! + s[j * 5 + i]!));
    expect(frobeniusNorm(a)).toBeCloseTo(fro(a), 12);
    expect(frobeniusNorm([3e300, 4e300])).toBeCloseTo(5e300, -290);
    expect(() => matmul([1, 2], [1], 1, 2, 1)).toThrow(/b has length 1.*2×1.*2/);
  });

  for (const [m, n] of [[1, 1], [10, 3], [50, 50], [80, 20]] as const) {
    it(`qr ${m}×${n}: QᵀQ = I, R upper, QR = A`, () => {
      const a = randomMatrix(m, n, m + n);
      const copy = Float64Array.from(a);
      const { q, r } = qr(a, m, n);
      expect(a).toEqual(copy);
      const QtQ = mm(tr(q, m, n), q, n, m, n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(Math.abs(QtQ[i * n + j]! - (i === j ? 1 : 0))).toBeLessThan(1e-14);
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(r[i * n + j]).toBe(0);
      const QR = mm(q, r, m, n, n);
      let s = 0;
      for (let i = 0; i < m * n; i++) s += (QR[i]! - a[i]!) ** 2;
      expect(Math.sqrt(s) / fro(a)).toBeLessThan(1e-14);
    });
  }

  it('qr of a rank-deficient matrix still has orthonormal Q and QR = A', () => {
    const m = 30;
    const n = 6;
    const a = randomMatrix(m, n, 9);
    for (let i = 0; i < m; i++) {
      a[i * n + 3] = 2 * a[i * n + 1]!; // dependent column
      a[i * n + 5] = 0; // zero column
    }
    const { q, r } = qr(a, m, n);
    const QtQ = mm(tr(q, m, n), q, n, m, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(Math.abs(QtQ[i * n + j]! - (i === j ? 1 : 0))).toBeLessThan(1e-14);
    const QR = mm(q, r, m, n, n);
    for (let i = 0; i < m * n; i++) expect(Math.abs(QR[i]! - a[i]!)).toBeLessThan(1e-13);
    expect(orthonormalize(a, m, n)).toEqual(q);
    expect(() => qr(a, 3, 60)).toThrow(/m ≥ n/);
  });
});
