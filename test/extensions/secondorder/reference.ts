/**
 * Independent references for the second-order extension tests, from TF.js
 * autodiff on a functional re-implementation of small models (plain TF.js
 * ops: matMul, slices, elementwise ops — nothing from curvpack):
 *   - output Jacobians J_n (tf.grads of each output of each sample),
 *   - loss Hessians H_n and BackPACK's factors S_n (FORMAT.md §4, float64),
 *   - the GGN Σ_n J_nᵀ H_n J_n (float64),
 *   - Hessian diagonals by float64 central differences of a float64 forward
 *     pass (Richardson-extrapolated, see hessianDiagRef).
 * Conv2D and pooling are written as sums of shifted slices (stride 1) so that
 * their gradients exist on every backend (wasm has no Conv2DBackpropFilter).
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { maxRelErr } from '../../conformance/compare';
import { normalizer, type LossKind } from '../../helpers/autodiff';
import type { BackwardResult } from '../../../src/engine/results';
import type { Extension } from '../../../src/engine/extension';
import { extend, type ExtendedModel } from '../../../src/engine/extend';

export type Act = 'tanh' | 'sigmoid' | 'relu' | 'elu' | 'linear';
export type { LossKind };
export type Reduction = 'mean' | 'sum';

export type LayerSpec =
  | { dense: number; activation?: Act }
  | { act: Act }
  | { conv: { filters: number; kernel: number; padding: 'valid' | 'same' }; activation?: Act }
  | { avgPool: number }
  | { flatten: true };

export interface ProblemSpec {
  /** Input shape without the batch axis: `[features]` or `[H, W, C]`. */
  inputShape: number[];
  layers: LayerSpec[];
  N: number;
  loss: LossKind;
  reduction: Reduction;
  seed: number;
  /** Scale of the random weights (default 0.6). */
  weightScale?: number;
}

/** Deterministic pseudo-random numbers (LCG + Box–Muller), independent of curvpack's Rng. */
export function randn(n: number, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

export interface Problem {
  spec: ProblemSpec;
  model: tf.Sequential;
  ext: ExtendedModel;
  x: tf.Tensor;
  /** Targets as passed to curvpack (class ids `[N]` int32 for softmax CE). */
  y: tf.Tensor;
  /** Targets as `[N, C]` floats for the reference loss. */
  yRows: tf.Tensor2D;
  /** Parameter values in flat order (kernel, bias per layer). */
  params: tf.Tensor[];
  shapes: number[][];
  sizes: number[];
  N: number;
  C: number;
  D: number;
  dispose(): void;
}

function applyAct(a: Act, x: tf.Tensor): tf.Tensor {
  switch (a) {
    case 'tanh':
      return tf.tanh(x);
    case 'sigmoid':
      return tf.div(1, tf.add(1, tf.exp(tf.neg(x))));
    // Comparisons have no gradients in TF.js; tf.step does (zero).
    case 'relu':
      return tf.mul(x, tf.step(x));
    case 'elu': {
      // x > 0 ? x : eˣ − 1, as x·s + (e^{x(1−s)} − 1)(1 − s) with s = step(x)
      const s = tf.step(x);
      const neg = tf.sub(1, s);
      return tf.add(tf.mul(x, s), tf.mul(tf.sub(tf.exp(tf.mul(x, neg)), 1), neg));
    }
    case 'linear':
      return x;
  }
}

/** Stride-1 convolution as a sum of shifted slices times kernel slices. */
function convRef(x: tf.Tensor4D, W: tf.Tensor4D, b: tf.Tensor1D, padding: 'valid' | 'same'): tf.Tensor4D {
  const [kh, kw, ci, co] = W.shape;
  let xp = x;
  if (padding === 'same') {
    const ph = (kh - 1) / 2;
    const pw = (kw - 1) / 2;
    xp = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]]);
  }
  const [N, H, Wd] = xp.shape;
  const Ho = H - kh + 1;
  const Wo = Wd - kw + 1;
  let acc: tf.Tensor = tf.zeros([N * Ho * Wo, co]);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const patch = tf.reshape(tf.slice(xp, [0, i, j, 0], [N, Ho, Wo, ci]), [N * Ho * Wo, ci]);
      const w = tf.reshape(tf.slice(W, [i, j, 0, 0], [1, 1, ci, co]), [ci, co]);
      acc = tf.add(acc, tf.matMul(patch, w));
    }
  }
  return tf.reshape(tf.add(acc, b), [N, Ho, Wo, co]);
}

