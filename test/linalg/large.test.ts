/**
 * eigvalshLarge (two-stage: TF.js float32 dense → band, float64 band →
 * tridiagonal → QL) against known spectra Q diag(λ) Qᵀ (Q built in the test)
 * and the float64 eigvalsh, on the wasm backend (test/setup.ts) and on cpu
 * (the tf.slice route instead of the wasm heap view). No tensor may leak.
 *
 * Tolerance: stage 1 runs in float32 (ε₃₂ = 6e-8); orthogonal transformations
 * keep the absolute eigenvalue error at a small multiple of ε₃₂·‖A‖ — we
 * measure ~1e-7·‖A‖ for n = 400–1280 and document ≈1e-6·‖A‖, so 2e-6·‖A‖ is
 * the bound tested (a wrong reflector gives errors of order ‖A‖).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { eigh, eighLarge, eighLargeSync, eigvalsh, eigvalshLarge, eigvalshLargeSync, tridiagonalEigen } from '../../src/linalg/index';
import { tridiagonalVectorsByRotations } from '../../src/linalg/large';
import { Rng } from '../../src/utils/random';
import { maxAbs, maxErrScaled, mm, randomMatrix, randomOrthogonal, tr, withSpectrum } from './helpers';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const TOL = 2e-6;

expectNoLeaksPerTest();

function knownSpectrum(n: number, seed: number): { a: Float64Array; lambda: number[] } {
  const rng = new Rng(seed);
  // Geometric decay plus noise, like a GGN/Gram spectrum, with both signs.
  const lambda = Array.from({ length: n }, (_, i) => 50 * 0.97 ** i * (rng.uniform() < 0.2 ? -1 : 1) + 0.1 * rng.normal()).sort((x, y) => x - y);
  return { a: withSpectrum(lambda, randomOrthogonal(n, seed + 1, 6)), lambda };
}

describe('eigvalshLarge on the two-stage route', () => {
  it('n = 450: reproduces a known spectrum to 2e-6·‖A‖ (Float64Array, Float32Array and tensor input)', async () => {
    const n = 450;
    const { a, lambda } = knownSpectrum(n, 3);
    const scale = maxAbs(lambda);
    const copy = Float64Array.from(a);
    const v64 = await eigvalshLarge(a, n);
    expect(a).toEqual(copy);
    expect(v64.length).toBe(n);
    for (let i = 1; i < n; i++) expect(v64[i]!).toBeGreaterThanOrEqual(v64[i - 1]!);
    const err = maxErrScaled(v64, lambda, scale);
    expect(err).toBeLessThan(TOL);
    expect(err).toBeGreaterThan(0); // really the float32 route, not float64 eigvalsh
    const a32 = new Float32Array(a);
    expect(maxErrScaled(eigvalshLargeSync(a32, n), lambda, scale)).toBeLessThan(TOL);
    const t = tf.tensor2d(a32, [n, n]);
    expect(maxErrScaled(eigvalshLargeSync(t, n), lambda, scale)).toBeLessThan(TOL);
    expect(t.isDisposed).toBe(false);
    t.dispose();
  });

  it('bandwidths 8 and 32, and a size that is not a multiple of b', () => {
    const n = 401;
    const { a, lambda } = knownSpectrum(n, 5);
    for (const bandwidth of [8, 32]) {
      expect(maxErrScaled(eigvalshLargeSync(a, n, { bandwidth }), lambda, maxAbs(lambda))).toBeLessThan(TOL);
    }
  });

  it('rank-deficient Gram matrix: zero eigenvalues stay within 2e-6·‖A‖ of 0', () => {
    const n = 420;
    const r = 60;
    const B = randomMatrix(r, n, 9);
    const G = mm(tr(B, r, n), B, n, r, n);
    const ref = eigvalsh(G, n);
    const got = eigvalshLargeSync(G, n);
    const scale = maxAbs(ref);
    expect(maxErrScaled(got, ref, scale)).toBeLessThan(TOL);
    for (let i = 0; i < n - r; i++) expect(Math.abs(got[i]!)).toBeLessThan(TOL * scale);
  });

  it('huge scale and non-symmetric input (symmetric part)', () => {
    const n = 400;
    const { a, lambda } = knownSpectrum(n, 11);
    const big = a.map((x) => x * 1e200);
    expect(maxErrScaled(eigvalshLargeSync(big, n).map((x) => x / 1e200), lambda, maxAbs(lambda))).toBeLessThan(TOL);
    // Add an antisymmetric part K − Kᵀ: the symmetric part is unchanged.
    const K = randomMatrix(n, n, 12);
    const ns = a.map((x, idx) => x + K[idx]! - K[(idx % n) * n + Math.floor(idx / n)]!);
    expect(maxErrScaled(eigvalshLargeSync(ns, n), lambda, maxAbs(lambda))).toBeLessThan(TOL);
  });
});

describe('eighLarge: selected eigenvectors on the two-stage route', () => {
  it('n = 450: top, bottom and middle eigenvectors match eigh; residuals ≈ ε₃₂·‖A‖', async () => {
    // Vectors: the angle to the float64 eigenvector is ≲ residual/gap, and the
    // spectrum's gaps near the selected values are ≥ 0.05·‖A‖ … 1e-3·‖A‖.
    const n = 450;
    const { a, lambda } = knownSpectrum(n, 19);
    const ref = eigh(a, n);
    const scale = maxAbs(lambda);
    const select = [0, 1, 2, 225, n - 3, n - 2, n - 1];
    const res = await eighLarge(a, n, { select: [n - 1, 0, 225, n - 2, 1, n - 3, 2, 0] });
    expect(Array.from(res.indices)).toEqual(select);
    expect(maxErrScaled(res.values, lambda, scale)).toBeLessThan(TOL);
    const k = select.length;
    expect(res.vectors.length).toBe(n * k);
    for (let j = 0; j < k; j++) {
      const idx = select[j]!;
      let gap = Infinity;
      if (idx > 0) gap = Math.min(gap, lambda[idx]! - lambda[idx - 1]!);
      if (idx < n - 1) gap = Math.min(gap, lambda[idx + 1]! - lambda[idx]!);
      let dot = 0;
      let resid = 0;
      for (let r = 0; r < n; r++) dot += res.vectors[r * k + j]! * ref.vectors![r * n + idx]!;
      for (let r = 0; r < n; r++) {
        let s = 0;
        for (let q = 0; q < n; q++) s += a[r * n + q]! * res.vectors[q * k + j]!;
        resid += (s - res.values[idx]! * res.vectors[r * k + j]!) ** 2;
      }
      expect(Math.sqrt(resid)).toBeLessThan(TOL * scale);
      expect(1 - Math.abs(dot)).toBeLessThan(((10 * TOL * scale) / gap) ** 2 + 1e-12);
      for (let q = 0; q < j; q++) {
        let o = 0;
        for (let r = 0; r < n; r++) o += res.vectors[r * k + j]! * res.vectors[r * k + q]!;
        expect(Math.abs(o)).toBeLessThan(1e-6);
      }
    }
  });

  it('repeated eigenvalues: the selected vectors of a cluster stay orthonormal and span it', () => {
    const n = 400;
    const lambda = Array.from({ length: n }, (_, i) => (i >= n - 6 ? 10 : i < 200 ? 0 : 1 + i / n));
    const a = withSpectrum(lambda, randomOrthogonal(n, 23, 6));
    const select = (values: Float64Array): number[] => Array.from({ length: 6 }, (_, i) => values.length - 1 - i);
    const res = eighLargeSync(a, n, { select });
    const k = 6;
    for (let j = 0; j < k; j++) {
      for (let q = 0; q <= j; q++) {
        let o = 0;
        for (let r = 0; r < n; r++) o += res.vectors[r * k + j]! * res.vectors[r * k + q]!;
        expect(Math.abs(o - (j === q ? 1 : 0))).toBeLessThan(1e-6);
      }
      // A u = 10 u
      let resid = 0;
      for (let r = 0; r < n; r++) {
        let s = 0;
        for (let q = 0; q < n; q++) s += a[r * n + q]! * res.vectors[q * k + j]!;
        resid += (s - 10 * res.vectors[r * k + j]!) ** 2;
      }
      expect(Math.sqrt(resid)).toBeLessThan(TOL * 10);
    }
  });

  it('a selected cluster too large for inverse iteration (40-fold eigenvalue) falls back to the QL rotations', () => {
    const n = 330;
    const lambda = Array.from({ length: n }, (_, i) => (i >= n - 40 ? 5 : i / n));
    const a = withSpectrum(lambda, randomOrthogonal(n, 43, 6));
    const k = 40;
    const res = eighLargeSync(a, n, { method: 'twoStage', select: Array.from({ length: k }, (_, i) => n - 1 - i) });
    for (let j = 0; j < k; j += 7) {
      for (let q = 0; q <= j; q++) {
        let o = 0;
        for (let r = 0; r < n; r++) o += res.vectors[r * k + j]! * res.vectors[r * k + q]!;
        expect(Math.abs(o - (j === q ? 1 : 0))).toBeLessThan(1e-6);
      }
      let resid = 0;
      for (let r = 0; r < n; r++) {
        let s = 0;
        for (let q = 0; q < n; q++) s += a[r * n + q]! * res.vectors[q * k + j]!;
        resid += (s - 5 * res.vectors[r * k + j]!) ** 2;
      }
      expect(Math.sqrt(resid)).toBeLessThan(TOL * 5);
    }
  });

  it('the rotation-replay fallback gives the tridiagonal eigenvectors (against tridiagonalEigen)', () => {
    const n = 60;
    const rng = new Rng(41);
    const d = Float64Array.from({ length: n }, () => rng.normal());
    const e = Float64Array.from({ length: n }, (_, i) => (i < n - 1 ? rng.normal() : 0));
    const ref = tridiagonalEigen(d, e.subarray(0, n - 1));
    const select = [0, 17, n - 1];
    const X = tridiagonalVectorsByRotations(d, e, n, select);
    select.forEach((idx, j) => {
      let dot = 0;
      for (let r = 0; r < n; r++) dot += X[r * 3 + j]! * ref.vectors![r * n + idx]!;
      // Same QL rotations as tridiagonalEigen: equal up to sign to rounding.
      expect(1 - Math.abs(dot)).toBeLessThan(1e-12);
    });
  });

  it('float64 route below the threshold equals eigh; validation of select', () => {
    const n = 50;
    const { a } = knownSpectrum(n, 29);
    const ref = eigh(a, n);
    const res = eighLargeSync(a, n, { select: [3, 49] });
    expect(res.values).toEqual(ref.values);
    for (let r = 0; r < n; r++) {
      expect(res.vectors[r * 2]).toBe(ref.vectors![r * n + 3]);
      expect(res.vectors[r * 2 + 1]).toBe(ref.vectors![r * n + 49]);
    }
    expect(eighLargeSync(a, n).indices.length).toBe(n);
    expect(() => eighLargeSync(a, n, { select: [50] })).toThrow(/select contains 50.*\[0, 50\)/);
    expect(() => eighLargeSync(new Float64Array(400 * 400), 400, { select: [1.5] })).toThrow(/select contains 1.5/);
  });
});

describe('eigvalshLarge routing and validation', () => {
  it("'auto' below the threshold and 'float64' are exactly eigvalsh", () => {
    const n = 100;
    const { a } = knownSpectrum(n, 13);
    expect(eigvalshLargeSync(a, n)).toEqual(eigvalsh(a, n));
    const m = 400;
    const big = knownSpectrum(m, 14).a;
    expect(eigvalshLargeSync(big, m, { method: 'float64' })).toEqual(eigvalsh(big, m));
    expect(eigvalshLargeSync(new Float64Array(m * m), m)).toEqual(new Float64Array(m));
  });

  it('clear errors, no leaks on error paths', () => {
    const t = tf.zeros([3, 4]) as tf.Tensor2D;
    expect(() => eigvalshLargeSync(t, 3)).toThrow(/shape \[3, 4\], expected \[3, 3\]/);
    t.dispose();
    expect(() => eigvalshLargeSync(new Float32Array(10), 3)).toThrow(/length 10.*3×3.*9/);
    expect(() => eigvalshLargeSync(new Float32Array([1, NaN, NaN, 1]), 2)).toThrow(/NaN/);
    expect(() => eigvalshLargeSync(new Float32Array(4), 2, { bandwidth: 0 })).toThrow(/bandwidth/);
    expect(() => eigvalshLargeSync(new Float32Array(4), 2, { method: 'fast' as 'auto' })).toThrow(/method/);
  });
});

describe('eigvalshLarge on the cpu backend (tf.slice route)', () => {
  let previous = '';
  afterAll(async () => {
    await tf.setBackend(previous);
  });
  it("'twoStage' still matches the known spectrum; 'auto' falls back to float64", async () => {
    previous = tf.getBackend();
    await tf.setBackend('cpu');
    const n = 400;
    const { a, lambda } = knownSpectrum(n, 17);
    const start = tf.memory().numTensors;
    expect(maxErrScaled(eigvalshLargeSync(a, n, { method: 'twoStage', bandwidth: 32 }), lambda, maxAbs(lambda))).toBeLessThan(TOL);
    expect(eigvalshLargeSync(a, n)).toEqual(eigvalsh(a, n));
    expect(tf.memory().numTensors).toBe(start);
  });
});
