/**
 * Fast path for LARGE symmetric eigenproblems (n ≳ 400): two-stage
 * tridiagonalisation with the O(n³) part on TF.js.
 *
 *   stage 1 (TF.js, float32): dense → band of bandwidth b by blocked
 *     Householder QR panels. Per panel (S = trailing matrix, V m×b):
 *       panel QR in JS float64 (Qᵀ P = [R; 0], Q = I − V T Vᵀ),
 *       Yᵀ = (S V)ᵀ, G = Vᵀ S V           — plain 2-D tf.matMul
 *       Zᵀ = Tᵀ Yᵀ − ½ Tᵀ G T Vᵀ           — small matMul
 *       S ← S − [V Z] [Zᵀ; Vᵀ] = Qᵀ S Q    — plain 2-D tf.matMul (m×2b · 2b×m)
 *     No transposed matMuls (50× slower on wasm). The trailing matrix is
 *     sliced only every few panels: in between, V has zero rows for the
 *     finished indices, so the update is the full similarity Qᵀ S Q with Q = I
 *     there. On wasm the panel rows are read straight from the wasm heap
 *     (tf.slice would copy all of S).
 *   stage 2 (JS float64): band → tridiagonal by Householder bulge chasing
 *     (≈ 6n²b flops).
 *   stage 3 (JS float64): implicit QL on the tridiagonal; for selected
 *     eigenvectors (`eighLarge`) inverse iteration on the tridiagonal
 *     (inverseIteration.ts; O(n) per vector, clusters re-orthogonalised;
 *     replaying the QL rotations is the fallback), then stages 2 and 1 are
 *     undone on those vectors only.
 *
 * Accuracy: stage 1 runs in float32, so eigenvalues carry an ABSOLUTE error of
 * about 1e-7…1e-6·‖A‖₂ (float32 ε = 6e-8 times a modest growth factor; the
 * rounding of A itself to float32 already costs ~6e-8·‖A‖), not the
 * ~1e-14·‖A‖ of `eigvalsh`. Fine for spectra and monitoring; use
 * `eigvalsh`/`eigh` when eigenvalues below ~1e-5·‖A‖ must be resolved.
 */
import * as tf from '@tensorflow/tfjs';
import { bandToTridiagonal, denseToBand, halfCore, panelQR, panelVectors, ReflectorLog, type PanelRecord } from './band';
import { checkFinite, checkLength, checkSize } from './dense';
import { eigh, eigvalsh, implicitQL, powerOfTwoScale, RotationLog } from './eigh';
import { tridiagonalInverseIteration } from './inverseIteration';

export interface EigvalshLargeOptions {
  /** Bandwidth b of stage 1 (default 8; 4…32 are sensible: stage 2 costs ∝ b, stage 1 overheads ∝ 1/b). */
  bandwidth?: number;
  /**
   * 'auto' (default): the two-stage TF.js path when n ≥ 320 and the active
   * backend has a fast matMul (anything but 'cpu'), else float64 `eigvalsh`.
   * 'twoStage' / 'float64' force one route.
   */
  method?: 'auto' | 'twoStage' | 'float64';
}

export interface EighLargeOptions extends EigvalshLargeOptions {
  /**
   * Which eigenvectors: indices into the ascending `values`, or a function of
   * the values returning such indices (e.g. a selection criterion). Default:
   * all — but the two-stage route is meant for k ≪ n selected vectors
   * (cost ≈ 6kn² + 4kn² flops in JS on top of the eigenvalues).
   */
  select?: ArrayLike<number> | ((values: Float64Array) => ArrayLike<number>);
}

export interface EighLargeResult {
  /** All n eigenvalues, ascending. */
  values: Float64Array;
  /** The selected positions in `values` (as given by `select`, deduplicated, ascending). */
  indices: Int32Array;
  /** n×k row-major; COLUMN j is the unit eigenvector of values[indices[j]]. */
  vectors: Float64Array;
}