/** Non-overlapping average pooling (pool = stride = p) via a reshape. */
function avgPoolRef(x: tf.Tensor4D, p: number): tf.Tensor4D {
  const [N, H, W, C] = x.shape;
  const Ho = Math.floor(H / p);
  const Wo = Math.floor(W / p);
  const cropped = tf.slice(x, [0, 0, 0, 0], [N, p * Ho, p * Wo, C]);
  return tf.mean(tf.reshape(cropped, [N, Ho, p, Wo, p, C]), [2, 4]) as tf.Tensor4D;
}

/** The functional forward pass `f(params, x)` → `[n, C]`. */
export function forwardRef(spec: ProblemSpec, params: readonly tf.Tensor[], x: tf.Tensor): tf.Tensor2D {
  let h = x;
  let k = 0;
  for (const l of spec.layers) {
    if ('dense' in l) {
      h = tf.add(tf.matMul(h as tf.Tensor2D, params[k] as tf.Tensor2D), params[k + 1] as tf.Tensor);
      k += 2;
      if (l.activation) h = applyAct(l.activation, h);
    } else if ('conv' in l) {
      h = convRef(h as tf.Tensor4D, params[k] as tf.Tensor4D, params[k + 1] as tf.Tensor1D, l.conv.padding);
      k += 2;
      if (l.activation) h = applyAct(l.activation, h);
    } else if ('act' in l) h = applyAct(l.act, h);
    else if ('avgPool' in l) h = avgPoolRef(h as tf.Tensor4D, l.avgPool);
    else h = tf.reshape(h, [h.shape[0] as number, -1]);
  }
  return h as tf.Tensor2D;
}

export function makeProblem(spec: ProblemSpec): Problem {
  const scale = spec.weightScale ?? 0.6;
  const model = tf.sequential();
  let seed = spec.seed * 1000;
  spec.layers.forEach((l, i) => {
    const base = i === 0 ? { inputShape: spec.inputShape } : {};
    if ('dense' in l) model.add(tf.layers.dense({ ...base, units: l.dense, activation: l.activation ?? 'linear' }));
    else if ('conv' in l) {
      model.add(
        tf.layers.conv2d({
          ...base,
          filters: l.conv.filters,
          kernelSize: l.conv.kernel,
          padding: l.conv.padding,
          activation: l.activation ?? 'linear',
        }),
      );
    } else if ('act' in l) model.add(tf.layers.activation({ ...base, activation: l.act }));
    else if ('avgPool' in l) model.add(tf.layers.averagePooling2d({ ...base, poolSize: l.avgPool, strides: l.avgPool }));
    else model.add(tf.layers.flatten(base));
  });
  const params: tf.Tensor[] = [];
  for (const layer of model.layers) {
    if (layer.weights.length === 0) continue;
    const values = layer.weights.map((w) => {
      const fanIn = w.shape.length > 1 ? w.shape.slice(0, -1).reduce((a, b) => (a as number) * (b as number), 1) : 4;
      const v = randn(w.shape.reduce((a, b) => (a as number) * (b as number), 1) as number, seed++);
      return tf.mul(tf.tensor(v, w.shape as number[]), scale / Math.sqrt(fanIn as number) * 1.5);
    });
    layer.setWeights(values);
    params.push(...values);
  }
  const N = spec.N;
  const inSize = spec.inputShape.reduce((a, b) => a * b, 1);
  const x = tf.tensor(randn(N * inSize, seed++), [N, ...spec.inputShape]);
  const C = (model.outputs[0] as tf.SymbolicTensor).shape[1] as number;
  let y: tf.Tensor;
  let yRows: tf.Tensor2D;
  const r = randn(N * C, seed++);
  if (spec.loss === 'mse') {
    y = tf.tensor2d(r, [N, C]);
    yRows = y.clone() as tf.Tensor2D;
  } else if (spec.loss === 'softmaxCrossEntropy') {
    const ids = Array.from({ length: N }, (_, n) => Math.floor(Math.abs((r[n] as number) * 1000)) % C);
    y = tf.tensor1d(ids, 'int32');
    yRows = tf.oneHot(y as tf.Tensor1D, C).toFloat() as tf.Tensor2D;
  } else {
    y = tf.tensor2d(Array.from(r, (v) => (v > 0 ? 1 : 0)), [N, C]);
    yRows = y.clone() as tf.Tensor2D;
  }
  const ext = extend(model, { loss: spec.loss, reduction: spec.reduction });
  const shapes = params.map((p) => p.shape);
  const sizes = params.map((p) => p.size);
  return {
    spec,
    model,
    ext,
    x,
    y,
    yRows,
    params,
    shapes,
    sizes,
    N,
    C,
    D: sizes.reduce((a, b) => a + b, 0),
    dispose: () => {
      tf.dispose([x, y, yRows, ...params]);
      model.dispose();
    },
  };
}

