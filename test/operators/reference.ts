/**
 * Independent references for operator tests: a model's loss written directly
 * as a function of the flat parameter vector θ in plain TF.js ops (Dense +
 * elementwise activations), its exact Hessian by double autodiff
 * (tf.grad of tf.grad), and its GGN from explicit per-sample Jacobians.
 * Float64 accumulation on the CPU where matrices are assembled.
 */
import * as tf from '@tensorflow/tfjs';
import type { LossKind } from '../helpers/autodiff';

export type { LossKind };

export interface MlpSpec {
  inputs: number;
  /** Units per Dense layer; the last one is the output. */
  units: number[];
  /** Activation after every hidden Dense layer. */
  activation: 'tanh' | 'relu' | 'sigmoid' | 'elu';
  loss: LossKind;
  reduction: 'mean' | 'sum';
}

export function buildMlp(spec: MlpSpec, seed = 1): tf.Sequential {
  const model = tf.sequential();
  spec.units.forEach((u, i) => {
    const last = i === spec.units.length - 1;
    model.add(
      tf.layers.dense({
        units: u,
        activation: last ? 'linear' : spec.activation,
        kernelInitializer: tf.initializers.glorotNormal({ seed: seed + i }),
        biasInitializer: tf.initializers.randomNormal({ stddev: 0.3, seed: seed + 100 + i }),
        ...(i === 0 ? { inputShape: [spec.inputs] } : {}),
      }),
    );
  });
  return model;
}

/**
 * exp(x) = sinh(x) + cosh(x). TF.js cannot differentiate twice through
 * kernels whose gradient reuses their saved output (exp, tanh, sigmoid, elu,
 * logSoftmax, max): the second tape loses the connection. sinh/cosh, div,
 * log and relu have input-based gradients, so everything below is written
 * with them (and is therefore also an independent implementation).
 */
export function exp2(x: tf.Tensor): tf.Tensor {
  return tf.add(tf.sinh(x), tf.cosh(x));
}

function act(name: string, x: tf.Tensor): tf.Tensor {
  switch (name) {
    case 'tanh':
      return tf.div(tf.sinh(x), tf.cosh(x));
    case 'relu':
      return tf.relu(x);
    case 'sigmoid':
      return tf.div(1, tf.add(1, exp2(tf.neg(x))));
    case 'elu':
      return tf.add(tf.relu(x), tf.sub(exp2(tf.neg(tf.relu(tf.neg(x)))), 1));
    default:
      return x;
  }
}

/** Model output from the flat θ (Dense layers in order, kernel then bias). */
export function forwardFlat(spec: MlpSpec, theta: tf.Tensor1D, x: tf.Tensor2D): tf.Tensor2D {
  let h: tf.Tensor = x;
  let off = 0;
  let fanIn = spec.inputs;
  spec.units.forEach((u, i) => {
    const W = tf.reshape(tf.slice(theta, off, fanIn * u), [fanIn, u]);
    off += fanIn * u;
    const b = tf.slice(theta, off, u);
    off += u;
    h = tf.add(tf.matMul(h as tf.Tensor2D, W as tf.Tensor2D), b);
    if (i < spec.units.length - 1) h = act(spec.activation, h);
    fanIn = u;
  });
  return h as tf.Tensor2D;
}

/** Per-sample unreduced loss s_n [N] (FORMAT.md §4), written in plain ops. */
export function sampleLosses(kind: LossKind, f: tf.Tensor2D, y: tf.Tensor): tf.Tensor1D {
  const C = f.shape[1];
  if (kind === 'mse') return tf.sum(tf.square(tf.sub(f, y)), 1);
  if (kind === 'softmaxCrossEntropy') {
    const onehot = y.rank === 1 ? tf.oneHot(tf.cast(y, 'int32'), C) : y;
    // log softmax = f − log Σ exp f (logits are small in the tests: no max shift needed)
    const logSoftmax = tf.sub(f, tf.log(tf.sum(exp2(f), 1, true)));
    return tf.neg(tf.sum(tf.mul(onehot, logSoftmax), 1)) as tf.Tensor1D;
  }
  // −log σ(f) = log(1 + e^{−f}), −log(1 − σ(f)) = f + log(1 + e^{−f})
  const sp = tf.log(tf.add(1, exp2(tf.neg(f))));
  return tf.sum(tf.add(tf.mul(y, sp), tf.mul(tf.sub(1, y), tf.add(f, sp))), 1);
}

