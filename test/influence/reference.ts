/**
 * Independent references for the influence tests: a Dense MLP written as a
 * function of the flat parameter vector θ (FORMAT.md §5 order) in plain
 * TF.js ops that TF.js can differentiate twice (tanh = sinh/cosh,
 * exp = sinh + cosh), and from TF.js autodiff (cpu backend):
 *
 *   g_j = ∇_θ ℓ_j                       single-sample loss (N = 1 normaliser)
 *   H   = ∇²_θ (1/P) Σ_j ℓ_j            double autodiff, one row per coordinate
 *   GGN = (1/P) Σ_j J_jᵀ H_j J_j         per-sample Jacobians, H_j in float64
 *   EF  = (1/P) Σ_j g_j g_jᵀ
 *
 * assembled in float64, and the influence g_testᵀ (M_bd + Λ)⁻¹ g_train with a
 * float64 Gaussian elimination (partial pivoting) — nothing from curvpack.
 */
import * as tf from '@tensorflow/tfjs';
import type { LossKind } from '../helpers/autodiff';
import { jacobiEigen as jacobiEigenRows } from '../helpers/ggnBruteForce';

export type { LossKind };

export interface MlpSpec {
  inputs: number;
  hidden: number;
  outputs: number;
  loss: LossKind;
  reduction: 'mean' | 'sum';
}

export interface Problem {
  spec: MlpSpec;
  model: tf.Sequential;
  xTrain: tf.Tensor2D;
  yTrain: tf.Tensor;
  xTest: tf.Tensor2D;
  yTest: tf.Tensor;
  dispose(): void;
}

/** Dense(hidden, tanh) → Dense(outputs), with random data (seeded). */
export function makeProblem(spec: MlpSpec, nTrain: number, nTest: number, seed = 1): Problem {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [spec.inputs], units: spec.hidden, activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed }), biasInitializer: tf.initializers.randomNormal({ stddev: 0.3, seed: seed + 1 }) }),
      tf.layers.dense({ units: spec.outputs, kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }), biasInitializer: tf.initializers.randomNormal({ stddev: 0.3, seed: seed + 3 }) }),
    ],
  });
  const targets = (n: number, s: number): tf.Tensor =>
    tf.tidy(() => {
      if (spec.loss === 'softmaxCrossEntropy') return tf.cast(tf.floor(tf.randomUniform([n], 0, spec.outputs, 'float32', s)), 'int32');
      if (spec.loss === 'sigmoidCrossEntropy') return tf.cast(tf.greater(tf.randomUniform([n, spec.outputs], 0, 1, 'float32', s), 0.5), 'float32');
      return tf.randomNormal([n, spec.outputs], 0, 1, 'float32', s);
    });
  const xTrain = tf.randomNormal([nTrain, spec.inputs], 0, 1, 'float32', seed + 10) as tf.Tensor2D;
  const xTest = tf.randomNormal([nTest, spec.inputs], 0, 1, 'float32', seed + 11) as tf.Tensor2D;
  const yTrain = targets(nTrain, seed + 12);
  const yTest = targets(nTest, seed + 13);
  return { spec, model, xTrain, yTrain, xTest, yTest, dispose: () => { tf.dispose([xTrain, xTest, yTrain, yTest]); model.dispose(); } };
}

/** The flat parameter vector θ of the model (kernel before bias, layer order, row-major). */
export function flatParams(model: tf.LayersModel): Float64Array {
  return Float64Array.from(model.trainableWeights.flatMap((w) => Array.from(w.read().dataSync())));
}

function exp2(x: tf.Tensor): tf.Tensor {
  return tf.add(tf.sinh(x), tf.cosh(x));
}

/** Model output f(θ, x) `[N, C]` in plain ops. */
export function forward(spec: MlpSpec, theta: tf.Tensor1D, x: tf.Tensor): tf.Tensor2D {
  const { inputs: I, hidden: H, outputs: C } = spec;
  const sizes = [I * H, H, H * C, C];
  const [W1, b1, W2, b2] = tf.split(theta, sizes);
  const z = tf.add(tf.matMul(x as tf.Tensor2D, tf.reshape(W1 as tf.Tensor, [I, H]) as tf.Tensor2D), b1 as tf.Tensor);
  const h = tf.div(tf.sinh(z), tf.cosh(z));
  return tf.add(tf.matMul(h as tf.Tensor2D, tf.reshape(W2 as tf.Tensor, [H, C]) as tf.Tensor2D), b2 as tf.Tensor) as tf.Tensor2D;
}