/** Size from which 'auto' takes the two-stage route. */
export const LARGE_EIGEN_THRESHOLD = 320;

type LargeInput = Float32Array | Float64Array | tf.Tensor2D;

/** Validated input data and the route to take. */
function prepare(fn: string, a: LargeInput, n: number, options: EigvalshLargeOptions): { data: Float32Array | Float64Array; b: number; twoStage: boolean } {
  checkSize(fn, 'n', n);
  const b = options.bandwidth ?? 8;
  if (!Number.isInteger(b) || b < 1) throw new Error(`${fn}: bandwidth must be a positive integer, got ${b}.`);
  const method = options.method ?? 'auto';
  if (method !== 'auto' && method !== 'twoStage' && method !== 'float64') {
    throw new Error(`${fn}: method must be 'auto', 'twoStage' or 'float64', got '${String(method)}'.`);
  }
  let data: Float32Array | Float64Array;
  if (a instanceof tf.Tensor) {
    if (a.rank !== 2 || a.shape[0] !== n || a.shape[1] !== n) {
      throw new Error(`${fn}: tensor has shape [${a.shape.join(', ')}], expected [${n}, ${n}].`);
    }
    data = a.dataSync() as Float32Array;
  } else {
    checkLength(fn, 'a', a, n * n, `${n}×${n}`);
    data = a;
  }
  checkFinite(fn, 'a', data, n);
  const twoStage = (method === 'twoStage' || (method === 'auto' && n >= LARGE_EIGEN_THRESHOLD && tf.getBackend() !== 'cpu')) && n > 2 * b + 2;
  return { data, b, twoStage };
}

/**
 * Two-stage reduction of the symmetric part of `data` to tridiagonal (d, e),
 * scaled by `scale` (a power of two making max |a| ≈ 1, so float32 neither
 * overflows nor underflows). Records the transformations when asked.
 */
export function twoStageTridiagonal(
  data: Float32Array | Float64Array,
  n: number,
  b: number,
  record?: { panels: PanelRecord[]; reflectors: ReflectorLog },
): { d: Float64Array; e: Float64Array; scale: number } | null {
  let maxAbs = 0;
  for (let i = 0; i < n * n; i++) maxAbs = Math.max(maxAbs, Math.abs(data[i] as number));
  if (maxAbs === 0) return null;
  const scale = powerOfTwoScale(maxAbs);
  // (A + Aᵀ)/2 in 32×32 tiles (the transposed reads stay in cache).
  const sym = new Float32Array(n * n);
  const half = 0.5 * scale;
  for (let i0 = 0; i0 < n; i0 += 32) {
    const i1 = Math.min(n, i0 + 32);
    for (let j0 = 0; j0 <= i0; j0 += 32) {
      const j1 = Math.min(n, j0 + 32);
      for (let i = i0; i < i1; i++) {
        for (let j = j0; j < Math.min(j1, i + 1); j++) {
          const s = half * ((data[i * n + j] as number) + (data[j * n + i] as number));
          sym[i * n + j] = s;
          sym[j * n + i] = s;
        }
      }
    }
  }
  const W = 2 * b;
  const band = new Float64Array(n * (W + 1));
  reduceToBandTf(sym, n, b, band, W, undefined, record?.panels);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  bandToTridiagonal(band, n, b, W, d, e, record?.reflectors);
  return { d, e, scale };
}

/**
 * Eigenvalues (ascending) of the symmetric n×n matrix `a` (row-major
 * Float32Array/Float64Array, or a [n, n] tf.Tensor2D which is read but not
 * disposed). Uses the symmetric part (A + Aᵀ)/2. Returns float64 values with
 * the accuracy stated in the module doc (≈1e-6·‖A‖ absolute) on the
 * two-stage route. Creates and disposes its own tensors only.
 */
