/**
 * AveragePooling2D derivatives vs an explicit Jacobian built by brute force
 * from TF's definition (a window's mean over its cells inside the input:
 * 'same' padding is excluded from the count), and vs TF.js autodiff for
 * 'valid' padding. TF.js 4.22's cpu AvgPoolGrad divides by the full window
 * size also at padded borders (not the adjoint of its own forward for
 * 'same'), so autodiff is no reference there.
 *
 * Tolerance 1e-5: each entry is a mean of ≤ 9 float32 numbers.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { AveragePooling2DDerivatives } from '../../src/derivatives/averagePooling2d';
import { modulesForLayer } from '../../src/derivatives/index';
import { adjointGap, checkModule, disposeRecord, expectClose, expectNoLeak, maxRelErr, type PoolingCase } from './helpers';

const CASES: PoolingCase[] = [
  { name: '2×2 stride 1 valid', inShape: [5, 4, 3], poolSize: [2, 2], strides: [1, 1], padding: 'valid', N: 2, V: 3 },
  { name: '3×3 stride 2 valid (overlap)', inShape: [7, 8, 2], poolSize: [3, 3], strides: [2, 2], padding: 'valid', N: 2, V: 2 },
  { name: '3×3 stride 2 same (overlap, asymmetric padding)', inShape: [7, 6, 2], poolSize: [3, 3], strides: [2, 2], padding: 'same', N: 2, V: 2 },
  { name: '2×2 stride 2 same, N = 1', inShape: [5, 5, 1], poolSize: [2, 2], strides: [2, 2], padding: 'same', N: 1, V: 3 },
  { name: 'pool [3, 2] strides [2, 1] same', inShape: [6, 5, 2], poolSize: [3, 2], strides: [2, 1], padding: 'same', N: 2, V: 1 },
];

/** Explicit per-sample Jacobian `[outSize, inSize]` (float64) of TF's average pooling. */
function bruteJacobian(c: PoolingCase): { A: Float64Array; outSize: number; inSize: number } {
  const [H, W, C] = c.inShape;
  const [ph, pw] = c.poolSize;
  const [sh, sw] = c.strides;
  const out = (size: number, k: number, s: number) => (c.padding === 'same' ? Math.ceil(size / s) : Math.floor((size - k) / s) + 1);
  const Ho = out(H, ph, sh);
  const Wo = out(W, pw, sw);
  const before = (size: number, k: number, s: number, o: number) =>
    c.padding === 'same' ? Math.floor(Math.max((o - 1) * s + k - size, 0) / 2) : 0;
  const pt = before(H, ph, sh, Ho);
  const pl = before(W, pw, sw, Wo);
  const inSize = H * W * C;
  const outSize = Ho * Wo * C;
  const A = new Float64Array(outSize * inSize);
  for (let ho = 0; ho < Ho; ho++)
    for (let wo = 0; wo < Wo; wo++)
      for (let ch = 0; ch < C; ch++) {
        const cells: number[] = [];
        for (let i = 0; i < ph; i++)
          for (let j = 0; j < pw; j++) {
            const h = ho * sh - pt + i;
            const w = wo * sw - pl + j;
            if (h >= 0 && h < H && w >= 0 && w < W) cells.push((h * W + w) * C + ch);
          }
        const row = ((ho * Wo + wo) * C + ch) * inSize;
        for (const p of cells) A[row + p] = 1 / cells.length;
      }
  return { A, outSize, inSize };
}

/** `[V, N, rows] ← A [rows, cols] · mat [V, N, cols]` (or Aᵀ), float64. */
function applyMatrix(A: Float64Array, rows: number, cols: number, mat: tf.Tensor, transpose: boolean): Float64Array {
  const m = mat.dataSync();
  const VN = mat.size / (transpose ? rows : cols);
  const outLen = transpose ? cols : rows;
  const out = new Float64Array(VN * outLen);
  for (let b = 0; b < VN; b++)
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) {
        const a = A[r * cols + c] as number;
        if (a === 0) continue;
        if (transpose) out[b * cols + c] += a * (m[b * rows + r] as number);
        else out[b * rows + r] += a * (m[b * cols + c] as number);
      }
  return out;
}

