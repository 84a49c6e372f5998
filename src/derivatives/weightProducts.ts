/**
 * Kernel/bias products of modules that are linear in their weights
 * (Dense, Conv2D), written on the unfolded input `X [N, T, I]` and an output
 * stack folded to patches `D [V, N, T, O]`:
 *
 *   per-sample kernel product  G[v, n] = Σ_t X[n,t]ᵀ ⊗ D[v,n,t]   ([I, O])
 *   per-sample bias product    b[v, n] = Σ_t D[v,n,t]              ([O])
 *
 * Kernel rules (wasm): only 2-D `matMul` without transpose flags on hot
 * paths; transposes are explicit and 2-D where possible; batches are folded
 * into rows; loops over samples only around large matMuls. Dense layers
 * (T = 1) take broadcast fast paths that never form per-sample matrices when
 * not needed.
 *
 * Costs on wasm (TF.js 4.22, XNNPACK, one thread) that shape the code:
 * - `matMul(A, B)` packs B on every call (~1–2 ns per entry, unless B is the
 *   same tensor as in an earlier call), then runs at ~35–40 GFLOP/s: keep
 *   the packed operand B the smaller one.
 * - `tf.sum` over a non-innermost axis transposes first; sums over a
 *   leading or middle axis are one average pool instead (`sumAxis1`).
 * - 3-D transposes that move the innermost axis (`[B, M, K] → [B, K, M]`)
 *   are several times slower than the 2-D transpose of the same data.
 */
import * as tf from '@tensorflow/tfjs';

/** What `unstackRows` needs of the wasm backend (structural: no import of the backend package). */
interface WasmHeapBackend {
  readonly wasm: { readonly HEAPU8: Uint8Array };
  getMemoryOffset(dataId: object): number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

function wasmHeapBackend(): WasmHeapBackend | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const b = tf.backend() as unknown as Partial<WasmHeapBackend>;
  return typeof b.getMemoryOffset === 'function' && typeof b.makeOutput === 'function' && b.wasm?.HEAPU8 !== undefined
    ? (b as WasmHeapBackend)
    : undefined;
}

/** Whether t's data lives on this wasm heap (not, e.g., still on the backend that created it). */
function onHeap(heap: WasmHeapBackend, t: tf.Tensor): boolean {
  try {
    return Number.isInteger(heap.getMemoryOffset(t.dataId));
  } catch {
    return false;
  }
}

/**
 * The rows of `t` along axis 0 as N separate tensors (the caller disposes them).
 *
 * TF.js 4.22's wasm Slice (and Unpack/SplitV, built on it) copies the WHOLE
 * input out of the wasm heap on every call, so N slices cost N times the
 * tensor (measured: 32 rows of a [32, 784, 320] tensor, 460 ms with
 * tf.slice, 240 ms with tf.gather). On wasm each row is allocated on the
 * heap and filled by one `copyWithin` (a memmove inside the heap; no copy
 * through JS). On cpu the data is read once and the rows uploaded (a memory
 * copy there, not a device synchronisation). Other backends use tf.unstack.
 */
export function unstackRows(t: tf.Tensor): tf.Tensor[] {
  const N = t.shape[0] as number;
  const rest = t.shape.slice(1);
  const blocks = rowBlocks(t, Array.from({ length: N + 1 }, (_, n) => n));
  const rows = blocks.map((b) => tf.reshape(b, rest)); // shares the data
  tf.dispose(blocks);
  return rows;
}

/**
 * Blocks of consecutive rows (axis 0) of `t`: block k holds rows
 * `bounds[k] .. bounds[k + 1] − 1` (bounds increasing, from 0 to the row
 * count). Copies as `unstackRows` does (wasm: one memmove per block).
 */
