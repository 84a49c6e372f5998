/**
 * MaxPooling2D derivatives vs TF.js autodiff, central differences, and a
 * brute-force first-maximum routing for tied windows (FORMAT.md §6.2).
 *
 * References run on the cpu backend: TF.js 4.22's wasm MaxPoolGrad routes the
 * gradient of a window whose values are all negative to the window's first
 * cell instead of its maximum (e.g. window [−1.6, −1.49, −0.55, −0.5] → [1, 0, 0, 0];
 * cpu gives [0, 0, 0, 1]). One test re-runs curvpack's module on wasm and
 * compares with cpu.
 *
 * Inputs without ties are a random permutation of integers (spacing 1), so a
 * central difference with ε·|v| ≤ 0.25 never changes a window's argmax and is
 * exact up to float32 rounding of x ± εv (|x| ≤ ~150: ~1e-5 / 2ε relative).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MaxPooling2DDerivatives } from '../../src/derivatives/maxPooling2d';
import { modulesForLayer } from '../../src/derivatives/index';
import { Rng } from '../../src/utils/random';
import { checkModule, disposeRecord, expectNoLeak, maxRelErr, onBackend, type PoolingCase } from './helpers';

const CASES: PoolingCase[] = [
  { name: '2×2 stride 2 valid (disjoint windows)', inShape: [6, 6, 2], poolSize: [2, 2], strides: [2, 2], padding: 'valid', N: 2, V: 3 },
  { name: '3×3 stride 2 valid (overlapping windows)', inShape: [7, 7, 2], poolSize: [3, 3], strides: [2, 2], padding: 'valid', N: 2, V: 2 },
  { name: '3×3 stride 2 same (overlap, −∞ padding), N = 1', inShape: [6, 7, 2], poolSize: [3, 3], strides: [2, 2], padding: 'same', N: 1, V: 2 },
  { name: '2×2 stride 1 same', inShape: [5, 5, 3], poolSize: [2, 2], strides: [1, 1], padding: 'same', N: 2, V: 1 },
  { name: 'pool [2, 3] strides [1, 2] valid', inShape: [5, 7, 2], poolSize: [2, 3], strides: [1, 2], padding: 'valid', N: 3, V: 2 },
];

/** Distinct integers (a random permutation) centred at 0: no ties, spacing 1. */
function distinctInput(shape: number[], seed: number): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const rng = new Rng(seed);
  const v = Float32Array.from({ length: size }, (_, i) => i - size / 2);
  for (let i = size - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [v[i], v[j]] = [v[j] as number, v[i] as number];
  }
  return tf.tensor(v, shape);
}

function buildLayer(c: PoolingCase): tf.layers.Layer {
  const layer = tf.layers.maxPooling2d({ inputShape: c.inShape, poolSize: c.poolSize, strides: c.strides, padding: c.padding });
  tf.sequential({ layers: [layer] });
  return layer;
}

/** Brute force: flat per-sample index of the first (row-major) maximal valid cell of each window. */
function bruteArgmax(x: tf.Tensor, c: PoolingCase): Int32Array {
  const [N, H, W, C] = x.shape as [number, number, number, number];
  const xv = x.dataSync();
  const [ph, pw] = c.poolSize;
  const [sh, sw] = c.strides;
  const outDim = (size: number, k: number, s: number) => (c.padding === 'same' ? Math.ceil(size / s) : Math.floor((size - k) / s) + 1);
  const Ho = outDim(H, ph, sh);
  const Wo = outDim(W, pw, sw);
  const before = (size: number, k: number, s: number, out: number) =>
    c.padding === 'same' ? Math.floor(Math.max((out - 1) * s + k - size, 0) / 2) : 0;
  const pt = before(H, ph, sh, Ho);
  const pl = before(W, pw, sw, Wo);
  const out = new Int32Array(N * Ho * Wo * C);
  for (let n = 0; n < N; n++)
    for (let ho = 0; ho < Ho; ho++)
      for (let wo = 0; wo < Wo; wo++)
        for (let ch = 0; ch < C; ch++) {
          let best = -Infinity;
          let arg = -1;
          for (let i = 0; i < ph; i++)
            for (let j = 0; j < pw; j++) {
              const h = ho * sh - pt + i;
              const w = wo * sw - pl + j;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              const idx = (h * W + w) * C + ch;
              const val = xv[n * H * W * C + idx] as number;
              if (val > best) {
                best = val;
                arg = idx;
              }
            }
          out[((n * Ho + ho) * Wo + wo) * C + ch] = arg;
        }
  return out;
}

