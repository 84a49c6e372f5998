/**
 * eigh / eigvalsh / tridiagonalEigen against independent references:
 * reconstruction ‖A − VΛVᵀ‖/‖A‖ and orthogonality ‖VᵀV − I‖ by brute-force
 * products, matrices with KNOWN spectra Q diag(λ) Qᵀ (Q an explicit product of
 * Householder reflectors built in the test), analytic spectra, and Gram
 * matrices with a known singular spectrum.
 *
 * Tolerances: the algorithm is backward stable in float64, so residuals are
 * O(n·ε·‖A‖) with ε = 2.2e-16; 1e-13 (n ≤ 200) and 1e-12 (n = 1024) leave
 * ~10–50× headroom over the measured values yet catch any real bug (a wrong
 * reflector or rotation gives O(1) errors). Known spectra: the test matrix
 * itself carries O(n·ε‖A‖) rounding from forming Q diag(λ) Qᵀ, so eigenvalues
 * are compared to 1e-12·‖A‖.
 */
import { describe, expect, it } from 'vitest';
import { tridiagonalEigenComponents } from '../../src/linalg/eigh';
import { eigh, eigvalsh, qr, tridiagonalEigen } from '../../src/linalg/index';
import { Rng } from '../../src/utils/random';
import { eigenErrors, maxAbs, maxErrScaled, mm, randomMatrix, randomOrthogonal, randomSymmetric, tr, withSpectrum } from './helpers';

describe('eigh on random symmetric matrices', () => {
  for (const n of [1, 2, 5, 50, 200]) {
    it(`n = ${n}: reconstruction and orthogonality`, () => {
      const a = randomSymmetric(n, 100 + n);
      const copy = Float64Array.from(a);
      const { values, vectors } = eigh(a, n);
      expect(a).toEqual(copy); // not mutated
      expect(values.length).toBe(n);
      expect(vectors!.length).toBe(n * n);
      for (let i = 1; i < n; i++) expect(values[i]!).toBeGreaterThanOrEqual(values[i - 1]!);
      const { reconstruction, orthogonality } = eigenErrors(a, n, values, vectors!);
      expect(reconstruction).toBeLessThan(1e-13);
      expect(orthogonality).toBeLessThan(1e-13);
      // Values-only path gives the same eigenvalues.
      const v = eigvalsh(a, n);
      expect(maxErrScaled(v, values, Math.max(1, maxAbs(values)))).toBeLessThan(1e-14);
    });
  }

  it('n = 1024: reconstruction and orthogonality (a few seconds)', () => {
    const n = 1024;
    const a = randomSymmetric(n, 7);
    const { values, vectors } = eigh(a, n);
    const { reconstruction, orthogonality } = eigenErrors(a, n, values, vectors!);
    expect(reconstruction).toBeLessThan(1e-12);
    expect(orthogonality).toBeLessThan(1e-12);
  });

  it('n = 2 matches the closed form', () => {
    // [[a, b], [b, c]]: (a+c)/2 ± sqrt(((a−c)/2)² + b²)
    const [p, q, r] = [0.3, -1.7, 2.2];
    const { values, vectors } = eigh([p, q, q, r], 2);
    const m = (p + r) / 2;
    const h = Math.hypot((p - r) / 2, q);
    expect(values[0]).toBeCloseTo(m - h, 14);
    expect(values[1]).toBeCloseTo(m + h, 14);
    // A v = λ v for each column.
    for (let j = 0; j < 2; j++) {
      const v0 = vectors![j]!;
      const v1 = vectors![2 + j]!;
      expect(p * v0 + q * v1 - values[j]! * v0).toBeCloseTo(0, 14);
      expect(q * v0 + r * v1 - values[j]! * v1).toBeCloseTo(0, 14);
    }
  });
});