export function rowBlocks(t: tf.Tensor, bounds: readonly number[]): tf.Tensor[] {
  const backend = tf.getBackend();
  const N = t.shape[0] as number;
  const rest = t.shape.slice(1);
  const size = N === 0 ? 0 : t.size / N;
  const heap = wasmHeapBackend();
  const blocks: tf.Tensor[] = [];
  if (heap !== undefined && t.dtype !== 'string' && onHeap(heap, t)) {
    const rowBytes = size * tf.util.bytesPerElement(t.dtype);
    for (let k = 0; k + 1 < bounds.length; k++) {
      const r0 = bounds[k] as number;
      const r1 = bounds[k + 1] as number;
      const info = heap.makeOutput([r1 - r0, ...rest], t.dtype); // may grow the heap: read offsets and HEAPU8 afterwards
      const src = heap.getMemoryOffset(t.dataId) + r0 * rowBytes;
      heap.wasm.HEAPU8.copyWithin(heap.getMemoryOffset(info.dataId), src, src + (r1 - r0) * rowBytes);
      blocks.push(tf.engine().makeTensorFromTensorInfo(info));
    }
    return blocks;
  }
  if (backend !== 'wasm' && backend !== 'cpu') {
    for (let k = 0; k + 1 < bounds.length; k++) {
      const r0 = bounds[k] as number;
      blocks.push(tf.slice(t, r0, (bounds[k + 1] as number) - r0));
    }
    return blocks;
  }
  const data = t.dataSync();
  for (let k = 0; k + 1 < bounds.length; k++) {
    const r0 = bounds[k] as number;
    const r1 = bounds[k + 1] as number;
    blocks.push(tf.tensor(data.subarray(r0 * size, r1 * size), [r1 - r0, ...rest], t.dtype));
  }
  return blocks;
}

/** Rows per block of the contraction in `gram` (wasm's GEMM slows down with a long shared axis). */
const GRAM_BLOCK_ROWS = 1024;

/**
 * `XᵀX` `[I, I]` for `X [R, I]`, with plain 2-D matMuls. Long inputs
 * (R > 2048) are contracted in row blocks of ≤ 1024 rows and the block
 * products added: wasm's GEMM streams the whole shared axis per output tile
 * (measured, `[6272, 800]`: 250–330 ms in one product, 210 ms in blocks).
 */
export function gram(X: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const R = X.shape[0];
    if (R <= 2 * GRAM_BLOCK_ROWS) return tf.matMul(tf.transpose(X), X);
    const k = Math.ceil(R / GRAM_BLOCK_ROWS);
    const bounds = Array.from({ length: k + 1 }, (_, j) => Math.round((j * R) / k));
    const products = rowBlocks(X, bounds).map((b) => tf.matMul(tf.transpose(b as tf.Tensor2D), b as tf.Tensor2D));
    return tf.addN(products) as tf.Tensor2D;
  });
}

/** Most channels per average pool: XNNPACK's multipass average pooling keeps one row of channels on the (small) wasm stack. */
const POOL_CHANNELS = 1024;

/** The largest divisor of R that is ≤ max. */
function largestDivisor(R: number, max: number): number {
  for (let c = Math.min(R, max); c > 1; c--) if (R % c === 0) return c;
  return 1;
}

/**
 * `Σ_l t[a, l, :]`: `t [A, L, R] → [A, R]`, as ONE average pool over L
 * (times L): t viewed as `[A, L, R/c, c]` (c ≤ 1024 channels, a divisor of
 * R), window `[L, 1]`. wasm's Sum over a non-innermost axis transposes the
 * whole tensor first (5–30× slower here); `ones × t` matMuls pack t (~3–10×
 * slower). The scaling 1/L · L adds at most two roundings. Falls back to
 * tf.sum when R has no divisor between 8 and 1024.
 */
export function sumAxis1(t: tf.Tensor3D): tf.Tensor2D {
  const [A, L, R] = t.shape;
  if (L === 1) return tf.reshape(t, [A, R]);
  const c = largestDivisor(R, POOL_CHANNELS);
  if (c < 8) return tf.sum(t, 1);
  return tf.tidy(() => {
    const avg = tf.avgPool(tf.reshape(t, [A, L, R / c, c]) as tf.Tensor4D, [L, 1], 1, 'valid');
    return tf.reshape(tf.mul(avg, L), [A, R]);
  });
}

/** `Σ_l t[l]`: `t [L, ...rest] → [...rest]` (`sumAxis1` of `[1, L, R]`). */
export function sumLeadingAxis(t: tf.Tensor): tf.Tensor {
  const L = t.shape[0] as number;
  const rest = t.shape.slice(1);
  if (L === 1) return tf.reshape(t, rest);
  return tf.tidy(() => tf.reshape(sumAxis1(tf.reshape(t, [1, L, t.size / L]) as tf.Tensor3D), rest));
}

