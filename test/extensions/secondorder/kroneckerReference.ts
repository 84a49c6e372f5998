/**
 * Independent float64 references for the Kronecker-factor tests, built from
 * TF.js autodiff on the tf.layers model (never from curvpack's engine):
 * per-sample Jacobians `J_n = ∂f_n/∂θ` via `tf.variableGrads`, loss Hessians
 * from the formulas of FORMAT.md §4, the exact GGN `Σ_n J_nᵀ H_n J_n`, layer
 * input Jacobians via `tf.grad` per output entry, and small dense matrix algebra.
 */
import * as tf from '@tensorflow/tfjs';
import { normalizer, type LossKind } from '../../helpers/autodiff';

export type { LossKind };
export { normalizer };
export type Mat = Float64Array; // row-major

export interface ParamSlice {
  name: string;
  offset: number;
  size: number;
  shape: number[];
}

/** Trainable parameters of a tf.layers model in flat order (layer order, kernel before bias). */
export function paramSlices(model: tf.LayersModel): ParamSlice[] {
  let offset = 0;
  return model.trainableWeights.map((w) => {
    const s = { name: w.name, offset, size: w.shape.reduce<number>((a, b) => a * (b as number), 1), shape: w.shape as number[] };
    offset += s.size;
    return s;
  });
}

/** Model outputs `f [N][C]` (float64 arrays). */
export function outputs(model: tf.LayersModel, x: tf.Tensor): number[][] {
  const f = tf.tidy(() => model.apply(x, { training: false }) as tf.Tensor2D);
  const out = f.arraySync();
  f.dispose();
  return out;
}

/** `J_n [C, D]` for every sample, by `tf.variableGrads` of each output entry of the single-sample batch. */
export function perSampleJacobians(model: tf.LayersModel, x: tf.Tensor): Mat[] {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const slices = paramSlices(model);
  const D = slices.reduce((s, p) => s + p.size, 0);
  const N = x.shape[0] as number;
  const Js: Mat[] = [];
  for (let n = 0; n < N; n++) {
    const xn = tf.slice(x, [n, ...x.shape.slice(1).map(() => 0)], [1, ...x.shape.slice(1).map(() => -1)]);
    const C = (model.outputs[0] as tf.SymbolicTensor).shape[1] as number;
    const J = new Float64Array(C * D);
    for (let c = 0; c < C; c++) {
      const { value, grads } = tf.variableGrads(
        () => tf.squeeze(tf.slice(model.apply(xn, { training: false }) as tf.Tensor2D, [0, c], [1, 1])) as tf.Scalar,
        vars,
      );
      vars.forEach((v, i) => {
        const g = (grads[v.name] as tf.Tensor).dataSync();
        const off = (slices[i] as ParamSlice).offset;
        for (let k = 0; k < g.length; k++) J[c * D + off + k] = g[k] as number;
      });
      tf.dispose([value, ...Object.values(grads)]);
    }
    xn.dispose();
    Js.push(J);
  }
  return Js;
}