export function eigvalshLargeSync(a: LargeInput, n: number, options: EigvalshLargeOptions = {}): Float64Array {
  const { data, b, twoStage } = prepare('eigvalshLarge', a, n, options);
  if (!twoStage) return eigvalsh(data, n);
  const tri = twoStageTridiagonal(data, n, b);
  if (!tri) return new Float64Array(n);
  const { d, e, scale } = tri;
  implicitQL(d, e, n);
  const values = d.sort();
  for (let i = 0; i < n; i++) values[i] /= scale;
  return values;
}

/** Promise form of `eigvalshLargeSync` (the work itself is synchronous). */
export async function eigvalshLarge(a: LargeInput, n: number, options: EigvalshLargeOptions = {}): Promise<Float64Array> {
  return eigvalshLargeSync(a, n, options);
}

/**
 * All eigenvalues and SELECTED eigenvectors of the symmetric n×n matrix `a`
 * (inputs as for `eigvalshLarge`). Two-stage route: the eigenvalues as in
 * `eigvalshLarge`; each selected eigenvector of the tridiagonal by inverse
 * iteration (residual at float64 rounding level; vectors of eigenvalues
 * closer than 1e-6·‖A‖ re-orthogonalised; fallback for larger clusters or
 * residuals: the QL rotations replayed on unit vectors, O(n²) each), then the
 * stage-2 reflectors and the stage-1 panels applied backwards (JS float64,
 * ≈ 3kn² flops for k vectors). Accuracy: residuals ‖A u − λ u‖ ≈ 1e-6·‖A‖
 * (float32 stage 1); eigenvector angles ≈ 1e-6·‖A‖/gap. The float64 route (small n,
 * cpu backend, method 'float64') is `eigh` restricted to the selection.
 */
export function eighLargeSync(a: LargeInput, n: number, options: EighLargeOptions = {}): EighLargeResult {
  const fn = 'eighLarge';
  const { data, b, twoStage } = prepare(fn, a, n, options);
  const choose = (values: Float64Array): Int32Array => {
    const sel = options.select === undefined ? values.map((_, i) => i) : typeof options.select === 'function' ? options.select(values) : options.select;
    const seen = new Set<number>();
    for (let t = 0; t < sel.length; t++) {
      const j = sel[t] as number;
      if (!Number.isInteger(j) || j < 0 || j >= n) throw new Error(`${fn}: select contains ${j}; indices must be integers in [0, ${n}).`);
      seen.add(j);
    }
    return Int32Array.from([...seen].sort((x, y) => x - y));
  };
  if (!twoStage) {
    const full = eigh(data, n);
    const indices = choose(full.values);
    const k = indices.length;
    const vectors = new Float64Array(n * k);
    const V = full.vectors as Float64Array;
    for (let r = 0; r < n; r++) for (let j = 0; j < k; j++) vectors[r * k + j] = V[r * n + (indices[j] as number)] as number;
    return { values: full.values, indices, vectors };
  }
  const record = { panels: [] as PanelRecord[], reflectors: new ReflectorLog(n, b) };
  const tri = twoStageTridiagonal(data, n, b, record);
  if (!tri) {
    // Zero matrix: any orthonormal basis; take unit vectors.
    const values = new Float64Array(n);
    const indices = choose(values);
    const vectors = new Float64Array(n * indices.length);
    indices.forEach((j, t) => (vectors[j * indices.length + t] = 1));
    return { values, indices, vectors };
  }
  const { d, e, scale } = tri;
  const d0 = Float64Array.from(d);
  const e0 = Float64Array.from(e);
  implicitQL(d, e, n);
  const sorted = Float64Array.from(d).sort();
  const values = sorted.map((v) => v / scale);
  const indices = choose(values);
  const k = indices.length;
  // Tridiagonal eigenvectors by inverse iteration (O(n) each); should a
  // residual not be at rounding level, replay the QL rotations instead.
  const lambdas = Float64Array.from(indices, (j) => sorted[j] as number);
  let X = tridiagonalInverseIteration(d0, e0, n, lambdas);
  if (X.residual > INVERSE_ITERATION_TOLERANCE) X = { vectors: tridiagonalVectorsByRotations(d0, e0, n, indices), residual: 0 };
  if (k > 0) {
    const Xv = X.vectors;
    applyReflectorsBackward(Xv, k, record.reflectors);
    applyPanelsBackward(Xv, k, record.panels);
    // Normalise (orthogonal transformations keep norms; this removes float32-level drift).
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let r = 0; r < n; r++) s += (Xv[r * k + j] as number) ** 2;
      const inv = 1 / Math.sqrt(s);
      for (let r = 0; r < n; r++) Xv[r * k + j] *= inv;
    }
  }
  return { values, indices, vectors: X.vectors };
}