/** Mean over data points of the single-sample loss (curvpack's operator definition). */
export function meanLoss(spec: MlpSpec, theta: tf.Tensor1D, x: tf.Tensor2D, y: tf.Tensor): tf.Scalar {
  const f = forwardFlat(spec, theta, x);
  const single = spec.reduction === 'mean' && spec.loss !== 'softmaxCrossEntropy' ? f.shape[1] : 1; // norm(1, C)
  return tf.div(tf.mean(sampleLosses(spec.loss, f, y)), single) as tf.Scalar;
}

export function flatParams(model: tf.LayersModel): tf.Tensor1D {
  return tf.tidy(() => tf.concat(model.trainableWeights.map((w) => tf.reshape(w.read(), [-1]))) as tf.Tensor1D);
}

/** Exact Hessian of `lossFn` at θ by double autodiff, row-major D×D float64. */
export function autodiffHessian(lossFn: (t: tf.Tensor1D) => tf.Scalar, theta: tf.Tensor1D): Float64Array {
  const D = theta.shape[0];
  const H = new Float64Array(D * D);
  const g = tf.grad((t: tf.Tensor) => lossFn(t as tf.Tensor1D));
  for (let i = 0; i < D; i++) {
    const col = tf.tidy(() => {
      const u = new Float32Array(D);
      u[i] = 1;
      const e = tf.tensor1d(u);
      return tf.grad((t: tf.Tensor) => tf.sum(tf.mul(g(t), e)))(theta);
    });
    const c = col.dataSync();
    for (let j = 0; j < D; j++) H[j * D + i] = c[j] as number;
    col.dispose();
  }
  return H;
}

/**
 * GGN (1/P) Σ_n J_nᵀ H_n J_n of the mean single-sample loss, from explicit
 * Jacobians J_n = ∂f_n/∂θ (autodiff, one gradient per output entry) and
 * the loss Hessian H_n w.r.t. f_n by double autodiff.
 */
export function explicitGgn(spec: MlpSpec, theta: tf.Tensor1D, x: tf.Tensor2D, y: tf.Tensor): Float64Array {
  const D = theta.shape[0];
  const N = x.shape[0];
  const G = new Float64Array(D * D);
  for (let n = 0; n < N; n++) {
    const xn = tf.slice(x, [n, 0], [1, -1]);
    const yn = tf.slice(y, n, 1);
    const f = forwardFlat(spec, theta, xn);
    const C = f.shape[1];
    const J: Float64Array[] = [];
    for (let c = 0; c < C; c++) {
      const row = tf.grad((t: tf.Tensor) => tf.slice(forwardFlat(spec, t as tf.Tensor1D, xn), [0, c], [1, 1]).sum())(theta);
      J.push(Float64Array.from(row.dataSync()));
      row.dispose();
    }
    const lossOfF = (ff: tf.Tensor) => {
      const s = sampleLosses(spec.loss, ff as tf.Tensor2D, yn);
      const single = spec.reduction === 'mean' && spec.loss !== 'softmaxCrossEntropy' ? C : 1;
      return tf.div(tf.sum(s), single) as tf.Scalar;
    };
    const Hf = autodiffHessian((t) => lossOfF(tf.reshape(t, [1, C])), tf.reshape(f, [C]) as tf.Tensor1D);
    for (let a = 0; a < C; a++) {
      for (let b = 0; b < C; b++) {
        const h = (Hf[a * C + b] as number) / N;
        if (h === 0) continue;
        const Ja = J[a] as Float64Array;
        const Jb = J[b] as Float64Array;
        for (let i = 0; i < D; i++) {
          const s = h * (Ja[i] as number);
          if (s === 0) continue;
          for (let j = 0; j < D; j++) G[i * D + j] += s * (Jb[j] as number);
        }
      }
    }
    tf.dispose([xn, yn, f]);
  }
  return G;
}

/** Per-sample gradients of the single-sample loss, rows [N, D] float64. */
export function perSampleGradients(spec: MlpSpec, theta: tf.Tensor1D, x: tf.Tensor2D, y: tf.Tensor): Float64Array[] {
  const N = x.shape[0];
  const out: Float64Array[] = [];
  for (let n = 0; n < N; n++) {
    const g = tf.tidy(() => {
      const xn = tf.slice(x, [n, 0], [1, -1]);
      const yn = tf.slice(y, n, 1);
      return tf.grad((t: tf.Tensor) => meanLoss(spec, t as tf.Tensor1D, xn, yn))(theta);
    });
    out.push(Float64Array.from(g.dataSync()));
    g.dispose();
  }
  return out;
}

