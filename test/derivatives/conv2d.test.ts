/**
 * Conv2D derivatives vs TF.js autodiff, finite differences and a brute-force
 * im2col. The references need Conv2DBackpropFilter (kernel gradients), which
 * wasm lacks, so this file runs on the cpu backend; one test re-runs the
 * module on wasm (curvpack's default) and compares with cpu.
 *
 * Tolerances: 1e-4 relative to the reference's max magnitude — float32 sums
 * of ≤ 75 products give ~1e-6; central differences of an affine map with
 * ε = 1 are exact up to rounding of f (~1e-6 relative).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Conv2DDerivatives } from '../../src/derivatives/conv2d';
import { LAYER_DERIVATIVES, modulesForLayer } from '../../src/derivatives/index';
import { isLinearModule, type LinearModuleDerivatives } from '../../src/derivatives/types';
import { paramProduct } from '../../src/engine/paramProducts';
import {
  autodiffVjp,
  checkModule,
  checkParamProducts,
  disposeRecord,
  expectClose,
  expectNoLeak,
  onBackend,
  maxRelErr,
  type ParamFn,
} from './helpers';

interface Case {
  name: string;
  inShape: [number, number, number];
  filters: number;
  kernelSize: [number, number];
  strides: [number, number];
  padding: 'valid' | 'same';
  dilation: [number, number];
  useBias: boolean;
  N: number;
  V: number;
  activation?: 'relu' | 'tanh';
}

const base: Pick<Case, 'strides' | 'padding' | 'dilation' | 'useBias' | 'N' | 'V'> = {
  strides: [1, 1],
  padding: 'valid',
  dilation: [1, 1],
  useBias: true,
  N: 2,
  V: 3,
};
const CASES: Case[] = [
  { ...base, name: 'valid 3×3 stride 1', inShape: [6, 5, 2], filters: 3, kernelSize: [3, 3] },
  { ...base, name: 'same 3×3 stride 1, N = 1', inShape: [5, 6, 2], filters: 3, kernelSize: [3, 3], padding: 'same', N: 1 },
  { ...base, name: 'same 3×3 stride 2 (asymmetric padding)', inShape: [7, 6, 2], filters: 2, kernelSize: [3, 3], strides: [2, 2], padding: 'same' },
  { ...base, name: 'same 4×4 stride 2 (even kernel)', inShape: [6, 7, 1], filters: 2, kernelSize: [4, 4], strides: [2, 2], padding: 'same' },
  { ...base, name: 'valid 3×3 stride 2 (uncovered last rows)', inShape: [8, 8, 2], filters: 3, kernelSize: [3, 3], strides: [2, 2] },
  { ...base, name: 'same 3×3 dilation 2', inShape: [7, 6, 2], filters: 2, kernelSize: [3, 3], padding: 'same', dilation: [2, 2] },
  { ...base, name: 'valid 2×3 dilation [2, 1]', inShape: [7, 6, 2], filters: 2, kernelSize: [2, 3], dilation: [2, 1], V: 2 },
  { ...base, name: 'no bias, V = 1', inShape: [5, 5, 3], filters: 2, kernelSize: [3, 3], useBias: false, V: 1 },
  { ...base, name: '1×1 kernel stride 2 same', inShape: [5, 6, 3], filters: 4, kernelSize: [1, 1], strides: [2, 2], padding: 'same' },
  { ...base, name: 'non-square 2×3 kernel, strides [1, 2] same', inShape: [6, 7, 2], filters: 3, kernelSize: [2, 3], strides: [1, 2], padding: 'same' },
  { ...base, name: 'fused relu', inShape: [5, 5, 2], filters: 3, kernelSize: [3, 3], padding: 'same', activation: 'relu' },
];

function buildLayer(c: Case): tf.layers.Layer {
  const layer = tf.layers.conv2d({
    inputShape: c.inShape,
    filters: c.filters,
    kernelSize: c.kernelSize,
    strides: c.strides,
    padding: c.padding,
    dilationRate: c.dilation,
    useBias: c.useBias,
    activation: c.activation ?? 'linear',
    biasInitializer: 'randomNormal',
  });
  tf.sequential({ layers: [layer] });
  return layer;
}

/**
 * Zero-inserted kernel `[(kh−1)dh+1, (kw−1)dw+1, C, O]`: a conv with dilation d equals
 * a conv with this kernel and dilation 1 (TF.js autodiff has no dilated conv gradients).
 */