/** Largest relative residual ‖T x − λ x‖/‖T‖ accepted from inverse iteration (stage 1 itself is accurate to ~1e-7). */
const INVERSE_ITERATION_TOLERANCE = 1e-9;

/**
 * Eigenvectors of the tridiagonal (d, e) for the ascending positions
 * `indices` by replaying the QL rotations on unit vectors (n×k; O(n²) per
 * vector): the fallback of inverse iteration.
 */
export function tridiagonalVectorsByRotations(d: Float64Array, e: Float64Array, n: number, indices: ArrayLike<number>): Float64Array {
  const dd = Float64Array.from(d);
  const ee = Float64Array.from(e);
  const rotations = new RotationLog(Math.ceil(1.2 * n * n));
  implicitQL(dd, ee, n, undefined, rotations);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => (dd[x] as number) - (dd[y] as number));
  const k = indices.length;
  // Column j starts as e_q, q = final QL position of the value at indices[j].
  const X = new Float64Array(n * k);
  for (let j = 0; j < k; j++) X[(order[indices[j] as number] as number) * k + j] = 1;
  if (k > 0) replayRotations(X, k, rotations);
  return X;
}

/** Promise form of `eighLargeSync`. */
export async function eighLarge(a: LargeInput, n: number, options: EighLargeOptions = {}): Promise<EighLargeResult> {
  return eighLargeSync(a, n, options);
}

/** x ← G_1 ⋯ G_N x for every column of X (n×k): rotations in reverse order. */
export function replayRotations(X: Float64Array, k: number, log: RotationLog): void {
  const { idx, c: cs, s: ss } = log;
  for (let t = log.count - 1; t >= 0; t--) {
    const i = (idx[t] as number) * k;
    const j = i + k;
    const c = cs[t] as number;
    const s = ss[t] as number;
    for (let q = 0; q < k; q++) {
      const xi = X[i + q] as number;
      const xj = X[j + q] as number;
      X[i + q] = c * xi + s * xj;
      X[j + q] = c * xj - s * xi;
    }
  }
}

/** y ← H_1 ⋯ H_R y (stage-2 reflectors, the last one first). */
export function applyReflectorsBackward(X: Float64Array, k: number, log: ReflectorLog): void {
  const w = new Float64Array(k);
  const b = log.b;
  for (let r = log.count - 1; r >= 0; r--) {
    const p = log.p[r] as number;
    const len = log.len[r] as number;
    const beta = log.beta[r] as number;
    const vo = r * b;
    w.fill(0);
    for (let t = 0; t < len; t++) {
      const v = log.v[vo + t] as number;
      const row = (p + t) * k;
      for (let q = 0; q < k; q++) w[q] += v * (X[row + q] as number);
    }
    for (let q = 0; q < k; q++) w[q] *= beta;
    for (let t = 0; t < len; t++) {
      const v = log.v[vo + t] as number;
      const row = (p + t) * k;
      for (let q = 0; q < k; q++) X[row + q] -= v * (w[q] as number);
    }
  }
}

