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
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eigvalsh, eigvalshLarge, eigvalshLargeSync } from '../../src/linalg/index';
import { Rng } from '../../src/utils/random';
import { maxAbs, maxRelDiff, mm, randomMatrix, randomOrthogonal, tr, withSpectrum } from './helpers';

const TOL = 2e-6;

let before = 0;
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors).toBe(before);
});

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
    const err = maxRelDiff(v64, lambda, scale);
    expect(err).toBeLessThan(TOL);
    expect(err).toBeGreaterThan(0); // really the float32 route, not float64 eigvalsh
    const a32 = new Float32Array(a);
    expect(maxRelDiff(eigvalshLargeSync(a32, n), lambda, scale)).toBeLessThan(TOL);
    const t = tf.tensor2d(a32, [n, n]);
    expect(maxRelDiff(eigvalshLargeSync(t, n), lambda, scale)).toBeLessThan(TOL);
    expect(t.isDisposed).toBe(false);
    t.dispose();
  });

  it('bandwidths 8 and 32, and a size that is not a multiple of b', () => {
    const n = 401;
    const { a, lambda } = knownSpectrum(n, 5);
    for (const bandwidth of [8, 32]) {
      expect(maxRelDiff(eigvalshLargeSync(a, n, { bandwidth }), lambda, maxAbs(lambda))).toBeLessThan(TOL);
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
    expect(maxRelDiff(got, ref, scale)).toBeLessThan(TOL);
    for (let i = 0; i < n - r; i++) expect(Math.abs(got[i]!)).toBeLessThan(TOL * scale);
  });

  it('huge scale and non-symmetric input (symmetric part)', () => {
    const n = 400;
    const { a, lambda } = knownSpectrum(n, 11);
    const big = a.map((x) => x * 1e200);
    expect(maxRelDiff(eigvalshLargeSync(big, n).map((x) => x / 1e200), lambda, maxAbs(lambda))).toBeLessThan(TOL);
    // Add an antisymmetric part K − Kᵀ: the symmetric part is unchanged.
    const K = randomMatrix(n, n, 12);
    const ns = a.map((x, idx) => x + K[idx]! - K[(idx % n) * n + Math.floor(idx / n)]!);
    expect(maxRelDiff(eigvalshLargeSync(ns, n), lambda, maxAbs(lambda))).toBeLessThan(TOL);
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
    expect(maxRelDiff(eigvalshLargeSync(a, n, { method: 'twoStage', bandwidth: 32 }), lambda, maxAbs(lambda))).toBeLessThan(TOL);
    expect(eigvalshLargeSync(a, n)).toEqual(eigvalsh(a, n));
    expect(tf.memory().numTensors).toBe(start);
  });
});