/** `Σ_t t[b, t, :]`: `t [B, T, O] → [B, O]` (the positions of a patch stack; `sumAxis1`). */
export function sumPositions(t: tf.Tensor3D): tf.Tensor2D {
  return sumAxis1(t);
}

/** `t [A, V, O] → Σ_v t[:, v, :]` `[A, O]` (`sumAxis1`). */
function sumMiddleAxis(t: tf.Tensor3D): tf.Tensor2D {
  return sumAxis1(t);
}

/** `D [V, N, T, O] → [N, T, V·O]` (per-sample right-hand sides, V folded into columns). */
function samplesMajor(D: tf.Tensor4D): tf.Tensor3D {
  const [V, N, T, O] = D.shape;
  if (V === 1) return tf.reshape(D, [N, T, O]);
  return tf.tidy(() => tf.reshape(tf.transpose(D, [1, 2, 0, 3]), [N, T, V * O]));
}

/** 2-D transpose of `[B, M, K]` as `[B, K, M]` (a plain 2-D transpose when B = 1). */
function transposeInner(t: tf.Tensor3D): tf.Tensor3D {
  const [B, M, K] = t.shape;
  if (B === 1) return tf.tidy(() => tf.reshape(tf.transpose(tf.reshape(t, [M, K])), [1, K, M]));
  return tf.transpose(t, [0, 2, 1]);
}

/**
 * Summed kernel product `Σ_n Σ_t X[n,t]ᵀ D[v,n,t]` → `[V, I, O]`
 * (the gradient for V = 1). One 2-D matMul over the N·T rows, with the
 * cheaper set of explicit transposes (entries moved):
 *   (a) `Xᵀ [I, N·T] × D [N·T, V·O]`: X (N·T·I), and for V > 1 D to samples-major and the result;
 *   (b) `Dᵀ [V·O, N·T] × X [N·T, I]`, then the result transposed: N·T·V·O + V·O·I.
 * Dense layers with few rows take (a); conv patches are wide (I = kh·kw·inC)
 * and take (b) (Conv2D's own `summedKernelProduct` avoids the patches).
 */
export function summedKernelProduct(X: tf.Tensor3D, D: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const [N, T, I] = X.shape;
    const [V, , , O] = D.shape;
    const R = N * T;
    const Xm = tf.reshape(X, [R, I]) as tf.Tensor2D;
    const costA = R * I + (V > 1 ? R * V * O + I * V * O : 0);
    const costB = R * V * O + I * V * O;
    if (costA <= costB) {
      const Dm = tf.reshape(samplesMajor(D), [R, V * O]) as tf.Tensor2D;
      const P = tf.matMul(tf.transpose(Xm), Dm); // [I, V·O]
      if (V === 1) return tf.reshape(P, [1, I, O]);
      return tf.transpose(tf.reshape(P, [I, V, O]), [1, 0, 2]);
    }
    // D [V, N·T, O] → Dᵀ [V·O, N·T]; one matMul → [V·O, I] → [V, I, O].
    const Dt = tf.reshape(transposeInner(tf.reshape(D, [V, R, O]) as tf.Tensor3D), [V * O, R]);
    const P = tf.matMul(Dt, Xm); // [V·O, I]
    return transposeInner(tf.reshape(P, [V, O, I]) as tf.Tensor3D);
  });
}

/** Summed bias product `Σ_n Σ_t D[v,n,t]` → `[V, O]` (one average pool over the N·T rows). */
export function summedBiasProduct(D: tf.Tensor4D): tf.Tensor2D {
  const [V, N, T, O] = D.shape;
  return tf.tidy(() => sumPositions(tf.reshape(D, [V, N * T, O]) as tf.Tensor3D));
}