/** Build the problem of `spec`, run `check` on it and dispose it (also when `check` throws). */
export function withProblem<T>(spec: ProblemSpec, check: (p: Problem) => T): T {
  const p = makeProblem(spec);
  try {
    return check(p);
  } finally {
    p.dispose();
  }
}

/** Model outputs `f [N, C]` as float64 rows. */
export function outputsRef(p: Problem): number[][] {
  const f = tf.tidy(() => forwardRef(p.spec, p.params, p.x));
  const v = Array.from(f.dataSync());
  f.dispose();
  return Array.from({ length: p.N }, (_, n) => v.slice(n * p.C, (n + 1) * p.C));
}

/** Output Jacobians `J[n][c]` as flat-parameter vectors (length D), via tf.grads per output and sample. */
export function jacobiansRef(p: Problem): number[][][] {
  const J: number[][][] = [];
  for (let n = 0; n < p.N; n++) {
    const xn = tf.slice(p.x, [n], [1]);
    const rows: number[][] = [];
    for (let c = 0; c < p.C; c++) {
      const gs = tf.grads((...ps: tf.Tensor[]) => tf.slice(forwardRef(p.spec, ps, xn), [0, c], [1, 1]).sum())(p.params);
      rows.push(gs.flatMap((g) => Array.from(g.dataSync())));
      tf.dispose(gs);
    }
    xn.dispose();
    J.push(rows);
  }
  return J;
}

/** Loss Hessians H_n (C×C) and BackPACK's factors S_n (rows v), FORMAT.md §4, in float64. */
export function lossCurvatureRef(p: Problem): { H: number[][][]; S: number[][][] } {
  const f = outputsRef(p);
  const norm = normalizer(p.spec.loss, p.spec.reduction, p.N, p.C);
  const H: number[][][] = [];
  const S: number[][][] = [];
  const C = p.C;
  for (let n = 0; n < p.N; n++) {
    const fn = f[n] as number[];
    const h: number[][] = Array.from({ length: C }, () => new Array<number>(C).fill(0));
    const s: number[][] = Array.from({ length: C }, () => new Array<number>(C).fill(0));
    if (p.spec.loss === 'mse') {
      for (let c = 0; c < C; c++) {
        (h[c] as number[])[c] = 2 / norm;
        (s[c] as number[])[c] = Math.sqrt(2 / norm);
      }
    } else if (p.spec.loss === 'softmaxCrossEntropy') {
      const m = Math.max(...fn);
      const e = fn.map((v) => Math.exp(v - m));
      const z = e.reduce((a, b) => a + b, 0);
      const pr = e.map((v) => v / z);
      for (let v = 0; v < C; v++) {
        for (let c = 0; c < C; c++) {
          (h[v] as number[])[c] = ((v === c ? (pr[c] as number) : 0) - (pr[v] as number) * (pr[c] as number)) / norm;
          (s[v] as number[])[c] =
            ((v === c ? Math.sqrt(pr[c] as number) : 0) - Math.sqrt(pr[v] as number) * (pr[c] as number)) / Math.sqrt(norm);
        }
      }
    } else {
      for (let c = 0; c < C; c++) {
        const sg = 1 / (1 + Math.exp(-(fn[c] as number)));
        (h[c] as number[])[c] = (sg * (1 - sg)) / norm;
        (s[c] as number[])[c] = Math.sqrt((sg * (1 - sg)) / norm);
      }
    }
    H.push(h);
    S.push(s);
  }
  return { H, S };
}