export { maxRelErr } from '../conformance/compare';

/** Deterministic pseudo-random float32 data. */
export function randomTensor(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), scale);
}

export function classTargets(N: number, C: number, seed: number): tf.Tensor1D {
  const ids = new Int32Array(N);
  let s = seed;
  for (let i = 0; i < N; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    ids[i] = s % C;
  }
  return tf.tensor1d(ids, 'int32');
}

// ---------------------------------------------------------------------------
// Dense float64 algebra for references (independent of the operators).

/** Row-major float64 matrix from a seeded normal stream. */
export function gaussianMatrix(m: number, n: number, seed: number): Float64Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float64Array(m * n);
  for (let i = 0; i < out.length; i++) out[i] = Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
  return out;
}

/** Q diag(values) Qᵀ with a random orthogonal Q (Gram–Schmidt of a Gaussian matrix). */
export function symmetricWithSpectrum(values: readonly number[], seed: number): Float64Array {
  const n = values.length;
  const G = gaussianMatrix(n, n, seed);
  // Columns of Q: modified Gram–Schmidt on the columns of G.
  const Q = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = G[i * n + j] as number;
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < j; k++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += (Q[i * n + k] as number) * (v[i] as number);
        for (let i = 0; i < n; i++) v[i] = (v[i] as number) - d * (Q[i * n + k] as number);
      }
    }
    let nv = 0;
    for (let i = 0; i < n; i++) nv += (v[i] as number) ** 2;
    nv = Math.sqrt(nv);
    for (let i = 0; i < n; i++) Q[i * n + j] = (v[i] as number) / nv;
  }
  const M = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += (Q[i * n + k] as number) * (values[k] as number) * (Q[j * n + k] as number);
      M[i * n + j] = s;
    }
  }
  return M;
}

/** (M + λI)⁻¹ b for symmetric M by Gaussian elimination with partial pivoting (float64). */
export function denseSolve(M: ArrayLike<number>, n: number, lambda: number, b: ArrayLike<number>): Float64Array {
  const A = new Float64Array(n * (n + 1));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) A[i * (n + 1) + j] = (M[i * n + j] as number) + (i === j ? lambda : 0);
    A[i * (n + 1) + n] = b[i] as number;
  }
  const w = n + 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r * w + c] as number) > Math.abs(A[p * w + c] as number)) p = r;
    if (p !== c) for (let k = 0; k < w; k++) [A[c * w + k], A[p * w + k]] = [A[p * w + k] as number, A[c * w + k] as number];
    for (let r = c + 1; r < n; r++) {
      const f = (A[r * w + c] as number) / (A[c * w + c] as number);
      if (f === 0) continue;
      for (let k = c; k < w; k++) A[r * w + k] = (A[r * w + k] as number) - f * (A[c * w + k] as number);
    }
  }
  const x = new Float64Array(n);
  for (let r = n - 1; r >= 0; r--) {
    let s = A[r * w + n] as number;
    for (let k = r + 1; k < n; k++) s -= (A[r * w + k] as number) * (x[k] as number);
    x[r] = s / (A[r * w + r] as number);
  }
  return x;
}

/** Row-major product of m×k and k×n float64 matrices. */
export function matmul64(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) {
    const x = a[i * k + p] as number;
    if (x === 0) continue;
    for (let j = 0; j < n; j++) out[i * n + j] = (out[i * n + j] as number) + x * (b[p * n + j] as number);
  }
  return out;
}

/** Rows r0..r1 of a row-major matrix with n columns. */
export function rowsOf(a: ArrayLike<number>, n: number, r: number): Float64Array {
  return Float64Array.from({ length: n }, (_, j) => a[r * n + j] as number);
}

export { expectNoLeak, expectNoLeakAsync } from '../helpers/leaks';

/** Apply to a float64 vector through a float32 tensor and read back. */
export function applyF64(op: { apply(v: tf.Tensor): tf.Tensor }, v: ArrayLike<number>): Float64Array {
  const t = tf.tensor1d(Float32Array.from(v));
  const r = op.apply(t);
  const out = Float64Array.from(r.dataSync());
  tf.dispose([t, r]);
  return out;
}