function dilateKernel(k: tf.Tensor, d: [number, number]): tf.Tensor4D {
  const [kh, kw, C, O] = k.shape as [number, number, number, number];
  if (d[0] === 1 && d[1] === 1) return k as tf.Tensor4D;
  const padded = tf.pad(tf.reshape(k, [kh, 1, kw, 1, C, O]), [[0, 0], [0, d[0] - 1], [0, 0], [0, d[1] - 1], [0, 0], [0, 0]]);
  const full = tf.reshape(padded, [kh * d[0], kw * d[1], C, O]);
  return tf.slice(full, [0, 0, 0, 0], [(kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1, C, O]) as tf.Tensor4D;
}

/** The definition: cross-correlation + bias (independent of curvpack's geometry code). */
function definition(c: Case): ParamFn {
  return (x, kernel, bias) => {
    const y = tf.conv2d(x as tf.Tensor4D, dilateKernel(kernel, c.dilation), c.strides, c.padding, 'NHWC');
    return bias ? tf.add(y, bias) : y;
  };
}

/** TF 'same' padding (before) of one axis. */
function padBefore(size: number, k: number, s: number, d: number, padding: string): number {
  if (padding === 'valid') return 0;
  const out = Math.ceil(size / s);
  return Math.floor(Math.max((out - 1) * s + (k - 1) * d + 1 - size, 0) / 2);
}

/** Brute-force im2col `[N, Ho·Wo, kh·kw·C]`, order (i, j, c). */
function bruteIm2col(x: tf.Tensor4D, c: Case, Ho: number, Wo: number): Float64Array {
  const [N, H, W, C] = x.shape;
  const [kh, kw] = c.kernelSize;
  const xv = x.dataSync();
  const pt = padBefore(H, kh, c.strides[0], c.dilation[0], c.padding);
  const pl = padBefore(W, kw, c.strides[1], c.dilation[1], c.padding);
  const I = kh * kw * C;
  const out = new Float64Array(N * Ho * Wo * I);
  for (let n = 0; n < N; n++)
    for (let ho = 0; ho < Ho; ho++)
      for (let wo = 0; wo < Wo; wo++)
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++)
            for (let ch = 0; ch < C; ch++) {
              const h = ho * c.strides[0] - pt + i * c.dilation[0];
              const w = wo * c.strides[1] - pl + j * c.dilation[1];
              const inside = h >= 0 && h < H && w >= 0 && w < W;
              out[((n * Ho + ho) * Wo + wo) * I + (i * kw + j) * C + ch] = inside ? (xv[((n * H + h) * W + w) * C + ch] as number) : 0;
            }
  return out;
}

const TOL = 1e-4;

