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
  gram,
  rowBlocks,
  perSampleBiasProduct,
  perSampleKernelProduct,
  perSampleSquaredNorm,
  perSampleSumSquaredKernelProduct,
  summedBiasProduct,
  summedKernelProduct,
  sumLeadingAxis,
  sumPositions,
  sumSquaredKernelProduct,
  unstackRows,
} from '../../src/derivatives/weightProducts';
import { expectNoLeak, maxRelErr } from './helpers';

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
  { N: 2, T: 4, I: 2, V: 2, O: 3 }, // I < V·O: transposed per-sample products (VOI), explicit squared-norm route
  { N: 3, T: 3, I: 2, V: 1, O: 4 }, // VOI with V = 1
  { N: 1, T: 4, I: 5, V: 2, O: 3 }, // N = 1, T > 1
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
      expectNoLeak(() => {
        const check = (t: tf.Tensor, shape: number[], want: Float64Array, what: string) => {
          expect(t.shape, what).toEqual(shape);
          expect(maxRelErr(t, want), what).toBeLessThan(1e-5);
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
          expect(maxRelErr(P, want)).toBeLessThan(1e-5);
        });
        expect(seen).toEqual(Array.from({ length: N }, (_, n) => n));
      });
      tf.dispose([X, D]);
    });
  }

  it('rowBlocks cuts consecutive rows; gram equals XᵀX in float64 (one product, and row blocks for R > 2048)', () => {
    expectNoLeak(() => {
      const t = tf.randomNormal([7, 3, 2], 0, 1, 'float32', 21);
      const blocks = rowBlocks(t, [0, 2, 3, 7]);
      expect(blocks.map((b) => b.shape)).toEqual([[2, 3, 2], [1, 3, 2], [4, 3, 2]]);
      [[0, 2], [2, 1], [3, 4]].forEach(([r0, n], k) => {
        const ref = tf.slice(t, r0, n);
        expect(Array.from((blocks[k] as tf.Tensor).dataSync())).toEqual(Array.from(ref.dataSync()));
        ref.dispose();
      });
      tf.dispose([t, ...blocks]);
      for (const R of [5, 2500]) {
        const I = 3;
        const X = tf.randomNormal([R, I], 0, 1, 'float32', 22) as tf.Tensor2D;
        const x = X.dataSync();
        const want = new Float64Array(I * I);
        for (let r = 0; r < R; r++)
          for (let i = 0; i < I; i++) for (let j = 0; j < I; j++) want[i * I + j] += (x[r * I + i] as number) * (x[r * I + j] as number);
        const G = gram(X);
        // float32 sums of R products: ~1e-6·√R relative.
        expect(maxRelErr(G, want)).toBeLessThan(1e-5);
        tf.dispose([X, G]);
      }
    });
  });

  it('unstackRows reads a tensor created on another backend', async () => {
    await tf.setBackend('cpu');
    const t = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    await tf.setBackend('wasm');
    const rows = unstackRows(t);
    expect(rows.map((r) => Array.from(r.dataSync()))).toEqual([[1, 2], [3, 4], [5, 6]]);
    tf.dispose([t, ...rows]);
  });

  it('sumLeadingAxis and sumPositions equal float64 sums', () => {
    expectNoLeak(() => {
      // [A, L, R]: L = 1 (a reshape); R with a divisor in 8..1024 (average pool over [A, L, R/c, c]:
      // c = R, c = 1024 < R); R without one (tf.sum).
      for (const shape of [[1, 3, 24], [5, 3, 24], [4, 1, 24], [3, 7, 2048], [2, 6, 13], [4, 7, 3]] as [number, number, number][]) {
        const t = tf.randomNormal(shape, 0, 1, 'float32', 11) as tf.Tensor3D;
        const v = t.dataSync();
        const [A, B, C] = shape;
        const lead = new Float64Array(B * C);
        const pos = new Float64Array(A * C);
        for (let a = 0; a < A; a++)
          for (let b = 0; b < B; b++)
            for (let c = 0; c < C; c++) {
              lead[b * C + c] += v[(a * B + b) * C + c] as number;
              pos[a * C + c] += v[(a * B + b) * C + c] as number;
            }
        const l = sumLeadingAxis(t);
        const p = sumPositions(t);
        expect(l.shape).toEqual([B, C]);
        expect(p.shape).toEqual([A, C]);
        // float32 sums of ≤ 7 terms; the pool's 1/T · T scaling adds ≤ 2 roundings.
        expect(maxRelErr(l, lead)).toBeLessThan(1e-6);
        expect(maxRelErr(p, pos)).toBeLessThan(1e-6);
        tf.dispose([t, l, p]);
      }
    });
  });

  it('unstackRows equals tf.unstack (float32, int32, bool, and rows of a large tensor)', () => {
    expectNoLeak(() => {
      for (const t of [
        tf.randomNormal([3, 2, 4], 0, 1, 'float32', 3),
        tf.tensor2d([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32'),
        tf.tensor2d([[true, false, true], [false, false, true]], [2, 3], 'bool'),
        tf.randomNormal([4, 1 << 16], 0, 1, 'float32', 4),
      ]) {
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
