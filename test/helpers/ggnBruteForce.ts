/**
 * Brute-force GGN references for the ViViT hook tests, independent of
 * curvpack: per-sample Jacobians `J_n = ∂f_n/∂θ` from TF.js autodiff (one
 * `tf.variableGrads` per sample and output), BackPACK's loss factor `S_n`
 * written from FORMAT.md §4 in float64, per-sample loss gradients
 * `∂ℓ_n/∂f_n` from autodiff of the reference loss, explicit per-sample
 * kernel products, and a Jacobi eigensolver in float64 (also used by the
 * influence tests). Everything is flattened in the flat parameter order
 * (model.trainableWeights: layer order, kernel before bias, row-major).
 */
import * as tf from '@tensorflow/tfjs';
import { normalizer, referenceLoss, type LossKind } from './autodiff';

export interface BruteForce {
  N: number;
  C: number;
  D: number;
  /** Variable names in flat order. */
  names: string[];
  sizes: number[];
  shapes: number[][];
  /** `s[v][n]` = row v of S_n J_n (length D). */
  sqrt: Float64Array[][];
  /** Per-sample gradients ∂ℓ_n/∂θ (length D). */
  grads: Float64Array[];
  /** Σ_n grads[n]. */
  grad: Float64Array;
  /** GGN = Σ_{v,n} s s ᵀ, D×D row-major. */
  ggn: Float64Array;
}

/** Loss factor S_n (C×C row-major) of FORMAT.md §4. */
function lossFactor(kind: LossKind, f: Float64Array, norm: number): Float64Array {
  const C = f.length;
  const S = new Float64Array(C * C);
  if (kind === 'mse') {
    for (let c = 0; c < C; c++) S[c * C + c] = Math.sqrt(2 / norm);
  } else if (kind === 'softmaxCrossEntropy') {
    const m = Math.max(...f);
    const e = Array.from(f, (v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    const p = e.map((v) => v / z);
    for (let v = 0; v < C; v++) {
      for (let c = 0; c < C; c++) {
        S[v * C + c] = ((v === c ? Math.sqrt(p[c] as number) : 0) - Math.sqrt(p[v] as number) * (p[c] as number)) / Math.sqrt(norm);
      }
    }
  } else {
    for (let c = 0; c < C; c++) {
      const s = 1 / (1 + Math.exp(-(f[c] as number)));
      S[c * C + c] = Math.sqrt((s * (1 - s)) / norm);
    }
  }
  return S;
}

export function bruteForce(model: tf.LayersModel, kind: LossKind, reduction: 'mean' | 'sum', x: tf.Tensor, y: tf.Tensor): BruteForce {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const names = vars.map((v) => v.name);
  const sizes = vars.map((v) => v.size);
  const shapes = vars.map((v) => v.shape.slice());
  const D = sizes.reduce((a, b) => a + b, 0);
  const N = x.shape[0] as number;
  const fT = model.apply(x, { training: false }) as tf.Tensor2D;
  const C = fT.shape[1];
  const f = Float64Array.from(fT.dataSync());
  // ∂ℓ/∂f from autodiff of the reference loss (rows are ∂ℓ_n/∂f_n: ℓ is a sum over samples).
  const dl = tf.grad((out: tf.Tensor) => referenceLoss(kind, reduction, out as tf.Tensor2D, y))(fT);
  const dlv = Float64Array.from(dl.dataSync());
  tf.dispose([fT, dl]);
  const norm = normalizer(kind, reduction, N, C);
  const sqrt: Float64Array[][] = Array.from({ length: C }, () => []);
  const grads: Float64Array[] = [];
  for (let n = 0; n < N; n++) {
    const xn = tf.slice(x, n, 1);
    // J_n rows: ∂f_nc/∂θ
    const J: Float64Array[] = [];
    for (let c = 0; c < C; c++) {
      const { value, grads: g } = tf.variableGrads(() => tf.sum(tf.slice(model.apply(xn, { training: false }) as tf.Tensor2D, [0, c], [1, 1])) as tf.Scalar, vars);
      const row = new Float64Array(D);
      let off = 0;
      for (const v of vars) {
        row.set((g[v.name] as tf.Tensor).dataSync(), off);
        off += v.size;
      }
      J.push(row);
      tf.dispose([value, ...Object.values(g)]);
    }
    xn.dispose();
    const S = lossFactor(kind, f.subarray(n * C, (n + 1) * C), norm);
    for (let v = 0; v < C; v++) {
      const s = new Float64Array(D);
      for (let c = 0; c < C; c++) {
        const w = S[v * C + c] as number;
        if (w !== 0) for (let d = 0; d < D; d++) s[d] += w * ((J[c] as Float64Array)[d] as number);
      }
      (sqrt[v] as Float64Array[]).push(s);
    }
    const g = new Float64Array(D);
    for (let c = 0; c < C; c++) {
      const w = dlv[n * C + c] as number;
      for (let d = 0; d < D; d++) g[d] += w * ((J[c] as Float64Array)[d] as number);
    }
    grads.push(g);
  }
  const grad = new Float64Array(D);
  for (const g of grads) for (let d = 0; d < D; d++) grad[d] += g[d] as number;
  const ggn = new Float64Array(D * D);
  for (const row of sqrt) for (const s of row) addOuter(ggn, s, 1);
  return { N, C, D, names, sizes, shapes, sqrt, grads, grad, ggn };
}

/** M += w · s sᵀ. */
export function addOuter(M: Float64Array, s: Float64Array, w: number): void {
  const D = s.length;
  for (let i = 0; i < D; i++) {
    const si = w * (s[i] as number);
    if (si === 0) continue;
    for (let j = 0; j < D; j++) M[i * D + j] += si * (s[j] as number);
  }
}

/** Restrict a vector / matrix to the index set `idx` (a group's flat entries). */
export function restrictVec(v: Float64Array, idx: readonly number[]): Float64Array {
  return Float64Array.from(idx, (i) => v[i] as number);
}

export function restrictMat(M: Float64Array, D: number, idx: readonly number[]): Float64Array {
  const k = idx.length;
  const out = new Float64Array(k * k);
  idx.forEach((i, a) => idx.forEach((j, b) => (out[a * k + b] = M[i * D + j] as number)));
  return out;
}

/** Flat indices of the parameters `names` (a group) in flat order. */
export function groupIndices(bf: BruteForce, names: readonly string[]): number[] {
  const out: number[] = [];
  let off = 0;
  bf.names.forEach((nm, p) => {
    if (names.includes(nm)) for (let i = 0; i < (bf.sizes[p] as number); i++) out.push(off + i);
    off += bf.sizes[p] as number;
  });
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/** M v for a k×k row-major matrix. */
export function matVec(M: Float64Array, v: ArrayLike<number>): Float64Array {
  const k = v.length;
  const out = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += (M[i * k + j] as number) * (v[j] as number);
    out[i] = s;
  }
  return out;
}

/**
 * Per-sample kernel products `P[(v,m)] = Σ_t X[m,t] ⊗ D[v,m,t]` (`I·O`,
 * row-major; v-major list), with `bias` also the bias products
 * `Σ_t D[v,m,t]` appended, in float64 from X `[n, T, I]` and D `[V, n, T, O]`.
 */
export function perSampleKernelProducts(X: tf.Tensor3D, D: tf.Tensor4D, bias = false): Float64Array[] {
  const [n, T, I] = X.shape;
  const [V, , , O] = D.shape;
  const x = X.dataSync();
  const d = D.dataSync();
  const out: Float64Array[] = [];
  for (let v = 0; v < V; v++) {
    for (let m = 0; m < n; m++) {
      const P = new Float64Array(I * O + (bias ? O : 0));
      for (let t = 0; t < T; t++) {
        for (let o = 0; o < O; o++) {
          const dv = d[((v * n + m) * T + t) * O + o] as number;
          for (let i = 0; i < I; i++) P[i * O + o] += (x[(m * T + t) * I + i] as number) * dv;
          if (bias) P[I * O + o] += dv;
        }
      }
      out.push(P);
    }
  }
  return out;
}

/**
 * Cyclic Jacobi eigen-decomposition of a symmetric n×n matrix (float64):
 * values ascending, vectors[j] the unit eigenvector of values[j].
 */
export function jacobiEigen(a: ArrayLike<number>, n: number): { values: number[]; vectors: Float64Array[] } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += (A[i * n + i] as number) ** 2;
      for (let j = i + 1; j < n; j++) off += (A[i * n + j] as number) ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q] as number;
        if (apq === 0) continue;
        const theta = ((A[q * n + q] as number) - (A[p * n + p] as number)) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p] as number;
          const akq = A[k * n + q] as number;
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k] as number;
          const aqk = A[q * n + k] as number;
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p] as number;
          const vkq = V[k * n + q] as number;
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => (A[i * n + i] as number) - (A[j * n + j] as number));
  return {
    values: order.map((i) => A[i * n + i] as number),
    vectors: order.map((j) => Float64Array.from({ length: n }, (_, i) => V[i * n + j] as number)),
  };
}