/** Per-sample GGN `J_nᵀ H_n J_n` (D×D, float64), one per sample. */
export function perSampleGgnRef(p: Problem, J: number[][][], H: number[][][]): Float64Array[] {
  const D = p.D;
  return J.map((Jn, n) => {
    const Hn = H[n] as number[][];
    // HJ = H_n J_n (C×D)
    const HJ = Hn.map((row) => {
      const out = new Float64Array(D);
      row.forEach((h, c) => {
        const jc = Jn[c] as number[];
        for (let d = 0; d < D; d++) out[d] = (out[d] as number) + h * (jc[d] as number);
      });
      return out;
    });
    const G = new Float64Array(D * D);
    for (let c = 0; c < p.C; c++) {
      const jc = Jn[c] as number[];
      const hc = HJ[c] as Float64Array;
      for (let a = 0; a < D; a++) {
        const ja = jc[a] as number;
        if (ja === 0) continue;
        for (let b = 0; b < D; b++) G[a * D + b] = (G[a * D + b] as number) + ja * (hc[b] as number);
      }
    }
    return G;
  });
}

export function sumMatrices(ms: readonly Float64Array[]): Float64Array {
  const out = new Float64Array((ms[0] as Float64Array).length);
  for (const m of ms) for (let i = 0; i < m.length; i++) out[i] = (out[i] as number) + (m[i] as number);
  return out;
}

/** The block of a D×D matrix for parameter i, flattened `[size_i, size_i]`. */
export function block(p: Problem, M: Float64Array, i: number): Float64Array {
  const off = p.sizes.slice(0, i).reduce((a, b) => a + b, 0);
  const s = p.sizes[i] as number;
  const out = new Float64Array(s * s);
  for (let a = 0; a < s; a++) for (let b = 0; b < s; b++) out[a * s + b] = M[(off + a) * p.D + off + b] as number;
  return out;
}

export function diagOf(M: Float64Array, D: number): Float64Array {
  const out = new Float64Array(D);
  for (let i = 0; i < D; i++) out[i] = M[i * D + i] as number;
  return out;
}

/** Slice of a flat-parameter vector for parameter i. */
export function paramSlice(p: Problem, v: ArrayLike<number>, i: number): number[] {
  const off = p.sizes.slice(0, i).reduce((a, b) => a + b, 0);
  return Array.from({ length: p.sizes[i] as number }, (_, k) => v[off + k] as number);
}

/** One sample's activations in float64 with its shape (no batch axis). */
interface Act64 {
  v: Float64Array;
  shape: number[];
}

function act64(a: Act, x: number): number {
  switch (a) {
    case 'tanh':
      return Math.tanh(x);
    case 'sigmoid':
      return 1 / (1 + Math.exp(-x));
    case 'relu':
      return x > 0 ? x : 0;
    case 'elu':
      return x > 0 ? x : Math.exp(x) - 1;
    case 'linear':
      return x;
  }
}

/**
 * The model output of one sample in float64, from plain loops (Dense
 * `x·W + b` with W `[in, out]`; stride-1 Conv2D with kernel
 * `[kh, kw, inC, outC]`, NHWC; non-overlapping average pooling; flatten in
 * HWC order). `theta` is the flat parameter vector (FORMAT.md §5).
 */