/** Σ_j s_j / norm(1, C): the sum of single-sample losses (FORMAT.md §4 with N = 1). */
export function sumOfSingleLosses(spec: MlpSpec, f: tf.Tensor2D, y: tf.Tensor): tf.Scalar {
  const C = spec.outputs;
  let s: tf.Tensor;
  if (spec.loss === 'mse') s = tf.sum(tf.square(tf.sub(f, y)));
  else if (spec.loss === 'softmaxCrossEntropy') {
    const onehot = tf.oneHot(tf.cast(y, 'int32'), C);
    s = tf.sum(tf.sub(tf.log(tf.sum(exp2(f), 1)), tf.sum(tf.mul(onehot, f), 1)));
  } else {
    // −y log σ − (1−y) log(1−σ) = log(1 + e^f) − y f
    s = tf.sum(tf.sub(tf.log(tf.add(1, exp2(f))), tf.mul(y, f)));
  }
  const norm1 = spec.reduction === 'sum' || spec.loss === 'softmaxCrossEntropy' ? 1 : C;
  return tf.div(s, norm1) as tf.Scalar;
}

export interface Reference {
  D: number;
  gTrain: Float64Array[];
  gTest: Float64Array[];
  hessian: Float64Array;
  ggn: Float64Array;
  empiricalFisher: Float64Array;
}

function rowOf(t: tf.Tensor): Float64Array {
  return Float64Array.from(t.dataSync());
}

/** Single-sample gradients of every row. */
export function sampleGradients(spec: MlpSpec, theta: tf.Tensor1D, x: tf.Tensor, y: tf.Tensor): Float64Array[] {
  const N = x.shape[0] as number;
  const out: Float64Array[] = [];
  for (let j = 0; j < N; j++) {
    const g = tf.tidy(() => {
      const xj = tf.slice(x, j, 1);
      const yj = tf.slice(y, j, 1);
      return tf.grad((t: tf.Tensor) => sumOfSingleLosses(spec, forward(spec, t as tf.Tensor1D, xj), yj))(theta);
    });
    out.push(rowOf(g));
    g.dispose();
  }
  return out;
}

/** Loss Hessian w.r.t. the output of one sample's single-sample loss (C×C, float64). */
function lossHessian(spec: MlpSpec, f: Float64Array, y: ArrayLike<number>): Float64Array {
  const C = f.length;
  const H = new Float64Array(C * C);
  if (spec.loss === 'mse') {
    const c = 2 / (spec.reduction === 'mean' ? C : 1);
    for (let i = 0; i < C; i++) H[i * C + i] = c;
  } else if (spec.loss === 'softmaxCrossEntropy') {
    const m = Math.max(...f);
    const e = Array.from(f, (v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    const p = e.map((v) => v / z);
    for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) H[i * C + j] = (i === j ? (p[i] as number) : 0) - (p[i] as number) * (p[j] as number);
  } else {
    const c = spec.reduction === 'mean' ? C : 1;
    for (let i = 0; i < C; i++) {
      const s = 1 / (1 + Math.exp(-(f[i] as number)));
      H[i * C + i] = (s * (1 - s)) / c;
    }
  }
  void y;
  return H;
}

export function buildReference(p: Problem, options: { hessian?: boolean } = {}): Reference {
  const spec = p.spec;
  const thetaData = flatParams(p.model);
  const D = thetaData.length;
  const theta = tf.tensor1d(Float32Array.from(thetaData));
  const P = p.xTrain.shape[0];
  const C = spec.outputs;
  try {
    const gTrain = sampleGradients(spec, theta, p.xTrain, p.yTrain);
    const gTest = sampleGradients(spec, theta, p.xTest, p.yTest);
    // Hessian of (1/P) Σ_j ℓ_j, one row per unit vector (double autodiff).
    const hessian = new Float64Array(D * D);
    const L = (t: tf.Tensor) => tf.div(sumOfSingleLosses(spec, forward(spec, t as tf.Tensor1D, p.xTrain), p.yTrain), P) as tf.Scalar;
    for (let i = 0; i < (options.hessian === false ? 0 : D); i++) {
      const row = tf.tidy(() => {
        const e = tf.oneHot(tf.tensor1d([i], 'int32'), D).reshape([D]);
        return tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.grad(L)(t), e)))(theta);
      });
      hessian.set(row.dataSync(), i * D);
      row.dispose();
    }
    // GGN from per-sample Jacobians J_j [C, D].
    const ggn = new Float64Array(D * D);
    const fAll = tf.tidy(() => forward(spec, theta, p.xTrain));
    const fData = fAll.dataSync();
    fAll.dispose();
    const yData = p.yTrain.dataSync();
    for (let j = 0; j < P; j++) {
      const J: Float64Array[] = [];
      for (let c = 0; c < C; c++) {
        const g = tf.tidy(() => {
          const xj = tf.slice(p.xTrain, j, 1);
          return tf.grad((t: tf.Tensor) => tf.sum(tf.slice(forward(spec, t as tf.Tensor1D, xj), [0, c], [1, 1])))(theta);
        });
        J.push(rowOf(g));
        g.dispose();
      }
      const H = lossHessian(spec, Float64Array.from(fData.subarray(j * C, (j + 1) * C)), yData);
      for (let a = 0; a < C; a++)
        for (let b = 0; b < C; b++) {
          const h = (H[a * C + b] as number) / P;
          if (h === 0) continue;
          const Ja = J[a] as Float64Array;
          const Jb = J[b] as Float64Array;
          for (let r = 0; r < D; r++) {
            const s = h * (Ja[r] as number);
            if (s === 0) continue;
            for (let q = 0; q < D; q++) ggn[r * D + q] = (ggn[r * D + q] as number) + s * (Jb[q] as number);
          }
        }
    }
    const empiricalFisher = new Float64Array(D * D);
    for (const g of gTrain) for (let r = 0; r < D; r++) for (let q = 0; q < D; q++) empiricalFisher[r * D + q] = (empiricalFisher[r * D + q] as number) + ((g[r] as number) * (g[q] as number)) / P;
    return { D, gTrain, gTest, hessian, ggn, empiricalFisher };
  } finally {
    theta.dispose();
  }
}

