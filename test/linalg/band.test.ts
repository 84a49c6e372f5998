/**
 * Two-stage tridiagonalisation building blocks (float64 JS) against
 * independent references: the panel QR by its defining properties
 * (Q = I − V T Vᵀ orthogonal, built explicitly here from the reflectors;
 * Qᵀ P = [R; 0]), and dense → band → tridiagonal by eigenvalues of known
 * spectra (Q diag(λ) Qᵀ with Q built in the test).
 *
 * Tolerances: every step is orthogonal and backward stable in float64, so
 * errors are O(n ε ‖A‖); 1e-12 relative leaves ≥ 10× headroom.
 */
import { describe, expect, it } from 'vitest';
import { bandToTridiagonal, denseToBand, panelQR } from '../../src/linalg/band';
import { implicitQL } from '../../src/linalg/eigh';
import { Rng } from '../../src/utils/random';
import { maxAbs, maxErrScaled, mm, randomMatrix, randomOrthogonal, tr, withSpectrum } from './helpers';

/** Eigenvalues through dense → band (b) → tridiagonal → QL. */
function twoStageValues(a: Float64Array, n: number, b: number): Float64Array {
  const W = 2 * b;
  const band = new Float64Array(n * (W + 1));
  denseToBand(Float64Array.from(a), n, b, band, W);
  // The band really has bandwidth b.
  for (let i = 0; i < n; i++) for (let k = b + 1; k <= W; k++) expect(band[i * (W + 1) + k]).toBe(0);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  bandToTridiagonal(band, n, b, W, d, e);
  implicitQL(d, e, n);
  return d.sort();
}

describe('panelQR', () => {
  for (const [m, b] of [[40, 8], [8, 8], [5, 8], [1, 4]] as const) {
    it(`m = ${m}, b = ${b}: I − V T Vᵀ equals the product of the reflectors and Qᵀ P = [R; 0]`, () => {
      const P = randomMatrix(m, b, m * 10 + b);
      const Pt = tr(P, m, b);
      const { betas, T, R } = panelQR(Pt, m, b);
      const V = new Float64Array(m * b);
      for (let k = 0; k < Math.min(m, b); k++) for (let i = k; i < m; i++) V[i * b + k] = Pt[k * m + i]!;
      // Q1 = H_0 H_1 ⋯ (explicit products), Q2 = I − V T Vᵀ.
      let Q1: Float64Array = new Float64Array(m * m);
      for (let i = 0; i < m; i++) Q1[i * m + i] = 1;
      for (let k = 0; k < b; k++) {
        const H = new Float64Array(m * m);
        for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) H[i * m + j] = (i === j ? 1 : 0) - betas[k]! * V[i * b + k]! * V[j * b + k]!;
        Q1 = mm(Q1, H, m, m, m);
      }
      const VT = mm(V, T, m, b, b);
      const Q2 = mm(VT, tr(V, m, b), m, b, m);
      for (let i = 0; i < m; i++) Q2[i * m + i] = 1 - Q2[i * m + i]!;
      for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) if (i !== j) Q2[i * m + j] = -Q2[i * m + j]!;
      expect(maxErrScaled(Q1, Q2, 1)).toBeLessThan(1e-14);
      const QtQ = mm(tr(Q1, m, m), Q1, m, m, m);
      for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) expect(Math.abs(QtQ[i * m + j]! - (i === j ? 1 : 0))).toBeLessThan(1e-14);
      const QtP = mm(tr(Q1, m, m), P, m, m, b);
      const scale = maxAbs(P);
      for (let i = 0; i < m; i++) {
        for (let c = 0; c < b; c++) {
          const expected = i < b && c >= i ? R[i * b + c]! : 0;
          expect(Math.abs(QtP[i * b + c]! - expected) / scale).toBeLessThan(1e-14);
        }
      }
    });
  }
});

describe('dense → band → tridiagonal (float64)', () => {
  for (const [n, b] of [[60, 4], [97, 8], [130, 16], [40, 1], [20, 32]] as const) {
    it(`n = ${n}, b = ${b}: known spectrum reproduced`, () => {
      const rng = new Rng(n + b);
      const lambda = Array.from({ length: n }, () => rng.normal() * 3).sort((x, y) => x - y);
      const a = withSpectrum(lambda, randomOrthogonal(n, n + 2 * b, n));
      const values = twoStageValues(a, n, b);
      expect(maxErrScaled(values, lambda, maxAbs(lambda))).toBeLessThan(1e-12);
    });
  }

  it('repeated eigenvalues and a rank-deficient matrix', () => {
    const n = 70;
    const lambda = Array.from({ length: n }, (_, i) => (i < 40 ? 0 : i < 60 ? 2 : 7));
    const a = withSpectrum(lambda, randomOrthogonal(n, 3, n));
    expect(maxErrScaled(twoStageValues(a, n, 8), lambda, 7)).toBeLessThan(1e-12);
  });
});