export function forward64(
  spec: ProblemSpec,
  theta: Float64Array,
  sizes: readonly number[],
  x: Float64Array,
  onKinkInput?: (z: number) => void,
): Float64Array {
  let h: Act64 = { v: x, shape: [...spec.inputShape] };
  let off = 0;
  let k = 0;
  const take = () => {
    const t = theta.subarray(off, off + (sizes[k] as number));
    off += sizes[k] as number;
    k++;
    return t;
  };
  const activate = (a: Act | undefined) => {
    if (!a) return;
    if (onKinkInput && (a === 'relu' || a === 'elu')) h.v.forEach((z) => onKinkInput(z));
    h = { v: h.v.map((z) => act64(a, z)), shape: h.shape };
  };
  for (const l of spec.layers) {
    if ('dense' in l) {
      const W = take();
      const b = take();
      const I = h.v.length;
      const O = l.dense;
      const out = new Float64Array(O);
      for (let o = 0; o < O; o++) {
        let z = b[o] as number;
        for (let i = 0; i < I; i++) z += (h.v[i] as number) * (W[i * O + o] as number);
        out[o] = z;
      }
      h = { v: out, shape: [O] };
      activate(l.activation);
    } else if ('conv' in l) {
      const W = take();
      const b = take();
      const [H, Wd, ci] = h.shape as [number, number, number];
      const kk = l.conv.kernel;
      const co = l.conv.filters;
      const pad = l.conv.padding === 'same' ? (kk - 1) / 2 : 0;
      const Ho = H + 2 * pad - kk + 1;
      const Wo = Wd + 2 * pad - kk + 1;
      const out = new Float64Array(Ho * Wo * co);
      for (let i = 0; i < Ho; i++) {
        for (let j = 0; j < Wo; j++) {
          for (let o = 0; o < co; o++) {
            let z = b[o] as number;
            for (let di = 0; di < kk; di++) {
              for (let dj = 0; dj < kk; dj++) {
                const r = i + di - pad;
                const c = j + dj - pad;
                if (r < 0 || r >= H || c < 0 || c >= Wd) continue;
                for (let q = 0; q < ci; q++) {
                  z += (h.v[(r * Wd + c) * ci + q] as number) * (W[((di * kk + dj) * ci + q) * co + o] as number);
                }
              }
            }
            out[(i * Wo + j) * co + o] = z;
          }
        }
      }
      h = { v: out, shape: [Ho, Wo, co] };
      activate(l.activation);
    } else if ('act' in l) activate(l.act);
    else if ('avgPool' in l) {
      const p = l.avgPool;
      const [H, Wd, C] = h.shape as [number, number, number];
      const Ho = Math.floor(H / p);
      const Wo = Math.floor(Wd / p);
      const out = new Float64Array(Ho * Wo * C);
      for (let i = 0; i < Ho; i++)
        for (let j = 0; j < Wo; j++)
          for (let c = 0; c < C; c++) {
            let z = 0;
            for (let di = 0; di < p; di++) for (let dj = 0; dj < p; dj++) z += h.v[((i * p + di) * Wd + j * p + dj) * C + c] as number;
            out[(i * Wo + j) * C + c] = z / (p * p);
          }
      h = { v: out, shape: [Ho, Wo, C] };
    } else h = { v: h.v, shape: [h.v.length] };
  }
  return h.v;
}

/** `s_n / norm` of one sample in float64 (FORMAT.md §4). */
export function sampleLoss64(loss: LossKind, f: Float64Array, y: ArrayLike<number>, norm: number): number {
  let s = 0;
  if (loss === 'mse') for (let c = 0; c < f.length; c++) s += ((f[c] as number) - (y[c] as number)) ** 2;
  else if (loss === 'softmaxCrossEntropy') {
    const m = Math.max(...f);
    const lse = m + Math.log(f.reduce((a, v) => a + Math.exp(v - m), 0));
    for (let c = 0; c < f.length; c++) s -= (y[c] as number) * ((f[c] as number) - lse);
  } else {
    for (let c = 0; c < f.length; c++) {
      const z = f[c] as number;
      s += Math.max(z, 0) - z * (y[c] as number) + Math.log1p(Math.exp(-Math.abs(z)));
    }
  }
  return s / norm;
}

