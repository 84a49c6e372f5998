/**
 * Kernel/bias products of modules that are linear in their weights
 * (Dense, Conv2D), written on the unfolded input `X [N, T, I]` and an output
 * stack folded to patches `D [V, N, T, O]`:
 *
 *   per-sample kernel product  G[v, n] = Σ_t X[n,t]ᵀ ⊗ D[v,n,t]   ([I, O])
 *   per-sample bias product    b[v, n] = Σ_t D[v,n,t]              ([O])
 *
 * Kernel rules (wasm): only 2-D `matMul` without transpose flags on hot
 * paths; transposes are explicit; batches are folded into rows; loops over
 * samples only around large matMuls. Dense layers (T = 1) take broadcast
 * fast paths that never form per-sample matrices when not needed.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * The rows of `t` along axis 0 as N separate tensors (the caller disposes them).
 *
 * On the host-memory backends (wasm, cpu) this reads t once and uploads the
 * rows: TF.js 4.22's wasm Slice (and Unpack/SplitV, built on it) copies the
 * WHOLE input out of the wasm heap on every call, so N slices cost N times
 * the tensor (measured: 32 rows of a [32, 784, 320] tensor, 460 ms with
 * tf.slice, 240 ms with tf.gather, 15 ms read + upload). The read is a
 * memory copy there, not a device synchronisation. Other backends use
 * tf.unstack.
 */
export function unstackRows(t: tf.Tensor): tf.Tensor[] {
  const backend = tf.getBackend();
  if (backend !== 'wasm' && backend !== 'cpu') return tf.unstack(t);
  const N = t.shape[0] as number;
  const rest = t.shape.slice(1);
  const size = N === 0 ? 0 : t.size / N;
  const data = t.dataSync();
  const rows: tf.Tensor[] = [];
  for (let n = 0; n < N; n++) rows.push(tf.tensor(data.subarray(n * size, (n + 1) * size), rest, t.dtype));
  return rows;
}

/** `Xᵀ` as `[N, I, T]` (explicit transpose, for per-sample `X_nᵀ D_n`). */
function transposePatches(X: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(X, [0, 2, 1]);
}

/** `D [V, N, T, O] → [N, T, V·O]` (per-sample right-hand sides, V folded into columns). */
function samplesMajor(D: tf.Tensor4D): tf.Tensor3D {
  const [V, N, T, O] = D.shape;
  if (V === 1) return tf.reshape(D, [N, T, O]);
  return tf.tidy(() => tf.reshape(tf.transpose(D, [1, 2, 0, 3]), [N, T, V * O]));
}

/**
 * Summed kernel product `Σ_n Σ_t X[n,t]ᵀ D[v,n,t]` → `[V, I, O]`
 * (the gradient for V = 1). One 2-D matMul over the N·T rows, transposing
 * the narrower operand: `Xᵀ [I, N·T] × D [N·T, V·O]` when I ≤ V·O, else
 * `(Dᵀ [V·O, N·T] × X [N·T, I])ᵀ` (conv patches are wide: I = kh·kw·inC).
 */
export function summedKernelProduct(X: tf.Tensor3D, D: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const [N, T, I] = X.shape;
    const [V, , , O] = D.shape;
    const Xm = tf.reshape(X, [N * T, I]);
    if (I <= V * O) {
      const Dm = tf.reshape(samplesMajor(D), [N * T, V * O]);
      const P = tf.matMul(tf.transpose(Xm), Dm); // [I, V·O]
      if (V === 1) return tf.reshape(P, [1, I, O]);
      return tf.transpose(tf.reshape(P, [I, V, O]), [1, 0, 2]);
    }
    // D [V, N, T, O] → [V, O, N·T] (per v: Dᵀ), one matMul → [V·O, I] → [V, I, O].
    const Dt = tf.reshape(tf.transpose(tf.reshape(D, [V, N * T, O]), [0, 2, 1]), [V * O, N * T]);
    const P = tf.matMul(Dt, Xm); // [V·O, I]
    return tf.transpose(tf.reshape(P, [V, O, I]), [0, 2, 1]);
  });
}

/** Summed bias product `Σ_n Σ_t D[v,n,t]` → `[V, O]`. */
export function summedBiasProduct(D: tf.Tensor4D): tf.Tensor2D {
  return tf.sum(D, [1, 2]);
}

/** Per-sample bias product `Σ_t D[v,n,t]` → `[V, N, O]`. */
export function perSampleBiasProduct(D: tf.Tensor4D): tf.Tensor3D {
  return tf.sum(D, 2);
}

/**
 * Per-sample kernel products `X_nᵀ D[v,n]` → `[V, N, I, O]`.
 * T = 1: a broadcast outer product; else one `[I, T] × [T, V·O]` matMul per sample.
 */
export function perSampleKernelProduct(X: tf.Tensor3D, D: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [N, T, I] = X.shape;
    const [V, , , O] = D.shape;
    if (T === 1) {
      const x = tf.reshape(X, [1, N, I, 1]);
      const d = tf.reshape(D, [V, N, 1, O]);
      return tf.mul(x, d) as tf.Tensor4D;
    }
    const Xt = unstackRows(transposePatches(X)); // N × [I, T]
    const Ds = unstackRows(samplesMajor(D)); // N × [T, V·O]
    const per = Xt.map((xt, n) => tf.matMul(xt, Ds[n] as tf.Tensor2D)); // N × [I, V·O]
    const stacked = tf.reshape(tf.stack(per), [N, I, V, O]);
    return tf.transpose(stacked, [2, 0, 1, 3]) as tf.Tensor4D;
  });
}