/** Per-sample bias product `Σ_t D[v,n,t]` → `[V, N, O]`. */
export function perSampleBiasProduct(D: tf.Tensor4D): tf.Tensor3D {
  const [V, N, T, O] = D.shape;
  return tf.tidy(() => tf.reshape(sumPositions(tf.reshape(D, [V * N, T, O]) as tf.Tensor3D), [V, N, O]));
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
    const layout = sampleLayout(I, V, O);
    const per: tf.Tensor[] = [];
    forEachSample(X, D, layout, (_n, P) => {
      per.push(tf.keep(P));
    });
    const stacked = tf.stack(per); // [N, I, V, O] or [N, V, O, I]
    tf.dispose(per);
    if (layout === 'VOI') return tf.transpose(stacked, [1, 0, 3, 2]) as tf.Tensor4D;
    if (V === 1) return tf.reshape(stacked, [1, N, I, O]) as tf.Tensor4D;
    return tf.transpose(stacked, [2, 0, 1, 3]) as tf.Tensor4D;
  });
}

/**
 * Calls `consume(n, P_n)` with each sample's kernel products
 * `P_n = [X_nᵀ D[0,n], …, X_nᵀ D[V-1,n]]` as `[I, V, O]`; the tensors passed
 * are disposed after `consume` returns. For reductions over samples that
 * must not materialise `[V, N, I, O]` at once. One `[I, T] × [T, V·O]`
 * matMul per sample (X_nᵀ and D_n are cut out with `unstackRows`).
 */
export function forEachSampleKernelProduct(
  X: tf.Tensor3D,
  D: tf.Tensor4D,
  consume: (n: number, P: tf.Tensor3D) => void,
): void {
  forEachSample(X, D, 'IVO', consume);
}

/**
 * Layout of the per-sample products: `IVO` = `[I, V, O]` (`X_nᵀ [I, T] × D_n [T, V·O]`),
 * `VOI` = `[V, O, I]` (`D_nᵀ [V·O, T] × X_n [T, I]`, the transposed products).
 */
type SampleLayout = 'IVO' | 'VOI';

/**
 * The orientation of the per-sample matMuls with less data movement: both
 * have the same flops; the right operand is packed on every call (T·V·O for
 * IVO, T·I for VOI), and the explicit transposes move N·T·I (IVO: Xᵀ) or
 * N·T·V·O (VOI: Dᵀ; IVO moves D too when V > 1). VOI wins for narrow
 * patches (I < V·O: first conv layers, exact GGN stacks).
 */
function sampleLayout(I: number, V: number, O: number): SampleLayout {
  return I < V * O ? 'VOI' : 'IVO';
}

/** Per-sample products in the given layout; the tensors passed are disposed after `consume` returns. */
function forEachSample(
  X: tf.Tensor3D,
  D: tf.Tensor4D,
  layout: SampleLayout,
  consume: (n: number, P: tf.Tensor3D) => void,
): void {
  const [N, , I] = X.shape;
  const [V, , T, O] = D.shape;
  const [as, bs] = tf.tidy(() =>
    layout === 'IVO'
      ? [unstackRows(tf.transpose(X, [0, 2, 1])), unstackRows(samplesMajor(D))] // [I, T], [T, V·O]
      : [unstackRows(tf.reshape(tf.transpose(D, [1, 0, 3, 2]), [N, V * O, T])), unstackRows(X)], // [V·O, T], [T, I]
  );
  try {
    for (let n = 0; n < N; n++) {
      tf.tidy(() => {
        const M = tf.matMul(as[n] as tf.Tensor2D, bs[n] as tf.Tensor2D);
        consume(n, tf.reshape(M, layout === 'IVO' ? [I, V, O] : [V, O, I]) as tf.Tensor3D);
      });
      tf.dispose([as[n] as tf.Tensor, bs[n] as tf.Tensor]);
    }
  } finally {
    tf.dispose([...as, ...bs]);
  }
}

/**
 * `Σ_v Σ_n (X_nᵀ D[v,n])²` (element-wise square) → `[I, O]`.
 * DiagGGN, SumGradSquared, DiagHessian. T = 1: one matMul `(X²)ᵀ (Σ_v D²)`.
 * T > 1: per sample, the squares summed over v, accumulated over samples
 * (memory: one sample's products at a time, as for any V).
 */