/** u ← Q_1 ⋯ Q_P u with Q = I − V T Vᵀ (stage-1 panels, the last one first). */
export function applyPanelsBackward(X: Float64Array, k: number, panels: PanelRecord[]): void {
  for (let pi = panels.length - 1; pi >= 0; pi--) {
    const { o, m, b, V, T } = panels[pi] as PanelRecord;
    // W = Vᵀ X_rows (b×k), then W ← T W, then X_rows −= V W.
    const Wm = new Float64Array(b * k);
    for (let i = 0; i < m; i++) {
      const row = (o + i) * k;
      for (let r = 0; r < b; r++) {
        const v = V[i * b + r] as number;
        if (v === 0) continue;
        const wr = r * k;
        for (let q = 0; q < k; q++) Wm[wr + q] += v * (X[row + q] as number);
      }
    }
    const TW = new Float64Array(b * k);
    for (let r = 0; r < b; r++) {
      for (let p = r; p < b; p++) {
        const t = T[r * b + p] as number;
        if (t === 0) continue;
        for (let q = 0; q < k; q++) TW[r * k + q] += t * (Wm[p * k + q] as number);
      }
    }
    for (let i = 0; i < m; i++) {
      const row = (o + i) * k;
      for (let r = 0; r < b; r++) {
        const v = V[i * b + r] as number;
        if (v === 0) continue;
        for (let q = 0; q < k; q++) X[row + q] -= v * (TW[r * k + q] as number);
      }
    }
  }
}

/** Copy of the trailing block S[off:, off:] of the size×size tensor S (heap view on wasm, else tf.slice). */
function trailingBlock(S: tf.Tensor2D, size: number, off: number, view: ((t: tf.Tensor) => Float32Array) | null): Float32Array {
  const s = size - off;
  if (!view) {
    const t = tf.slice(S, [off, off], [s, s]);
    const out = t.dataSync() as Float32Array;
    t.dispose();
    return out;
  }
  const src = view(S);
  const out = new Float32Array(s * s);
  for (let r = 0; r < s; r++) out.set(src.subarray((off + r) * size + off, (off + r) * size + size), r * s);
  return out;
}

/**
 * Zero-copy read access to a tensor's float32 data on the wasm backend
 * (`tf.slice`/`dataSync` there copy the WHOLE input, 6.5 MB per call at
 * n = 1280). The view is only valid until the next TF.js call. Returns null
 * on other backends, which then use `tf.slice`.
 */
function wasmHeapView(): ((t: tf.Tensor) => Float32Array) | null {
  if (tf.getBackend() !== 'wasm') return null;
  const backend = tf.backend() as unknown as { typedArrayFromHeap?: (t: tf.TensorInfo) => Float32Array };
  if (typeof backend.typedArrayFromHeap !== 'function') return null;
  return (t) => (backend.typedArrayFromHeap as (t: tf.TensorInfo) => Float32Array).call(backend, t);
}

/**
 * Stage 1 on TF.js: reduces the symmetric n×n float32 matrix `sym` to band
 * form (bandwidth b) in `band` (storage width W). All tensors are disposed.
 * `timings` (optional) accumulates milliseconds per phase.
 */