describe('eigh on matrices with known spectra', () => {
  for (const n of [5, 50, 200]) {
    it(`n = ${n}: eigenvalues reproduced to 1e-12 relative`, () => {
      const rng = new Rng(n);
      const lambda = Array.from({ length: n }, () => 10 * rng.normal()).sort((x, y) => x - y);
      const Q = randomOrthogonal(n, 3 * n, n);
      const a = withSpectrum(lambda, Q);
      const { values, vectors } = eigh(a, n);
      const scale = maxAbs(lambda);
      expect(maxErrScaled(values, lambda, scale)).toBeLessThan(1e-12);
      expect(maxErrScaled(eigvalsh(a, n), lambda, scale)).toBeLessThan(1e-12);
      // Eigenvectors of well-separated eigenvalues equal Q's columns up to sign.
      let gap = Infinity;
      for (let i = 1; i < n; i++) gap = Math.min(gap, lambda[i]! - lambda[i - 1]!);
      if (gap > 1e-3 * scale) {
        for (let j = 0; j < n; j++) {
          let dot = 0;
          for (let i = 0; i < n; i++) dot += vectors![i * n + j]! * Q[i * n + j]!;
          expect(Math.abs(Math.abs(dot) - 1)).toBeLessThan(1e-9);
        }
      }
    });
  }

  it('repeated eigenvalues: values exact, eigenvectors orthonormal and spanning', () => {
    const n = 40;
    const lambda = Array.from({ length: n }, (_, i) => (i < 15 ? -2 : i < 30 ? 1 : i < 39 ? 5 : 9));
    const a = withSpectrum(lambda, randomOrthogonal(n, 5, n));
    const { values, vectors } = eigh(a, n);
    expect(maxErrScaled(values, lambda, 9)).toBeLessThan(1e-13);
    const { reconstruction, orthogonality } = eigenErrors(a, n, values, vectors!);
    expect(reconstruction).toBeLessThan(1e-13);
    expect(orthogonality).toBeLessThan(1e-13);
  });

  it('identity, zero and diagonal matrices', () => {
    const n = 6;
    const I = new Float64Array(n * n);
    for (let i = 0; i < n; i++) I[i * n + i] = 1;
    const ei = eigh(I, n);
    expect(Array.from(ei.values)).toEqual(new Array(n).fill(1));
    expect(eigenErrors(I, n, ei.values, ei.vectors!).orthogonality).toBeLessThan(1e-15);
    const Z = new Float64Array(n * n);
    const ez = eigh(Z, n);
    expect(Array.from(ez.values)).toEqual(new Array(n).fill(0));
    expect(eigenErrors(Z, n, ez.values, ez.vectors!).orthogonality).toBe(0);
    const D = new Float64Array(n * n);
    const diag = [3, -1, 0, 7, -1, 2];
    diag.forEach((x, i) => (D[i * n + i] = x));
    const ed = eigh(D, n);
    expect(Array.from(ed.values)).toEqual([...diag].sort((x, y) => x - y));
    expect(eigenErrors(D, n, ed.values, ed.vectors!).reconstruction).toBeLessThan(1e-15);
  });

  it('rank-deficient PSD Gram matrices BᵀB with known singular values', () => {
    // B = U diag(σ) Vᵀ (r×n, r < n) ⇒ BᵀB = V diag(σ²) Vᵀ with n − r zero eigenvalues.
    const n = 60;
    const r = 12;
    const sigma = Array.from({ length: r }, (_, i) => 0.5 + i);
    const U = randomOrthogonal(r, 11, r);
    const V = randomOrthogonal(n, 12, n);
    const B = new Float64Array(r * n); // B[i, :] = Σ_k U[i,k] σ_k V[:, k]ᵀ
    for (let i = 0; i < r; i++) for (let k = 0; k < r; k++) for (let j = 0; j < n; j++) B[i * n + j] += U[i * r + k]! * sigma[k]! * V[j * n + k]!;
    const G = mm(tr(B, r, n), B, n, r, n);
    const { values, vectors } = eigh(G, n);
    const expected = [...new Array(n - r).fill(0), ...sigma.map((s) => s * s)];
    const scale = maxAbs(expected);
    expect(maxErrScaled(values, expected, scale)).toBeLessThan(1e-12);
    const { reconstruction, orthogonality } = eigenErrors(G, n, values, vectors!);
    expect(reconstruction).toBeLessThan(1e-13);
    expect(orthogonality).toBeLessThan(1e-13);
  });

  it('huge and tiny scales neither overflow nor underflow', () => {
    const n = 30;
    const base = randomSymmetric(n, 21);
    const ref = eigvalsh(base, n);
    for (const s of [1e300, 1e-300, 2 ** 900, 1e-310]) {
      const a = base.map((x) => x * s);
      const { values, vectors } = eigh(a, n);
      for (const v of values) expect(Number.isFinite(v)).toBe(true);
      // Subnormal inputs (1e-310) keep only ~14 significant bits.
      const tol = s < 1e-300 ? 1e-3 : 1e-13;
      expect(maxErrScaled(values.map((x) => x / s), ref, maxAbs(ref))).toBeLessThan(tol);
      expect(eigenErrors(base, n, ref, vectors!).orthogonality).toBeLessThan(s < 1e-300 ? 1e-3 : 1e-13);
    }
  });

  it('uses the symmetric part (A + Aᵀ)/2 of a non-symmetric input', () => {
    const n = 20;
    const a = randomMatrix(n, n, 31);
    const sym = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sym[i * n + j] = 0.5 * (a[i * n + j]! + a[j * n + i]!);
    const e1 = eigh(a, n);
    const e2 = eigh(sym, n);
    expect(maxErrScaled(e1.values, e2.values, maxAbs(e2.values))).toBeLessThan(1e-14);
    expect(eigenErrors(sym, n, e1.values, e1.vectors!).reconstruction).toBeLessThan(1e-13);
  });

  it('accepts plain arrays and Float32Arrays; n = 0 gives empty results', () => {
    const a = [2, 1, 1, 2];
    expect(Array.from(eigvalsh(a, 2))).toEqual([1, 3].map((x) => expect.closeTo(x, 14)));
    expect(Array.from(eigvalsh(new Float32Array(a), 2))).toEqual([1, 3].map((x) => expect.closeTo(x, 14)));
    const e0 = eigh([], 0);
    expect(e0.values.length).toBe(0);
    expect(e0.vectors!.length).toBe(0);
    expect(eigh([4], 1, { vectors: false })).toEqual({ values: new Float64Array([4]) });
  });
});