/** Float64 data of a problem: flat θ, per-sample inputs and target rows. */
export function data64(p: Problem): { theta: Float64Array; xs: Float64Array[]; ys: Float64Array[] } {
  const theta = Float64Array.from(p.params.flatMap((t) => Array.from(t.dataSync())));
  const xv = p.x.dataSync();
  const yv = p.yRows.dataSync();
  const inSize = xv.length / p.N;
  const xs = Array.from({ length: p.N }, (_, n) => Float64Array.from(xv.subarray(n * inSize, (n + 1) * inSize)));
  const ys = Array.from({ length: p.N }, (_, n) => Float64Array.from(yv.subarray(n * p.C, (n + 1) * p.C)));
  return { theta, xs, ys };
}

/** `Σ_{n ∈ rows} ℓ_n(θ)` in float64. */
export function lossOfRows64(p: Problem, theta: Float64Array, rows: readonly number[], d = data64(p)): number {
  const norm = normalizer(p.spec.loss, p.spec.reduction, p.N, p.C);
  let s = 0;
  for (const n of rows) s += sampleLoss64(p.spec.loss, forward64(p.spec, theta, p.sizes, d.xs[n] as Float64Array), d.ys[n] as number[] & Float64Array, norm);
  return s;
}

/**
 * Diagonal of the Hessian of `Σ_{n ∈ rows} ℓ_n` (normalised with the whole
 * batch) w.r.t. the flat parameters, from second differences of the float64
 * loss with Richardson extrapolation:
 *   D(h) = (L(θ + h e_d) − 2 L(θ) + L(θ − h e_d)) / h²,  H_dd ≈ (4 D(h) − D(2h)) / 3,
 * truncation O(h⁴ L⁽⁶⁾) ≈ 1e-12 and rounding ≈ 6·ε₆₄·|L|/h² ≈ 1e-9·|L| for
 * h = 1e-3, far below float32 precision.
 *
 * (Nested tf.grad is not usable as a reference: TF.js treats saved op
 * outputs — tanh, sigmoid, exp — and customGrad ops — logSoftmax — as
 * constants in second derivatives, which gives wrong Hessians.)
 */
export function hessianDiagRef(p: Problem, rows?: readonly number[]): Float64Array {
  const idx = rows ?? Array.from({ length: p.N }, (_, n) => n);
  const d64 = data64(p);
  const theta = d64.theta;
  const h = 1e-3;
  // The float64 model must be the TF.js model, and no relu/elu input may lie
  // within reach of the steps (±2h per parameter moves pre-activations by
  // far less than 0.05 here), or the second differences would straddle a kink.
  const f32 = outputsRef(p);
  let closest = Infinity;
  idx.forEach((n) => {
    const f = forward64(p.spec, theta, p.sizes, d64.xs[n] as Float64Array, (z) => {
      closest = Math.min(closest, Math.abs(z));
    });
    expectClose(f, f32[n] as number[], 1e-5, `float64 forward of sample ${n} vs TF.js`);
  });
  expect(closest, 'a relu/elu input is too close to the kink for second differences; change the seed').toBeGreaterThan(0.05);
  const L = (t: Float64Array) => lossOfRows64(p, t, idx, d64);
  const L0 = L(theta);
  const out = new Float64Array(p.D);
  const t = Float64Array.from(theta);
  const second = (d: number, step: number) => {
    t[d] = (theta[d] as number) + step;
    const lp = L(t);
    t[d] = (theta[d] as number) - step;
    const lm = L(t);
    t[d] = theta[d] as number;
    return (lp - 2 * L0 + lm) / (step * step);
  };
  for (let d = 0; d < p.D; d++) out[d] = (4 * second(d, h) - second(d, 2 * h)) / 3;
  return out;
}

/** Every parameter's result of an extension, reshaped to `[lead, size]` and concatenated: `[lead, D]` as float64 rows. */
export function flatResults(p: Problem, r: BackwardResult, ext: Extension<tf.TensorContainer> | string, lead: number): Float64Array[] {
  const list = r.list(ext as string) as (tf.Tensor | undefined)[];
  const parts = list.map((t, i) => {
    if (t === undefined) throw new Error(`no result for parameter ${i}`);
    return Array.from(t.dataSync());
  });
  return Array.from({ length: lead }, (_, l) => {
    const out: number[] = [];
    parts.forEach((a, i) => {
      const s = p.sizes[i] as number;
      out.push(...a.slice(l * s, (l + 1) * s));
    });
    return Float64Array.from(out);
  });
}