export function sumSquaredKernelProduct(X: tf.Tensor3D, D: tf.Tensor4D): tf.Tensor2D {
  const [N, T, I] = X.shape;
  const [V, , , O] = D.shape;
  if (T === 1) {
    return tf.tidy(() => {
      const x2t = tf.transpose(tf.square(tf.reshape(X, [N, I])));
      const d2 = tf.reshape(sumLeadingAxis(tf.square(D)), [N, O]);
      return tf.matMul(x2t, d2);
    });
  }
  const layout = sampleLayout(I, V, O);
  // Per sample: Σ_v of the squares (one average pool, no transpose), accumulated as [I, O] (IVO) or [O, I] (VOI).
  let acc: tf.Tensor2D | undefined;
  forEachSample(X, D, layout, (_n, P) => {
    const sq = tf.square(P);
    const s = layout === 'IVO' ? sumMiddleAxis(sq) : (tf.reshape(sumLeadingAxis(sq), [O, I]) as tf.Tensor2D);
    if (acc === undefined) acc = tf.keep(s);
    else {
      const next = tf.keep(tf.add(acc, s) as tf.Tensor2D);
      acc.dispose();
      acc = next;
    }
  });
  const total = acc as tf.Tensor2D;
  // `total` is kept (it escaped the per-sample scopes): hand back an ordinary tensor.
  const out = tf.tidy(() => (layout === 'IVO' ? tf.clone(total) : tf.transpose(total))) as tf.Tensor2D;
  total.dispose();
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
      const d2 = tf.reshape(sumLeadingAxis(tf.square(D)), [N, 1, O]);
      return tf.mul(x2, d2) as tf.Tensor3D;
    });
  }
  const V = D.shape[0];
  const layout = sampleLayout(I, V, O);
  const parts: tf.Tensor2D[] = [];
  forEachSample(X, D, layout, (_n, P) => {
    const sq = tf.square(P);
    parts.push(tf.keep(layout === 'IVO' ? sumMiddleAxis(sq) : (tf.reshape(sumLeadingAxis(sq), [O, I]) as tf.Tensor2D)));
  });
  const stacked = tf.stack(parts) as tf.Tensor3D; // [N, I, O] or [N, O, I]
  tf.dispose(parts);
  if (layout === 'IVO') return stacked;
  const out = transposeInner(stacked);
  stacked.dispose();
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
  // ‖P‖² per v of P [A, V, O] (A = T or I rows): Σ over rows (leading) then over o (innermost).
  const perV = (sq: tf.Tensor3D): tf.Tensor1D =>
    tf.sum(tf.reshape(sumLeadingAxis(sq), [V, O]), 1) as tf.Tensor1D;
  const cols: tf.Tensor1D[] = [];
  if (T * T * (I + V * O) < I * V * O * T) {
    // Gram route: ‖X_nᵀ d‖² = Σ_o d_oᵀ (X_n X_nᵀ) d_o, for all v at once:
    // sum over (t, o) of ((X_n X_nᵀ) D_n) ⊙ D_n with D_n [T, V·O].
    const [xs, xts, ds] = tf.tidy(() => [unstackRows(X), unstackRows(tf.transpose(X, [0, 2, 1])), unstackRows(samplesMajor(D))]);
    try {
      for (let n = 0; n < N; n++) {
        cols.push(
          tf.tidy(() => {
            const dn = ds[n] as tf.Tensor2D; // [T, V·O]
            const gx = tf.matMul(xs[n] as tf.Tensor2D, xts[n] as tf.Tensor2D); // [T, T]
            return perV(tf.reshape(tf.mul(tf.matMul(gx, dn), dn), [T, V, O]) as tf.Tensor3D);
          }),
        );
        tf.dispose([xs[n] as tf.Tensor, xts[n] as tf.Tensor, ds[n] as tf.Tensor]);
      }
    } finally {
      tf.dispose([...xs, ...xts, ...ds]);
    }
  } else {
    const layout = sampleLayout(I, V, O);
    forEachSample(X, D, layout, (_n, P) => {
      const sq = tf.square(P);
      cols.push(tf.keep(layout === 'IVO' ? perV(sq) : (tf.sum(tf.reshape(sq, [V, O * I]), 1) as tf.Tensor1D)));
    });
  }
  const out = tf.stack(cols, 1) as tf.Tensor2D; // [V, N]
  tf.dispose(cols);
  return out;
}