function buildLayer(c: PoolingCase): tf.layers.Layer {
  const layer = tf.layers.averagePooling2d({ inputShape: c.inShape, poolSize: c.poolSize, strides: c.strides, padding: c.padding });
  tf.sequential({ layers: [layer] });
  return layer;
}

describe('AveragePooling2D derivatives', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const layer = buildLayer(c);
      const [m] = modulesForLayer(layer) as [AveragePooling2DDerivatives];
      expect(m.kind).toBe('AveragePooling2D');
      const { A, outSize, inSize } = bruteJacobian(c);
      const x = tf.randomNormal([c.N, ...c.inShape], 0, 1, 'float32', 2);
      expectNoLeak(() => {
        const rec = m.forward(x, { training: false });
        tf.tidy(() => {
          expectClose(rec.output, layer.apply(x) as tf.Tensor, 1e-6, 'forward vs layer.apply');
          // The forward pass is the brute-force matrix (TF's count excludes padding).
          expect(maxRelErr(rec.output, applyMatrix(A, outSize, inSize, tf.expandDims(x, 0), false))).toBeLessThan(1e-5);
          const u = tf.randomNormal([c.V, ...rec.output.shape], 0, 1, 'float32', 3);
          const v = tf.randomNormal([c.V, ...rec.input.shape], 0, 1, 'float32', 4);
          const jtu = m.jacTMatProd(rec, u);
          expect(jtu.shape).toEqual([c.V, ...rec.input.shape]);
          expect(maxRelErr(jtu, applyMatrix(A, outSize, inSize, u, true))).toBeLessThan(1e-5);
          const jv = m.jacMatProd(rec, v);
          expect(jv.shape).toEqual([c.V, ...rec.output.shape]);
          expect(maxRelErr(jv, applyMatrix(A, outSize, inSize, v, false))).toBeLessThan(1e-5);
          expect(adjointGap(m, rec, c.V)).toBeLessThan(1e-5);
        });
        disposeRecord(rec);
      });
      if (c.padding === 'valid') {
        checkModule(m, x, (z) => layer.apply(z) as tf.Tensor, { V: c.V, tol: 1e-5, eps: 1 });
      }
      x.dispose();
      layer.dispose();
    });
  }

  it('rejects channelsFirst and bad stacks', () => {
    const cf = tf.layers.averagePooling2d({ inputShape: [1, 4, 4], poolSize: 2, dataFormat: 'channelsFirst', name: 'apcf' });
    tf.sequential({ layers: [cf] });
    expect(() => modulesForLayer(cf)).toThrow(/AveragePooling2D layer 'apcf': option dataFormat 'channelsFirst' is not supported/);
    const m = new AveragePooling2DDerivatives({ poolSize: [2, 2], strides: [2, 2], padding: 'valid' });
    expectNoLeak(() => {
      const x = tf.zeros([2, 4, 4, 1]);
      const rec = m.forward(x, { training: false });
      const bad = tf.zeros([1, 2, 3, 3, 1]);
      expect(() => m.jacTMatProd(rec, bad)).toThrow(/expects a stack \[V, 2, 2, 2, 1\], got \[1, 2, 3, 3, 1\]/);
      expect(() => m.jacMatProd(rec, bad)).toThrow(/expects a stack \[V, 2, 4, 4, 1\], got \[1, 2, 3, 3, 1\]/);
      const tiny = tf.zeros([2, 1, 1, 1]);
      expect(() => m.forward(tiny, { training: false })).toThrow(/smaller than the window 2×2/);
      tf.dispose([x, bad, tiny]);
      disposeRecord(rec);
    });
  });
});