/** Solve A X = B (A n×n, B n×k, row-major float64) by Gaussian elimination with partial pivoting. */
export function solve(A: Float64Array, n: number, B: Float64Array, k: number): Float64Array {
  const a = Float64Array.from(A);
  const b = Float64Array.from(B);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r * n + c] as number) > Math.abs(a[piv * n + c] as number)) piv = r;
    if (piv !== c) {
      for (let q = 0; q < n; q++) [a[c * n + q], a[piv * n + q]] = [a[piv * n + q] as number, a[c * n + q] as number];
      for (let q = 0; q < k; q++) [b[c * k + q], b[piv * k + q]] = [b[piv * k + q] as number, b[c * k + q] as number];
    }
    const d = a[c * n + c] as number;
    if (d === 0) throw new Error('reference solve: singular matrix');
    for (let r = c + 1; r < n; r++) {
      const m = (a[r * n + c] as number) / d;
      if (m === 0) continue;
      for (let q = c; q < n; q++) a[r * n + q] = (a[r * n + q] as number) - m * (a[c * n + q] as number);
      for (let q = 0; q < k; q++) b[r * k + q] = (b[r * k + q] as number) - m * (b[c * k + q] as number);
    }
  }
  for (let c = n - 1; c >= 0; c--) {
    for (let q = 0; q < k; q++) {
      let s = b[c * k + q] as number;
      for (let r = c + 1; r < n; r++) s -= (a[c * n + r] as number) * (b[r * k + q] as number);
      b[c * k + q] = s / (a[c * n + c] as number);
    }
  }
  return b;
}

/**
 * Influence `[nTest, nTrain]` (row-major float64) with a block-diagonal M:
 * `blocks` lists the coordinates of each block and its λ; coordinates in no
 * block are left out.
 */
export function referenceInfluence(M: Float64Array, D: number, gTest: Float64Array[], gTrain: Float64Array[], blocks: { idx: number[]; lambda: number }[]): Float64Array {
  const out = new Float64Array(gTest.length * gTrain.length);
  for (const { idx, lambda } of blocks) {
    const n = idx.length;
    const A = new Float64Array(n * n);
    for (let r = 0; r < n; r++) for (let q = 0; q < n; q++) A[r * n + q] = (M[(idx[r] as number) * D + (idx[q] as number)] as number) + (r === q ? lambda : 0);
    const k = gTest.length;
    const B = new Float64Array(n * k);
    gTest.forEach((g, t) => idx.forEach((i, r) => (B[r * k + t] = g[i] as number)));
    const X = solve(A, n, B, k); // n×k
    gTest.forEach((_, t) =>
      gTrain.forEach((g, j) => {
        let s = 0;
        idx.forEach((i, r) => (s += (X[r * k + t] as number) * (g[i] as number)));
        out[t * gTrain.length + j] = (out[t * gTrain.length + j] as number) + s;
      }),
    );
  }
  return out;
}

export const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

export { maxRelErr } from '../conformance/compare';

/**
 * Symmetric eigenpairs by cyclic Jacobi (float64, helpers/ggnBruteForce.ts),
 * for choosing λ relative to the spectrum in tests: values ascending, the
 * eigenvectors as the columns of a row-major n×n matrix.
 */
export function jacobiEigen(A: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const e = jacobiEigenRows(A, n);
  const vectors = new Float64Array(n * n);
  e.vectors.forEach((v, j) => v.forEach((x, k) => (vectors[k * n + j] = x)));
  return { values: Float64Array.from(e.values), vectors };
}