export { maxRelErr };

/** Assert a relative error (FORMAT.md §8 metric) below `tol`, naming what is compared. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  const e = maxRelErr(actual, expected);
  expect(e, `${what}: max rel err ${e.toExponential(2)} > ${tol}`).toBeLessThanOrEqual(tol);
}

export { expectNoLeak } from '../../helpers/leaks';

/**
 * With `subsampling: samples`, `sub` gives `full`'s result sliced to those
 * samples along the sample axis (0 for per-sample results `[n, ...]`, 1 for
 * stacks `[V, n, ...]`), for every parameter: same shape, values to `tol`.
 */
export function expectSubsampledSlices(
  p: Problem,
  r: BackwardResult,
  full: Extension<tf.Tensor>,
  sub: Extension<tf.Tensor>,
  samples: readonly number[],
  axis: 0 | 1,
  tol: number,
  what = 'subsampled parameter',
): void {
  p.params.forEach((_, i) => {
    const sliced = tf.gather(r.get(full, i), samples as number[], axis);
    try {
      expect(r.get(sub, i).shape).toEqual(sliced.shape);
      expectClose(r.get(sub, i).dataSync(), sliced.dataSync(), tol, `${what} ${i}`);
    } finally {
      sliced.dispose();
    }
  });
}

export const LOSSES: readonly LossKind[] = ['mse', 'softmaxCrossEntropy', 'sigmoidCrossEntropy'];
export const REDUCTIONS: readonly Reduction[] = ['mean', 'sum'];

/**
 * Mean and standard error of the mean of per-draw estimates `X_m` (each a
 * vector of K entries): the Monte-Carlo extensions average M iid unbiased
 * draws, so by the central limit theorem `mean ~ N(exact, se²)`.
 */
export function meanAndStdErr(draws: readonly Float64Array[]): { mean: Float64Array; se: Float64Array } {
  const M = draws.length;
  const K = (draws[0] as Float64Array).length;
  const mean = new Float64Array(K);
  const sq = new Float64Array(K);
  for (const x of draws) {
    for (let k = 0; k < K; k++) {
      mean[k] = (mean[k] as number) + (x[k] as number) / M;
      sq[k] = (sq[k] as number) + ((x[k] as number) * (x[k] as number)) / M;
    }
  }
  const se = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    const variance = Math.max(0, ((sq[k] as number) - (mean[k] as number) ** 2) * (M / (M - 1)));
    se[k] = Math.sqrt(variance / M);
  }
  return { mean, se };
}

/**
 * Monte-Carlo agreement: every entry within `z` standard errors of the
 * exact value, plus a float32 slack of 1e-5·max|exact|; and the test has
 * power: `z·se` stays below `power`·max|exact| (so a systematic error of
 * that relative size would be caught).
 */
export function expectWithinStdErr(
  estimate: ArrayLike<number>,
  exact: ArrayLike<number>,
  se: ArrayLike<number>,
  z: number,
  what: string,
  power = 0.1,
): void {
  expect(estimate.length).toBe(exact.length);
  let scale = 0;
  for (let k = 0; k < exact.length; k++) scale = Math.max(scale, Math.abs(exact[k] as number));
  let worst = 0;
  let widest = 0;
  for (let k = 0; k < exact.length; k++) {
    const dev = Math.abs((estimate[k] as number) - (exact[k] as number)) / (z * (se[k] as number) + 1e-5 * scale);
    worst = Math.max(worst, dev);
    widest = Math.max(widest, z * (se[k] as number));
  }
  expect(worst, `${what}: an entry deviates by ${worst.toFixed(2)}× the allowed ${z} standard errors`).toBeLessThanOrEqual(1);
  expect(widest / scale, `${what}: the Monte-Carlo tolerance is too wide to detect errors`).toBeLessThan(power);
}