/**
 * Calls `consume(n, P_n)` with each sample's kernel products
 * `P_n = [X_nᵀ D[0,n], …, X_nᵀ D[V-1,n]]` as `[I, V, O]`; the tensors passed
 * are disposed after `consume` returns. For reductions over samples that
 * must not materialise `[V, N, I, O]` at once.
 */
export function forEachSampleKernelProduct(
  X: tf.Tensor3D,
  D: tf.Tensor4D,
  consume: (n: number, P: tf.Tensor3D) => void,
): void {
  const [N, , I] = X.shape;
  const [V, , , O] = D.shape;
  const [xs, ds] = tf.tidy(() => [unstackRows(transposePatches(X)), unstackRows(samplesMajor(D))]);
  try {
    for (let n = 0; n < N; n++) {
      tf.tidy(() => {
        const P = tf.reshape(tf.matMul(xs[n] as tf.Tensor2D, ds[n] as tf.Tensor2D), [I, V, O]) as tf.Tensor3D;
        consume(n, P);
      });
      tf.dispose([xs[n] as tf.Tensor, ds[n] as tf.Tensor]);
    }
  } finally {
    tf.dispose([...xs, ...ds]);
  }
}

/**
 * `Σ_v Σ_n (X_nᵀ D[v,n])²` (element-wise square) → `[I, O]`.
 * DiagGGN, SumGradSquared, DiagHessian. T = 1: one matMul `(X²)ᵀ (Σ_v D²)`.
 */
export function sumSquaredKernelProduct(X: tf.Tensor3D, D: tf.Tensor4D): tf.Tensor2D {
  const [N, T, I] = X.shape;
  const O = D.shape[3];
  if (T === 1) {
    return tf.tidy(() => {
      const x2t = tf.transpose(tf.square(tf.reshape(X, [N, I])));
      const d2 = tf.reshape(tf.sum(tf.square(D), 0), [N, O]);
      return tf.matMul(x2t, d2);
    });
  }
  let acc: tf.Tensor2D = tf.zeros([I, O]);
  forEachSampleKernelProduct(X, D, (_n, P) => {
    const next = tf.add(acc, tf.sum(tf.square(P), 1)) as tf.Tensor2D;
    acc.dispose();
    acc = tf.keep(next);
  });
  // `acc` is kept (it escaped the per-sample scopes): hand back an ordinary tensor.
  const out = tf.clone(acc);
  acc.dispose();
  return out;
}

/**
 * Per-sample `Σ_v (X_nᵀ D[v,n])²` → `[N, I, O]` (BatchDiagGGN, BatchDiagHessian).
 */
export function perSampleSumSquaredKernelProduct(X: tf.Tensor3D, D: tf.Tensor4D): tf.Tensor3D {
  const [N, T, I] = X.shape;
  const O = D.shape[3];
  if (T === 1) {
    return tf.tidy(() => {
      const x2 = tf.reshape(tf.square(X), [N, I, 1]);
      const d2 = tf.reshape(tf.sum(tf.square(D), 0), [N, 1, O]);
      return tf.mul(x2, d2) as tf.Tensor3D;
    });
  }
  const parts: tf.Tensor2D[] = [];
  forEachSampleKernelProduct(X, D, (_n, P) => {
    parts.push(tf.keep(tf.sum(tf.square(P), 1) as tf.Tensor2D));
  });
  const out = tf.stack(parts) as tf.Tensor3D;
  tf.dispose(parts);
  return out;
}

/**
 * Squared Frobenius norms `‖X_nᵀ D[v,n]‖²` → `[V, N]` (BatchL2Grad).
 * T = 1: `‖x_n‖² ‖d_vn‖²` without forming the outer product. Otherwise the
 * cheaper of `Σ (X_n X_nᵀ) ⊙ (D_vn D_vnᵀ)` (T² per pair) and the explicit
 * per-sample product (I·O per pair).
 */
export function perSampleSquaredNorm(X: tf.Tensor3D, D: tf.Tensor4D): tf.Tensor2D {
  const [N, T, I] = X.shape;
  const [V, , , O] = D.shape;
  if (T === 1) {
    return tf.tidy(() => {
      const x2 = tf.reshape(tf.sum(tf.square(X), [1, 2]), [1, N]);
      const d2 = tf.sum(tf.square(D), [2, 3]);
      return tf.mul(x2, d2) as tf.Tensor2D;
    });
  }
  const cols: tf.Tensor1D[] = [];
  if (T * T * (I + V * O) < I * V * O * T) {
    // Gram route: ‖X_nᵀ d‖² = Σ_o d_oᵀ (X_n X_nᵀ) d_o, for all v at once:
    // sum over (t, o) of ((X_n X_nᵀ) D_n) ⊙ D_n with D_n [T, V·O].
    const [xs, ds] = tf.tidy(() => [unstackRows(X), unstackRows(samplesMajor(D))]);
    try {
      for (let n = 0; n < N; n++) {
        cols.push(
          tf.tidy(() => {
            const xn = xs[n] as tf.Tensor2D; // [T, I]
            const dn = ds[n] as tf.Tensor2D; // [T, V·O]
            const gx = tf.matMul(xn, tf.transpose(xn)); // [T, T]
            const m = tf.mul(tf.matMul(gx, dn), dn); // [T, V·O]
            return tf.sum(tf.reshape(m, [T, V, O]), [0, 2]) as tf.Tensor1D;
          }),
        );
        tf.dispose([xs[n] as tf.Tensor, ds[n] as tf.Tensor]);
      }
    } finally {
      tf.dispose([...xs, ...ds]);
    }
  } else {
    forEachSampleKernelProduct(X, D, (_n, P) => {
      cols.push(tf.keep(tf.sum(tf.square(P), [0, 2]) as tf.Tensor1D));
    });
  }
  const out = tf.stack(cols, 1) as tf.Tensor2D; // [V, N]
  tf.dispose(cols);
  return out;
}