describe('eigh input validation', () => {
  it('wrong length names both sizes', () => {
    expect(() => eigh(new Float64Array(8), 3)).toThrow(/length 8.*3×3.*9/);
    expect(() => eigvalsh([1, 2, 3], 2)).toThrow(/length 3.*2×2.*4/);
  });
  it('NaN / Inf are rejected with their position', () => {
    expect(() => eigh([1, NaN, NaN, 1], 2)).toThrow(/a\[0, 1\] is NaN/);
    expect(() => eigvalsh([1, 0, 0, Infinity], 2)).toThrow(/a\[1, 1\] is Infinity/);
  });
  it('bad n', () => {
    expect(() => eigh([], -1)).toThrow(/non-negative integer/);
    expect(() => eigh([1, 2, 3, 4], 1.5)).toThrow(/non-negative integer/);
  });
});

describe('tridiagonalEigen', () => {
  it('matches the analytic spectrum of tridiag(−1, 2, −1)', () => {
    const n = 100;
    const { values, vectors } = tridiagonalEigen(new Array(n).fill(2), new Array(n - 1).fill(-1));
    const expected = Array.from({ length: n }, (_, k) => 2 - 2 * Math.cos(((k + 1) * Math.PI) / (n + 1)));
    expect(maxErrScaled(values, expected, 4)).toBeLessThan(1e-14);
    // Eigenvector k is sin(j (k+1) π/(n+1)) up to normalisation and sign.
    for (const k of [0, 1, 50, 99]) {
      let dot = 0;
      let nrm = 0;
      for (let j = 0; j < n; j++) {
        const s = Math.sin(((j + 1) * (k + 1) * Math.PI) / (n + 1));
        dot += s * vectors![j * n + k]!;
        nrm += s * s;
      }
      expect(Math.abs(Math.abs(dot) / Math.sqrt(nrm) - 1)).toBeLessThan(1e-12);
    }
  });

  it('agrees with eigh on the dense tridiagonal matrix (values and vectors)', () => {
    const n = 80;
    const rng = new Rng(4);
    const d = Array.from({ length: n }, () => rng.normal());
    const e = Array.from({ length: n - 1 }, () => rng.normal());
    e[30] = 0; // a split block
    const T = new Float64Array(n * n);
    for (let i = 0; i < n; i++) T[i * n + i] = d[i]!;
    for (let i = 0; i + 1 < n; i++) {
      T[i * n + i + 1] = e[i]!;
      T[(i + 1) * n + i] = e[i]!;
    }
    const dCopy = [...d];
    const res = tridiagonalEigen(d, e);
    expect(d).toEqual(dCopy);
    const ref = eigh(T, n);
    expect(maxErrScaled(res.values, ref.values, maxAbs(ref.values))).toBeLessThan(1e-13);
    const { reconstruction, orthogonality } = eigenErrors(T, n, res.values, res.vectors!);
    expect(reconstruction).toBeLessThan(1e-14);
    expect(orthogonality).toBeLessThan(1e-14);
    expect(tridiagonalEigen(d, e, { vectors: false }).vectors).toBeUndefined();
  });

  it('tridiagonalEigenComponents returns the requested rows of the eigenvector matrix', () => {
    const n = 60;
    const rng = new Rng(8);
    const d = Array.from({ length: n }, () => rng.normal());
    const e = Array.from({ length: n - 1 }, () => rng.normal());
    const full = tridiagonalEigen(d, e);
    const rows = [n - 1, 0, 17];
    const { values, components } = tridiagonalEigenComponents(d, e, rows);
    expect(maxErrScaled(values, full.values, maxAbs(full.values))).toBeLessThan(1e-14);
    rows.forEach((row, r) => {
      for (let j = 0; j < n; j++) expect(Math.abs(components[r * n + j]! - full.vectors![row * n + j]!)).toBeLessThan(1e-13);
    });
  });

  it('edge cases and validation', () => {
    expect(tridiagonalEigen([], []).values.length).toBe(0);
    expect(Array.from(tridiagonalEigen([5], []).values)).toEqual([5]);
    expect(() => tridiagonalEigen([1, 2, 3], [1])).toThrow(/offDiag has length 1/);
    expect(() => tridiagonalEigen([1, NaN], [1])).toThrow(/diag\[1\] is NaN/);
  });
});

