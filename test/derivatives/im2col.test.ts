/**
 * Window geometry and primitives vs TF.js: output sizes vs tf.conv2d's,
 * patches vs a brute-force im2col, the adjoint conv vs autodiff VJPs of
 * conv2d / depthwiseConv2d (cpu backend: wasm has no Conv2DBackpropFilter and
 * the references here differentiate w.r.t. the input only, but cpu keeps the
 * file independent of wasm kernels). Dilation in references uses the
 * zero-inserted kernel (TF.js autodiff has no dilated conv gradients).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  asPair,
  axisGeometry,
  convKernelProduct,
  explicitPadding,
  extractPatches,
  flipKernel,
  transposedWindowConv,
  windowGeometry,
  windowValidity,
  type WindowPadding,
} from '../../src/derivatives/im2col';
import { autodiffVjp, expectNoLeak, maxRelErr } from './helpers';

interface Geo {
  H: number;
  W: number;
  C: number;
  k: [number, number];
  s: [number, number];
  d: [number, number];
  p: WindowPadding;
}

const GEOS: Geo[] = [
  { H: 7, W: 6, C: 2, k: [3, 3], s: [2, 2], d: [1, 1], p: 'same' },
  { H: 8, W: 5, C: 1, k: [4, 2], s: [2, 3], d: [1, 1], p: 'same' },
  { H: 8, W: 8, C: 3, k: [3, 3], s: [2, 2], d: [1, 1], p: 'valid' },
  { H: 9, W: 7, C: 2, k: [3, 2], s: [1, 1], d: [2, 3], p: 'same' },
  { H: 9, W: 7, C: 2, k: [2, 3], s: [1, 1], d: [3, 2], p: 'valid' },
  { H: 5, W: 6, C: 2, k: [1, 1], s: [2, 2], d: [1, 1], p: 'same' },
  { H: 4, W: 4, C: 2, k: [5, 5], s: [1, 1], d: [1, 1], p: 'same' },
];

function dilateKernel(k: tf.Tensor, d: [number, number]): tf.Tensor4D {
  const [kh, kw, C, O] = k.shape as [number, number, number, number];
  return tf.tidy((): tf.Tensor4D => {
    const padded = tf.pad(tf.reshape(k, [kh, 1, kw, 1, C, O]), [[0, 0], [0, d[0] - 1], [0, 0], [0, d[1] - 1], [0, 0], [0, 0]]);
    return tf.slice(tf.reshape(padded, [kh * d[0], kw * d[1], C, O]), [0, 0, 0, 0], [(kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1, C, O]) as tf.Tensor4D;
  });
}

/**
 * `G[v, i, j, c, o] = Σ_{n, ho, wo} x_pad[n, ho·s + i·d − pt, wo·s + j·d − pl, c] · D[v, n, ho, wo, o]`
 * in float64 (zero outside the input).
 */
function bruteKernelProduct(x: tf.Tensor, D: tf.Tensor, g: Geo, pt: number, pl: number): Float64Array {
  const [N, H, W, C] = x.shape as [number, number, number, number];
  const [V, , Ho, Wo, O] = D.shape as [number, number, number, number, number];
  const [kh, kw] = g.k;
  const xv = x.dataSync();
  const dv = D.dataSync();
  const out = new Float64Array(V * kh * kw * C * O);
  for (let v = 0; v < V; v++)
    for (let n = 0; n < N; n++)
      for (let ho = 0; ho < Ho; ho++)
        for (let wo = 0; wo < Wo; wo++)
          for (let i = 0; i < kh; i++)
            for (let j = 0; j < kw; j++) {
              const h = ho * g.s[0] + i * g.d[0] - pt;
              const w = wo * g.s[1] + j * g.d[1] - pl;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              for (let c = 0; c < C; c++) {
                const xe = xv[((n * H + h) * W + w) * C + c] as number;
                for (let o = 0; o < O; o++)
                  out[(((v * kh + i) * kw + j) * C + c) * O + o] += xe * (dv[(((v * N + n) * Ho + ho) * Wo + wo) * O + o] as number);
              }
            }
  return out;
}

const name = (g: Geo) => `${g.H}×${g.W}×${g.C}, k ${g.k}, s ${g.s}, d ${g.d}, ${g.p}`;

