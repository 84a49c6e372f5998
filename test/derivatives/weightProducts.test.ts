/**
 * The kernel algebra on (X [N, T, I], D [V, N, T, O]) vs brute-force float64
 * loops over G[v, n] = Σ_t X[n, t]ᵀ D[v, n, t]. Shapes cover T = 1 (Dense
 * fast paths) and T > 1 (conv patches), N = 1, V = 1 and V > 1, and both
 * branches of summedKernelProduct (I ≤ V·O, I > V·O) and of
 * perSampleSquaredNorm (Gram route, explicit route). Tolerance 1e-5: float32
 * sums of ≤ 6·7 products.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  forEachSampleKernelProduct,
  perSampleBiasProduct,
  perSampleKernelProduct,
  perSampleSquaredNorm,
  perSampleSumSquaredKernelProduct,
  summedBiasProduct,
  summedKernelProduct,
  sumSquaredKernelProduct,
  unstackRows,
} from '../../src/derivatives/weightProducts';
import { noLeaks, relErr } from './helpers';

interface Shapes {
  N: number;
  T: number;
  I: number;
  V: number;
  O: number;
}

/** Brute force G [V, N, I, O] and b [V, N, O] in float64. */
function brute(X: tf.Tensor3D, D: tf.Tensor4D): { G: Float64Array; b: Float64Array } {
  const [N, T, I] = X.shape;
  const [V, , , O] = D.shape;
  const x = X.dataSync();
  const d = D.dataSync();
  const G = new Float64Array(V * N * I * O);
  const b = new Float64Array(V * N * O);
  for (let v = 0; v < V; v++)
    for (let n = 0; n < N; n++)
      for (let t = 0; t < T; t++)
        for (let o = 0; o < O; o++) {
          const dv = d[((v * N + n) * T + t) * O + o] as number;
          b[(v * N + n) * O + o] += dv;
          for (let i = 0; i < I; i++) G[((v * N + n) * I + i) * O + o] += (x[(n * T + t) * I + i] as number) * dv;
        }
  return { G, b };
}

const CASES: Shapes[] = [
  { N: 3, T: 1, I: 4, V: 2, O: 3 }, // Dense, T = 1
  { N: 1, T: 1, I: 5, V: 1, O: 2 }, // N = 1, V = 1
  { N: 2, T: 6, I: 7, V: 1, O: 3 }, // conv-like, I > V·O, explicit squared-norm route
  { N: 3, T: 2, I: 3, V: 3, O: 4 }, // I ≤ V·O, Gram route (T(I + VO) < IVO)
  { N: 2, T: 5, I: 9, V: 3, O: 2 }, // I > V·O with V > 1
];

describe('weight products', () => {
  for (const s of CASES) {
    it(`N=${s.N} T=${s.T} I=${s.I} V=${s.V} O=${s.O}`, () => {
      const X = tf.randomNormal([s.N, s.T, s.I], 0, 1, 'float32', 1) as tf.Tensor3D;
      const D = tf.randomNormal([s.V, s.N, s.T, s.O], 0, 1, 'float32', 2) as tf.Tensor4D;
      const { G, b } = brute(X, D);
      const { V, N, I, O } = s;
      const summed = new Float64Array(V * I * O);
      const sumSq = new Float64Array(I * O);
      const perSq = new Float64Array(N * I * O);
      const norms = new Float64Array(V * N);
      const bSummed = new Float64Array(V * O);
      for (let v = 0; v < V; v++)
        for (let n = 0; n < N; n++) {
          for (let k = 0; k < I * O; k++) {
            const g = G[(v * N + n) * I * O + k] as number;
            summed[v * I * O + k] += g;
            sumSq[k] += g * g;
            perSq[n * I * O + k] += g * g;
            norms[v * N + n] += g * g;
          }
          for (let o = 0; o < O; o++) bSummed[v * O + o] += b[(v * N + n) * O + o] as number;
        }
      noLeaks(() => {
        const check = (t: tf.Tensor, shape: number[], want: Float64Array, what: string) => {
          expect(t.shape, what).toEqual(shape);
          expect(relErr(t, want), what).toBeLessThan(1e-5);
          t.dispose();
        };
        check(summedKernelProduct(X, D), [V, I, O], summed, 'summedKernelProduct');
        check(perSampleKernelProduct(X, D), [V, N, I, O], G, 'perSampleKernelProduct');
        check(sumSquaredKernelProduct(X, D), [I, O], sumSq, 'sumSquaredKernelProduct');
        check(perSampleSumSquaredKernelProduct(X, D), [N, I, O], perSq, 'perSampleSumSquaredKernelProduct');
        check(perSampleSquaredNorm(X, D), [V, N], norms, 'perSampleSquaredNorm');
        check(summedBiasProduct(D), [V, O], bSummed, 'summedBiasProduct');
        check(perSampleBiasProduct(D), [V, N, O], b, 'perSampleBiasProduct');
        // forEachSampleKernelProduct: P_n [I, V, O] = (X_nᵀ D[v, n])_v.
        const seen: number[] = [];
        forEachSampleKernelProduct(X, D, (n, P) => {
          seen.push(n);
          expect(P.shape).toEqual([I, V, O]);
          const want = new Float64Array(I * V * O);
          for (let v = 0; v < V; v++)
            for (let i = 0; i < I; i++)
              for (let o = 0; o < O; o++) want[(i * V + v) * O + o] = G[((v * N + n) * I + i) * O + o] as number;
          expect(relErr(P, want)).toBeLessThan(1e-5);
        });
        expect(seen).toEqual(Array.from({ length: N }, (_, n) => n));
      });
      tf.dispose([X, D]);
    });
  }

  it('unstackRows equals tf.unstack (float32 and int32)', () => {
    noLeaks(() => {
      for (const t of [tf.randomNormal([3, 2, 4], 0, 1, 'float32', 3), tf.tensor2d([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32')]) {
        const rows = unstackRows(t);
        const ref = tf.unstack(t);
        expect(rows.length).toBe(ref.length);
        rows.forEach((r, i) => {
          expect(r.shape).toEqual((ref[i] as tf.Tensor).shape);
          expect(r.dtype).toBe(t.dtype);
          expect(Array.from(r.dataSync())).toEqual(Array.from((ref[i] as tf.Tensor).dataSync()));
        });
        tf.dispose([t, ...rows, ...ref]);
      }
    });
  });
});