describe('eigh: reflectors of tiny columns (regression)', () => {
  // A sub-column of norm ~1e-162 once made β = 1/(‖x‖(‖x‖+|x0|)) overflow to
  // Infinity and the reduction produce NaN ("no convergence" in QL). Real
  // curvature factors hit this (Kronecker factors of MNIST inputs with dead
  // pixels). Entries 3e-162 squared are subnormal but non-zero.
  it('stays finite and exact on matrices with a ~1e-161 sub-column', () => {
    const n = 6;
    for (const t of [5e-162, 1e-161, 3e-161, 1e-160]) {
      const a = new Float64Array(n * n);
      for (let i = 0; i < n; i++) a[i * n + i] = (i + 1) / n;
      [1, -0.7, 1.2, 0.4, 0.9].forEach((f, j) => {
        a[(n - 1) * n + j] = f * t;
        a[j * n + (n - 1)] = f * t;
      });
      const { values, vectors } = eigh(a, n);
      // Off-diagonal entries ~1e-161 move eigenvalues by ~1e-322: the diagonal is the spectrum.
      Array.from(values).forEach((v, i) => expect(Math.abs(v - (i + 1) / n)).toBeLessThan(1e-14));
      expect(Array.from(vectors as Float64Array).every(Number.isFinite)).toBe(true);
      expect(Array.from(qr(a, n, n).q).every(Number.isFinite)).toBe(true);
    }
  });
});