/** A small seeded MLP `in → hidden (act) → out`. */
export function smallMlp(inputDim: number, hidden: number, out: number, activation: string, seed: number): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({
        inputShape: [inputDim],
        units: hidden,
        activation: activation as 'tanh',
        kernelInitializer: tf.initializers.glorotNormal({ seed }),
        biasInitializer: tf.initializers.randomNormal({ seed: seed + 1, stddev: 0.5 }),
      }),
      tf.layers.dense({
        units: out,
        kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }),
        biasInitializer: tf.initializers.randomNormal({ seed: seed + 3, stddev: 0.5 }),
      }),
    ],
  });
}

/** Targets for a loss kind (class ids for softmax CE). */
export function makeTargets(kind: LossKind, N: number, C: number, seed: number): tf.Tensor {
  if (kind === 'softmaxCrossEntropy') return tf.tensor1d(Array.from({ length: N }, (_, i) => (i * 7 + seed) % C), 'int32');
  if (kind === 'sigmoidCrossEntropy') return tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([N, C], 0, 1, 'float32', seed), 0.5), 'float32'));
  return tf.randomNormal([N, C], 0, 1, 'float32', seed);
}

/** Concatenate per-parameter tensors `[K, ...p]` into K flat vectors (float64). */
export function flattenRows(parts: readonly tf.Tensor[], K: number): Float64Array[] {
  const rows = Array.from({ length: K }, () => [] as number[]);
  for (const t of parts) {
    const d = t.dataSync();
    const per = t.size / Math.max(1, K);
    for (let k = 0; k < K; k++) for (let i = 0; i < per; i++) (rows[k] as number[]).push(d[k * per + i] as number);
  }
  return rows.map((r) => Float64Array.from(r));
}