describe('MaxPooling2D derivatives (cpu references)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend('wasm');
  });
  afterEach(() => {
    MaxPooling2DDerivatives.indexSpan = 2 ** 24;
    MaxPooling2DDerivatives.firstArgMaxBackends = ['wasm', 'cpu'];
  });

  for (const c of CASES) {
    it(c.name, () => {
      const layer = buildLayer(c);
      const [m] = modulesForLayer(layer) as [MaxPooling2DDerivatives];
      expect(m.kind).toBe('MaxPooling2D');
      const x = distinctInput([c.N, ...c.inShape], 3);
      checkModule(m, x, (z) => layer.apply(z) as tf.Tensor, { V: c.V, tol: 1e-5, eps: 0.25, jvpTol: 1e-4 });
      expectNoLeak(() => {
        const rec = m.forward(x, { training: false });
        expect(rec.saved.argmax?.dtype).toBe('int32');
        expect(Array.from(rec.saved.argmax?.dataSync() ?? [])).toEqual(Array.from(bruteArgmax(x, c)));
        disposeRecord(rec);
      });
      x.dispose();
      layer.dispose();
    });
  }

  it('routes tied windows (all zeros after a ReLU) to the first maximum in row-major order', () => {
    for (const c of [CASES[1] as PoolingCase, CASES[2] as PoolingCase, CASES[3] as PoolingCase]) {
      const layer = buildLayer(c);
      const [m] = modulesForLayer(layer) as [MaxPooling2DDerivatives];
      expectNoLeak(() => {
        // relu of mostly negative values: many all-zero windows; rounding makes more exact ties.
        const x = tf.tidy(() => tf.round(tf.relu(tf.randomNormal([3, ...c.inShape], -0.8, 1, 'float32', 5))));
        const rec = m.forward(x, { training: false });
        const want = bruteArgmax(x, c);
        expect(Array.from(rec.saved.argmax?.dataSync() ?? [])).toEqual(Array.from(want));
        tf.tidy(() => {
          expect(maxRelErr(rec.output, layer.apply(x) as tf.Tensor)).toBe(0);
        });
        // jacTMatProd = scatter-add of each output to its routed input (duplicates add up).
        const V = 2;
        const mat = tf.randomNormal([V, ...rec.output.shape], 0, 1, 'float32', 6);
        const mv = mat.dataSync();
        const inSize = x.size / 3;
        const P = want.length / 3;
        const ref = new Float64Array(V * x.size);
        for (let v = 0; v < V; v++)
          for (let n = 0; n < 3; n++)
            for (let p = 0; p < P; p++) ref[(v * 3 + n) * inSize + (want[n * P + p] as number)] += mv[(v * 3 + n) * P + p] as number;
        const got = m.jacTMatProd(rec, mat);
        expect(maxRelErr(got, ref)).toBeLessThan(1e-6);
        const vin = tf.randomNormal([V, ...x.shape], 0, 1, 'float32', 7);
        const vv = vin.dataSync();
        const refJ = new Float64Array(V * 3 * P);
        for (let v = 0; v < V; v++)
          for (let n = 0; n < 3; n++)
            for (let p = 0; p < P; p++) refJ[(v * 3 + n) * P + p] = vv[(v * 3 + n) * inSize + (want[n * P + p] as number)] as number;
        const gotJ = m.jacMatProd(rec, vin);
        expect(maxRelErr(gotJ, refJ)).toBe(0);
        tf.dispose([x, mat, got, vin, gotJ]);
        disposeRecord(rec);
      });
      layer.dispose();
    }
  });

  it('splits the index arithmetic into exact float32 chunks (stack entries, then samples)', () => {
    const c = CASES[1] as PoolingCase;
    const layer = buildLayer(c);
    const [m] = modulesForLayer(layer) as [MaxPooling2DDerivatives];
    const x = distinctInput([4, ...c.inShape], 8);
    const rec = m.forward(x, { training: false });
    const V = 3;
    const mat = tf.randomNormal([V, ...rec.output.shape], 0, 1, 'float32', 9);
    const vin = tf.randomNormal([V, ...x.shape], 0, 1, 'float32', 10);
    const whole = [m.jacTMatProd(rec, mat), m.jacMatProd(rec, vin)];
    const inSize = x.size / 4;
    // span = 9 rows ≥ N = 4: two stack entries per chunk; span = 3 rows < N: sample chunks.
    for (const rows of [9, 3]) {
      MaxPooling2DDerivatives.indexSpan = rows * inSize + 1;
      expectNoLeak(() => {
        const parts = [m.jacTMatProd(rec, mat), m.jacMatProd(rec, vin)];
        parts.forEach((p, i) => expect(maxRelErr(p, whole[i] as tf.Tensor), `rows ${rows} product ${i}`).toBe(0));
        tf.dispose(parts);
      });
    }
    MaxPooling2DDerivatives.indexSpan = inSize;
    expect(() => m.forward(x, { training: false })).toThrow(/entries per sample are not supported/);
    tf.dispose([x, mat, vin, ...whole]);
    disposeRecord(rec);
    layer.dispose();
  });

  it('gives the same results on wasm as on cpu (ties included)', async () => {
    for (const c of CASES.slice(0, 3)) {
      const layer = buildLayer(c);
      const [m] = modulesForLayer(layer) as [MaxPooling2DDerivatives];
      const x = tf.tidy(() => tf.relu(tf.randomNormal([2, ...c.inShape], -0.5, 1, 'float32', 31)));
      const V = 3;
      const mat = tf.randomNormal([V, 2, ...m.outputShape(c.inShape)], 0, 1, 'float32', 32);
      const vin = tf.randomNormal([V, 2, ...c.inShape], 0, 1, 'float32', 33);
      const run = () =>
        expectNoLeak(() => {
          const rec = m.forward(x, { training: false });
          const out = tf.tidy(() =>
            [rec.output, rec.saved.argmax as tf.Tensor, m.jacTMatProd(rec, mat), m.jacMatProd(rec, vin)].map((t) =>
              Array.from(t.dataSync()),
            ),
          );
          disposeRecord(rec);
          return out;
        });
      const cpu = run();
      const wasm = await onBackend('wasm', run);
      wasm.forEach((w, i) => expect(maxRelErr(w, cpu[i] as number[]), `${c.name} output ${i}`).toBe(0));
      tf.dispose([x, mat, vin]);
      layer.dispose();
    }
  });

  it('finds the same first maxima by ArgMax (wasm, cpu) and by the equality route (other backends)', async () => {
    // Ties (rounded relu) and all-negative windows at a 'same' border (the −FLT_MAX padding must never win).
    const inputs = (c: PoolingCase) => [
      tf.tidy(() => tf.round(tf.relu(tf.randomNormal([3, ...c.inShape], -0.8, 1, 'float32', 41)))),
      tf.tidy(() => tf.neg(tf.abs(tf.randomNormal([2, ...c.inShape], 0, 1, 'float32', 42)))),
    ];
    for (const c of CASES) {
      const layer = buildLayer(c);
      const [m] = modulesForLayer(layer) as [MaxPooling2DDerivatives];
      for (const x of inputs(c)) {
        const want = Array.from(bruteArgmax(x, c));
        const argmaxOf = () =>
          expectNoLeak(() => {
            const rec = m.forward(x, { training: false });
            const a = Array.from(rec.saved.argmax?.dataSync() ?? []);
            disposeRecord(rec);
            return a;
          });
        for (const backend of ['cpu', 'wasm']) {
          for (const routes of [['wasm', 'cpu'], []]) {
            MaxPooling2DDerivatives.firstArgMaxBackends = routes;
            expect(await onBackend(backend, argmaxOf), `${c.name} on ${backend}, ArgMax route ${routes.length > 0}`).toEqual(want);
          }
        }
        x.dispose();
      }
      layer.dispose();
    }
  });

  it('reads layer options and rejects unsupported ones', () => {
    const dflt = tf.layers.maxPooling2d({ inputShape: [6, 6, 1], poolSize: 3 });
    tf.sequential({ layers: [dflt] });
    const [m] = modulesForLayer(dflt) as [MaxPooling2DDerivatives];
    expect(m.options).toEqual({ poolSize: [3, 3], strides: [3, 3], padding: 'valid' });
    expect(m.outputShape([6, 6, 1])).toEqual([2, 2, 1]);
    const cf = tf.layers.maxPooling2d({ inputShape: [1, 6, 6], poolSize: 2, dataFormat: 'channelsFirst', name: 'mpcf' });
    tf.sequential({ layers: [cf] });
    expect(() => modulesForLayer(cf)).toThrow(/MaxPooling2D layer 'mpcf': option dataFormat 'channelsFirst' is not supported/);
    expect(() => new MaxPooling2DDerivatives({ poolSize: [2, 2], strides: [2, 2], padding: 'causal' as 'same' })).toThrow(
      /option padding 'causal'/,
    );
    const x = tf.zeros([2, 6, 6, 1]);
    const rec = m.forward(x, { training: false });
    const bad = tf.zeros([1, 2, 3, 3, 1]);
    expect(() => m.jacTMatProd(rec, bad)).toThrow(/expects a stack \[V, 2, 2, 2, 1\], got \[1, 2, 3, 3, 1\]/);
    tf.dispose([x, bad]);
    disposeRecord(rec);
    dflt.dispose();
  });
});