function softmax(f: number[]): number[] {
  const m = Math.max(...f);
  const e = f.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** `H_n = ∇²_f ℓ_n` `[C, C]` from FORMAT.md §4. */
export function lossHessians(kind: LossKind, reduction: 'mean' | 'sum', f: number[][]): Mat[] {
  const N = f.length;
  const C = (f[0] as number[]).length;
  const norm = normalizer(kind, reduction, N, C);
  return f.map((fn) => {
    const H = new Float64Array(C * C);
    if (kind === 'mse') for (let c = 0; c < C; c++) H[c * C + c] = 2 / norm;
    else if (kind === 'softmaxCrossEntropy') {
      const p = softmax(fn);
      for (let a = 0; a < C; a++) for (let b = 0; b < C; b++) H[a * C + b] = ((a === b ? p[a] : 0) - p[a] * p[b]) / norm;
    } else {
      for (let c = 0; c < C; c++) {
        const s = sigmoid(fn[c]);
        H[c * C + c] = (s * (1 - s)) / norm;
      }
    }
    return H;
  });
}

/** `∇_f ℓ_n` `[C]` (targets: mse/sigmoid rows `[N][C]`, softmax class ids `[N]`). */
export function lossGradients(kind: LossKind, reduction: 'mean' | 'sum', f: number[][], y: number[] | number[][]): number[][] {
  const N = f.length;
  const C = (f[0] as number[]).length;
  const norm = normalizer(kind, reduction, N, C);
  return f.map((fn, n) => {
    if (kind === 'mse') return fn.map((v, c) => (2 * (v - (y[n] as number[])[c])) / norm);
    if (kind === 'softmaxCrossEntropy') return softmax(fn).map((p, c) => (p - (c === (y[n] as number) ? 1 : 0)) / norm);
    return fn.map((v, c) => (sigmoid(v) - (y[n] as number[])[c]) / norm);
  });
}

/** `Σ_n J_nᵀ M_n J_n` `[D, D]` (M_n `[C, C]`). */
export function sandwichSum(Js: Mat[], Ms: Mat[], C: number): Mat {
  const D = (Js[0] as Mat).length / C;
  const out = new Float64Array(D * D);
  Js.forEach((J, n) => {
    const M = Ms[n] as Mat;
    const MJ = matmul(M, J, C, C, D);
    const JtMJ = matmul(transpose(J, C, D), MJ, D, C, D);
    for (let i = 0; i < out.length; i++) out[i] += JtMJ[i];
  });
  return out;
}

/** The exact GGN `[D, D]` of the model on a batch. */
export function exactGgn(model: tf.LayersModel, x: tf.Tensor, kind: LossKind, reduction: 'mean' | 'sum'): { ggn: Mat; D: number; Js: Mat[]; f: number[][] } {
  const f = outputs(model, x);
  const C = (f[0] as number[]).length;
  const Js = perSampleJacobians(model, x);
  const ggn = sandwichSum(Js, lossHessians(kind, reduction, f), C);
  return { ggn, D: (Js[0] as Mat).length / C, Js, f };
}

/** Per-sample gradients `g_n = J_nᵀ ∇_f ℓ_n` `[N][D]`. */
export function perSampleGradients(Js: Mat[], grads: number[][], C: number): Float64Array[] {
  return Js.map((J, n) => {
    const D = J.length / C;
    const g = new Float64Array(D);
    const gf = grads[n] as number[];
    for (let c = 0; c < C; c++) for (let d = 0; d < D; d++) g[d] += J[c * D + d] * gf[c];
    return g;
  });
}

/** The `[size, size]` diagonal block of a `[D, D]` matrix at `offset`. */
export function block(M: Mat, D: number, offset: number, size: number): Mat {
  const out = new Float64Array(size * size);
  for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) out[i * size + j] = M[(offset + i) * D + offset + j];
  return out;
}

export function matmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Mat {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < k; l++) {
      const v = a[i * k + l] as number;
      if (v === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += v * (b[l * n + j] as number);
    }
  }
  return out;
}

export function transpose(a: ArrayLike<number>, m: number, n: number): Mat {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = a[i * n + j] as number;
  return out;
}

/** `kron(A [a, a], G [g, g])` `[a·g, a·g]`. */
export function kron(A: ArrayLike<number>, a: number, G: ArrayLike<number>, g: number): Mat {
  const n = a * g;
  const out = new Float64Array(n * n);
  for (let i = 0; i < a; i++)
    for (let j = 0; j < a; j++) {
      const aij = A[i * a + j] as number;
      for (let o = 0; o < g; o++) for (let p = 0; p < g; p++) out[(i * g + o) * n + j * g + p] = aij * (G[o * g + p] as number);
    }
  return out;
}

export function frobenius(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) ** 2;
  return Math.sqrt(s);
}

export function sub(a: ArrayLike<number>, b: ArrayLike<number>): Mat {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) - (b[i] as number);
  return out;
}

export { maxRelErr } from '../../conformance/compare';

/**
 * Input Jacobian of one layer for one sample, `[d_out, d_in]` (both flattened
 * in TF.js order), by `tf.grad` of each output entry of `layer.apply`.
 */