export function reduceToBandTf(
  sym: Float32Array,
  n: number,
  b: number,
  band: Float64Array,
  W: number,
  timings?: Record<string, number>,
  panels?: PanelRecord[],
): void {
  const W1 = W + 1;
  let clock = timings ? performance.now() : 0;
  const tick = (what: string): void => {
    if (!timings) return;
    const now = performance.now();
    timings[what] = (timings[what] ?? 0) + now - clock;
    clock = now;
  };
  const view = wasmHeapView();
  // Below this trailing size the rest is finished in float64 JS.
  const tail = Math.max(4 * b, 96);
  let S = tf.tensor2d(sym, [n, n]);
  let size = n; // S is size×size and holds global indices g .. g+size−1
  let g = 0;
  let off = 0; // local start of the current trailing block within S
  const PtBuf = new Float64Array(b * n);
  let Vpad = new Float32Array(size * b);
  let VpadT = new Float32Array(b * size);
  try {
    while (size - off > tail) {
      const s = size - off;
      const m = s - b;
      const o = off + b; // local start of S22
      const j = g + off; // global index of the block start
      // Rows off..off+b of the trailing block: diagonal block and panel transpose Pt.
      const Pt = PtBuf.subarray(0, b * m);
      const readRows = (src: Float32Array, stride: number, col0: number): void => {
        for (let r = 0; r < b; r++) {
          const base = r * stride + col0;
          for (let c = 0; c <= r; c++) band[(j + r) * W1 + (r - c)] = src[base + c] as number;
          const pr = r * m;
          const sb = base + b;
          for (let i = 0; i < m; i++) Pt[pr + i] = src[sb + i] as number;
        }
      };
      if (view) {
        readRows(view(S), size, off * size + off);
      } else {
        const rowsT = tf.slice(S, [off, off], [b, s]);
        readRows(rowsT.dataSync() as Float32Array, s, 0);
        rowsT.dispose();
      }
      tick('rows');
      const { T, R } = panelQR(Pt, m, b);
      if (panels) {
        const V = new Float64Array(m * b);
        panelVectors(Pt, m, b, V, 0);
        panels.push({ o: g + o, m, b, V, T });
      }
      for (let r = 0; r < b; r++) for (let c = r; c < b; c++) band[(j + b + r) * W1 + (b + r - c)] = R[r * b + c] as number;
      // V zero-padded to the rows of S (finished rows then contribute nothing);
      // the buffers are reused, rows < o are still zero from earlier panels.
      Vpad.fill(0, off * b, (o + b) * b); // previous panel's rows and this panel's triangle
      panelVectors(Pt, m, b, Vpad, o);
      for (let k = 0; k < b; k++) {
        const vk = k * size + o;
        VpadT.fill(0, k * size + off, vk + k);
        for (let i = k; i < m; i++) VpadT[vk + i] = Pt[k * m + i] as number;
      }
      tick('panelQR');
      const b2 = 2 * b;
      // The padded update is the full similarity Qᵀ S Q (Q = I on finished
      // indices): finished rows are only rotated, never grow, and are never read.
      const next = tf.tidy(() => {
        const Vp = tf.tensor2d(Vpad, [size, b]);
        const VpT = tf.tensor2d(VpadT, [b, size]);
        const Yt = tf.transpose(tf.matMul(S, Vp)); // (S V)ᵀ, b×size
        const G = tf.matMul(Yt, Vp).dataSync() as Float32Array; // Vᵀ S V
        const Mh = halfCore(G, T, b);
        // Zᵀ = Tᵀ Yᵀ − Mh Vᵀ = [Tᵀ | −Mh] [Yᵀ; Vᵀ]
        const C = new Float32Array(b * b2);
        for (let r = 0; r < b; r++) {
          for (let c = 0; c < b; c++) {
            C[r * b2 + c] = T[c * b + r] as number;
            C[r * b2 + b + c] = -(Mh[r * b + c] as number);
          }
        }
        const Zt = tf.matMul(tf.tensor2d(C, [b, b2]), tf.concat([Yt, VpT], 0));
        const L = tf.transpose(tf.concat([VpT, Zt], 0)); // [V Z], size×2b
        const Rt = tf.concat([Zt, VpT], 0); // [Zᵀ; Vᵀ]
        return tf.sub(S, tf.matMul(L, Rt)) as tf.Tensor2D;
      });
      tick('update');
      S.dispose();
      S = next;
      off = o;
      // Shrink S now and then: a slice costs about one update, padding costs ∝ off.
      const remaining = size - off;
      if (off * off >= 0.6 * b * remaining && remaining > tail) {
        const shrunk = trailingBlock(S, size, off, view);
        S.dispose();
        S = tf.tensor2d(shrunk, [remaining, remaining]);
        g += off;
        size = remaining;
        off = 0;
        Vpad = new Float32Array(size * b);
        VpadT = new Float32Array(b * size);
        tick('shrink');
      }
    }
    // Tail: finish in float64 JS.
    const s = size - off;
    const tailData = Float64Array.from(trailingBlock(S, size, off, view));
    denseToBand(tailData, s, b, band, W, g + off, panels);
    tick('tail');
  } finally {
    S.dispose();
  }
}