describe('Conv2D derivatives (cpu references)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  for (const c of CASES) {
    it(c.name, () => {
      const layer = buildLayer(c);
      const modules = modulesForLayer(layer);
      expect(modules.map((m) => m.kind)).toEqual(c.activation ? ['Conv2D', `Activation(${c.activation})`] : ['Conv2D']);
      const conv = modules[0] as LinearModuleDerivatives;
      expect(isLinearModule(conv)).toBe(true);
      const [kernel, bias] = layer.getWeights() as [tf.Tensor, tf.Tensor | undefined];
      expect(conv.kernelShape).toEqual(kernel.shape);
      expect(conv.hasBias).toBe(c.useBias);
      const f = definition(c);
      const x = tf.randomNormal([c.N, ...c.inShape], 0, 1, 'float32', 11);
      expectNoLeak(() => {
        // Forward: the module chain equals the layer (fused activation included).
        tf.tidy(() => {
          let h: tf.Tensor = x;
          const recs = modules.map((m) => {
            const r = m.forward(h, { training: false });
            h = r.output;
            return r;
          });
          expectClose(h, layer.apply(x) as tf.Tensor, 1e-5, 'forward chain vs layer.apply');
          recs.forEach(disposeRecord);
        });
        checkModule(conv, x, (z) => f(z, kernel, bias), { V: c.V, tol: TOL, eps: 1 });

        const rec = conv.forward(x, { training: false });
        const [N, Ho, Wo, O] = rec.output.shape as [number, number, number, number];
        // im2col vs brute force; the unfolded view reproduces the forward pass.
        tf.tidy(() => {
          const X = conv.unfoldInput(rec);
          const [kh, kw, inC] = kernel.shape as [number, number, number, number];
          expect(X.shape).toEqual([N, Ho * Wo, kh * kw * inC]);
          expect(maxRelErr(X, bruteIm2col(x as tf.Tensor4D, c, Ho, Wo))).toBe(0);
          let y = tf.reshape(tf.matMul(tf.reshape(X, [N * Ho * Wo, -1]), tf.reshape(kernel, [-1, O])), [1, N, Ho, Wo, O]);
          if (bias) y = tf.add(y, bias);
          expectClose(conv.unfoldOutput(conv.foldOutput(y), [Ho, Wo, O]), tf.expandDims(rec.output, 0), 1e-5, 'X·K + b');
          expect(conv.foldOutput(y).shape).toEqual([1, N, Ho * Wo, O]);
        });
        // Kernel and bias products (summed, per sample, squared) vs per-sample autodiff.
        tf.tidy(() => {
          const D = tf.randomNormal([c.V, ...rec.output.shape], 0, 1, 'float32', 5);
          checkParamProducts(conv, rec, f, kernel, bias, D, TOL);
        });
        // paramJacMatProd: directional derivatives along kernel / bias directions.
        tf.tidy(() => {
          const dK = tf.randomNormal([c.V, ...kernel.shape], 0, 1, 'float32', 3);
          const want = tf.stack(
            tf.unstack(dK).map((d) => tf.div(tf.sub(f(x, tf.add(kernel, d), bias), f(x, tf.sub(kernel, d), bias)), 2)),
          );
          expectClose(conv.paramJacMatProd(rec, 'kernel', dK), want, TOL, 'paramJacMatProd kernel');
          if (bias) {
            const db = tf.randomNormal([c.V, O], 0, 1, 'float32', 4);
            const wantB = tf.stack(
              tf.unstack(db).map((d) => tf.div(tf.sub(f(x, kernel, tf.add(bias, d)), f(x, kernel, tf.sub(bias, d))), 2)),
            );
            expectClose(conv.paramJacMatProd(rec, 'bias', db), wantB, TOL, 'paramJacMatProd bias');
          }
        });
        // jacTMatProdWithKernel vs autodiff with the kernel swapped.
        tf.tidy(() => {
          const K2 = tf.randomNormal(kernel.shape, 0, 1, 'float32', 9);
          const mat = tf.randomNormal([c.V, ...rec.output.shape], 0, 1, 'float32', 10);
          const want = autodiffVjp((z) => f(z, K2, undefined), x, mat);
          expectClose(conv.jacTMatProdWithKernel(rec, mat, K2), want, TOL, 'jacTMatProdWithKernel');
        });
        disposeRecord(rec);
      });
      x.dispose();
      layer.dispose();
    });
  }

  it('gives the same results on wasm as on cpu', async () => {
    for (const c of [CASES[2] as Case, CASES[5] as Case]) {
      const layer = buildLayer(c);
      const conv = modulesForLayer(layer)[0] as LinearModuleDerivatives;
      const x = tf.randomNormal([c.N, ...c.inShape], 0, 1, 'float32', 21);
      const mat = tf.randomNormal([c.V, c.N, ...conv.outputShape(c.inShape)], 0, 1, 'float32', 22);
      const vin = tf.randomNormal([c.V, c.N, ...c.inShape], 0, 1, 'float32', 23);
      const dK = tf.randomNormal([c.V, ...conv.kernelShape], 0, 1, 'float32', 24);
      const run = () =>
        expectNoLeak(() => {
          const rec = conv.forward(x, { training: false });
          const out = tf.tidy(() => {
            const X = conv.unfoldInput(rec);
            return [
              rec.output,
              conv.jacTMatProd(rec, mat),
              conv.jacMatProd(rec, vin),
              X,
              conv.paramJacMatProd(rec, 'kernel', dK),
              paramProduct('summed', conv, 'kernel', conv.kernelShape, X, mat),
              paramProduct('summed', conv, 'kernel', conv.kernelShape, undefined, mat, rec),
              paramProduct('perSampleSquaredNorm', conv, 'kernel', conv.kernelShape, X, mat),
              paramProduct('sumSquared', conv, 'kernel', conv.kernelShape, X, mat),
            ].map((t) => Array.from(t.dataSync()));
          });
          disposeRecord(rec);
          return out;
        });
      const cpu = run();
      const wasm = await onBackend('wasm', run);
      wasm.forEach((w, i) => expect(maxRelErr(w, cpu[i] as number[]), `${c.name} output ${i}`).toBeLessThan(1e-5));
      tf.dispose([x, mat, vin, dK]);
      layer.dispose();
    }
  });

  it('rejects unsupported options and bad shapes with clear errors', () => {
    expectNoLeak(() => {
      const cf = tf.layers.conv2d({ inputShape: [2, 5, 5], filters: 2, kernelSize: 3, dataFormat: 'channelsFirst', name: 'cf' });
      tf.sequential({ layers: [cf] });
      expect(() => modulesForLayer(cf)).toThrow(/Conv2D layer 'cf': option dataFormat 'channelsFirst' is not supported/);
      const ok = tf.layers.conv2d({ inputShape: [5, 5, 2], filters: 2, kernelSize: 3, name: 'okconv' });
      tf.sequential({ layers: [ok] });
      const factory = LAYER_DERIVATIVES.Conv2D as NonNullable<(typeof LAYER_DERIVATIVES)['Conv2D']>;
      expect(() => factory(ok, { ...(ok.getConfig() as Record<string, unknown>), padding: 'causal' })).toThrow(
        /Conv2D layer 'okconv': option padding 'causal' is not supported/,
      );
      const conv = modulesForLayer(ok)[0] as Conv2DDerivatives;
      expect(() => conv.outputShape([5, 5, 3])).toThrow(/expects inputs \[N, height, width, 2\], got an input of shape \[N, 5, 5, 3\]/);
      expect(() => conv.outputShape([2, 2, 2])).toThrow(/smaller than the window 3×3/);
      const x = tf.randomNormal([2, 5, 5, 2]);
      const rec = conv.forward(x, { training: false });
      const bad = tf.zeros([1, 2, 4, 4, 2]);
      const badKernel = tf.zeros([2]);
      expect(() => conv.jacTMatProd(rec, bad)).toThrow(/expects a stack \[V, 2, 3, 3, 2\], got \[1, 2, 4, 4, 2\]/);
      expect(() => conv.jacTMatProdWithKernel(rec, bad, badKernel)).toThrow(/expects a kernel of shape \[3, 3, 2, 2\]/);
      expect(
        () =>
          new Conv2DDerivatives(ok.getWeights()[0] as unknown as tf.Variable, undefined, {
            strides: [2, 2],
            padding: 'valid',
            dilationRate: [2, 2],
          }),
      ).toThrow(/cannot both exceed 1/);
      disposeRecord(rec);
      tf.dispose([x, bad, badKernel]);
      cf.dispose();
      ok.dispose();
    });
  });
});