describe('im2col window primitives (cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  for (const g of GEOS) {
    it(name(g), () => {
      const geo = windowGeometry('test', [g.H, g.W, g.C], g.k, g.s, g.d, g.p);
      expectNoLeak(() => {
        const x = tf.randomNormal([2, g.H, g.W, g.C], 0, 1, 'float32', 1) as tf.Tensor4D;
        const O = 3;
        const K = tf.randomNormal([...g.k, g.C, O], 0, 1, 'float32', 2) as tf.Tensor4D;
        const y = tf.conv2d(x, K, g.s, g.p, 'NHWC', g.d);
        // Output sizes and (through the checks below) TF's padding split.
        expect([geo.h.out, geo.w.out]).toEqual(y.shape.slice(1, 3));
        expect(explicitPadding(geo)).toEqual([[0, 0], [geo.h.padBefore, geo.h.padAfter], [geo.w.padBefore, geo.w.padAfter], [0, 0]]);
        // Patches: X [N, T, K·C] reproduce the conv as X · K_flat.
        const X = extractPatches(x, geo);
        const T = geo.h.out * geo.w.out;
        expect(X.shape).toEqual([2, T, g.k[0] * g.k[1] * g.C]);
        const viaX = tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(X, [2 * T, -1]), tf.reshape(K, [-1, O])), y.shape));
        expect(maxRelErr(viaX, y)).toBeLessThan(1e-5);
        // Validity: a patch entry is exactly zero where its window element lies in the padding.
        const valid = windowValidity(geo);
        const Xv = X.dataSync();
        const Kw = g.k[0] * g.k[1];
        for (let t = 0; t < T; t++)
          for (let k = 0; k < Kw; k++)
            if (valid[t * Kw + k] === 0) for (let c = 0; c < g.C; c++) expect(Xv[(t * Kw + k) * g.C + c]).toBe(0);
        // Adjoint of the conv: vs autodiff VJP.
        const gy = tf.randomNormal(y.shape, 0, 1, 'float32', 3) as tf.Tensor4D;
        const Kd = dilateKernel(K, g.d);
        const ref = tf.tidy(() => tf.squeeze(autodiffVjp((z) => tf.conv2d(z as tf.Tensor4D, Kd, g.s, g.p), x, tf.expandDims(gy, 0)), [0]));
        const flipped = flipKernel(K);
        const got = transposedWindowConv(gy, flipped, geo, false);
        expect(got.shape).toEqual(x.shape);
        expect(maxRelErr(got, ref)).toBeLessThan(1e-5);
        // Depthwise adjoint (pooling-style windows: one kernel per channel).
        const Kdw = tf.randomNormal([...g.k, g.C, 1], 0, 1, 'float32', 4) as tf.Tensor4D;
        const ydw = tf.depthwiseConv2d(x, Kdw, g.s, g.p, 'NHWC', g.d);
        const gdw = tf.randomNormal(ydw.shape, 0, 1, 'float32', 5) as tf.Tensor4D;
        const Kdwd = dilateKernel(Kdw, g.d);
        const refDw = tf.tidy(() =>
          tf.squeeze(autodiffVjp((z) => tf.depthwiseConv2d(z as tf.Tensor4D, Kdwd, g.s, g.p), x, tf.expandDims(gdw, 0)), [0]),
        );
        const fdw = flipKernel(Kdw, true);
        const gotDw = transposedWindowConv(gdw, fdw, geo, true);
        expect(maxRelErr(gotDw, refDw)).toBeLessThan(1e-5);
        // flipKernel (reversal matMul) is exactly the rotation: reverse (kh, kw), swap in/out.
        const flipRef = tf.tidy(() => tf.transpose(tf.reverse(K, [0, 1]), [0, 1, 3, 2]));
        expect(maxRelErr(flipped, flipRef)).toBe(0);
        const fdwRef = tf.reverse(Kdw, [0, 1]);
        expect(maxRelErr(fdw, fdwRef)).toBe(0);
        // Kernel products as one conv vs brute force from the definition (V = 2 and V = 1).
        for (const V of [2, 1]) {
          const D = tf.randomNormal([V, ...y.shape], 0, 1, 'float32', 6 + V);
          const prod = convKernelProduct(x, D, geo);
          expect(prod.shape).toEqual([V, ...g.k, g.C, O]);
          expect(maxRelErr(prod, bruteKernelProduct(x, D, g, geo.h.padBefore, geo.w.padBefore))).toBeLessThan(1e-5);
          tf.dispose([D, prod]);
        }
        tf.dispose([x, K, y, X, viaX, gy, Kd, ref, flipped, got, Kdw, ydw, gdw, Kdwd, refDw, fdw, gotDw, flipRef, fdwRef]);
      });
    });
  }

  it('computes TF padding (the extra row goes after) and validates options', () => {
    expect(axisGeometry(7, 3, 2, 1, 'same')).toMatchObject({ out: 4, padBefore: 1, padAfter: 1 });
    expect(axisGeometry(6, 3, 2, 1, 'same')).toMatchObject({ out: 3, padBefore: 0, padAfter: 1 });
    expect(axisGeometry(6, 4, 1, 1, 'same')).toMatchObject({ out: 6, padBefore: 1, padAfter: 2 });
    expect(axisGeometry(6, 1, 4, 1, 'same')).toMatchObject({ out: 2, padBefore: 0, padAfter: 0 });
    expect(axisGeometry(9, 3, 1, 3, 'valid')).toMatchObject({ extent: 7, out: 3 });
    expect(() => windowGeometry('Conv2D layer \'c\'', [2, 2, 1], [3, 3], [1, 1], [1, 1], 'valid')).toThrow(
      /Conv2D layer 'c': the input of spatial size 2×2 is smaller than the window 3×3/,
    );
    expect(() => windowGeometry('X', [4, 4], [3, 3], [1, 1], [1, 1], 'valid')).toThrow(/expects inputs \[N, height, width, channels\]/);
    expect(asPair(3, 'strides', 'w')).toEqual([3, 3]);
    expect(asPair([2], 'strides', 'w')).toEqual([2, 2]);
    expect(asPair([1, 2], 'strides', 'w')).toEqual([1, 2]);
    expect(() => asPair([0, 2], 'strides', 'L')).toThrow(/L: option 'strides' must be a positive integer or a pair of them, got \[0,2\]/);
  });
});