export function layerJacobian(layer: tf.layers.Layer, h: tf.Tensor): Mat {
  const dIn = h.size;
  const out = tf.tidy(() => layer.apply(h) as tf.Tensor);
  const dOut = out.size;
  out.dispose();
  const J = new Float64Array(dOut * dIn);
  for (let o = 0; o < dOut; o++) {
    const g = tf.tidy(() => tf.grad((z: tf.Tensor) => tf.sum(tf.mul(tf.reshape(layer.apply(z) as tf.Tensor, [dOut]), tf.oneHot(o, dOut))))(h));
    const gv = g.dataSync();
    for (let i = 0; i < dIn; i++) J[o * dIn + i] = gv[i] as number;
    g.dispose();
  }
  return J;
}

/** Inputs of every layer for the batch: `inputs[l]` `[N, ...]` (caller disposes). */
export function layerInputs(model: tf.LayersModel, x: tf.Tensor): tf.Tensor[] {
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const hs: tf.Tensor[] = [];
  let h = tf.clone(x);
  for (const l of layers) {
    hs.push(h);
    h = tf.tidy(() => l.apply(h) as tf.Tensor);
  }
  h.dispose();
  return hs;
}

/** Deterministic pseudo-random numbers for test data (independent of curvpack's Rng). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
}

/** A random symmetric PSD matrix `B Bᵀ` `[n, n]` of rank ≤ r. */
export function randomPsd(n: number, r: number, rand: () => number): Mat {
  const B = new Float64Array(n * r).map(() => rand());
  return matmul(B, transpose(B, n, r), n, r, n);
}

/** A sequential model from layer configs with deterministic weights (uniform in ±scale). */
export function makeModel(
  inputShape: number[],
  layers: ((first: { inputShape?: number[] }) => tf.layers.Layer)[],
  seed: number,
  scale = 0.8,
): tf.Sequential {
  const model = tf.sequential();
  layers.forEach((make, i) => model.add(make(i === 0 ? { inputShape } : {})));
  const rand = lcg(seed);
  for (const w of model.trainableWeights) {
    const v = w.read();
    const t = tf.tensor(Float32Array.from({ length: v.size }, () => 2 * scale * rand()), v.shape);
    w.write(t);
    t.dispose();
  }
  return model;
}

/** A float32 tensor of uniform values in ±scale. */
export function randomTensor(shape: number[], seed: number, scale = 1): tf.Tensor {
  const rand = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => 2 * scale * rand()), shape);
}

/** A random orthogonal `[n, n]` matrix (modified Gram–Schmidt on random columns). */
export function randomOrthogonal(n: number, rand: () => number): Mat {
  const Q = new Float64Array(n * n).map(() => rand());
  for (let j = 0; j < n; j++) {
    for (let k = 0; k < j; k++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += (Q[i * n + j] as number) * (Q[i * n + k] as number);
      for (let i = 0; i < n; i++) Q[i * n + j] -= dot * (Q[i * n + k] as number);
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += (Q[i * n + j] as number) ** 2;
    norm = Math.sqrt(norm);
    for (let i = 0; i < n; i++) Q[i * n + j] /= norm;
  }
  return Q;
}

/** `M v` for `M [n, n]`. */
export function matVec(M: ArrayLike<number>, v: ArrayLike<number>, n: number): Mat {
  return matmul(M, v, n, n, 1);
}

/** `Q diag(d) Qᵀ` with `Q = kron(UA, UG)` (UA absent: Q = UG). */
export function eigenbasisMatrix(UA: ArrayLike<number> | undefined, I: number, UG: ArrayLike<number>, O: number, d: ArrayLike<number>): Mat {
  const Q = UA ? kron(UA, I, UG, O) : Float64Array.from(UG as ArrayLike<number>);
  const n = I * O;
  const QD = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) QD[i * n + j] = (Q[i * n + j] as number) * (d[j] as number);
  return matmul(QD, transpose(Q, n, n), n, n, n);
}

/** `diag(Qᵀ B Q)` with `Q = kron(UA, UG)` (UA absent: Q = UG). */
export function diagInBasis(UA: ArrayLike<number> | undefined, I: number, UG: ArrayLike<number>, O: number, B: ArrayLike<number>): Mat {
  const Q = UA ? kron(UA, I, UG, O) : Float64Array.from(UG as ArrayLike<number>);
  const n = I * O;
  const BQ = matmul(B, Q, n, n, n);
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) for (let i = 0; i < n; i++) out[j] += (Q[i * n + j] as number) * (BQ[i * n + j] as number);
  return out;
}
