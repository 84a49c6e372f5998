/**
 * Symmetric eigendecomposition in float64 on the CPU:
 * Householder tridiagonalisation (Qᵀ A Q = T) followed by the implicit
 * symmetric QL algorithm with Wilkinson-type shifts on T (T = S Λ Sᵀ), so that
 * A = (Q S) Λ (Q S)ᵀ. The transformations are accumulated only when
 * eigenvectors are requested.
 *
 * Cost (n×n): values only ≈ 4n³/3 flops (tridiagonalisation, one pass over
 * the matrix per step: the rank-2 update is fused with the next product
 * L v) + O(n²) QL; with vectors + 4n³/3 (forming Q, four reflectors per pass)
 * + ~6n³ (QL rotations, one sweep at a time over 8-column strips). Measured
 * on this 2-core machine: n = 1280 eigvalsh ≈ 1.2 s, eigh ≈ 4 s — for large
 * n see `eigvalshLarge` / `eighLarge` (large.ts).
 */
import { checkFinite, checkLength, checkSquare } from './dense';

/** Symmetric eigendecomposition: `A = V diag(values) Vᵀ`. */
export interface SymmetricEigen {
  /** Eigenvalues, ascending. */
  values: Float64Array;
  /** n×n row-major; COLUMN j is the unit eigenvector of `values[j]` (absent when not requested). */
  vectors?: Float64Array;
}

const EPS = 2 ** -52;
const SAFE_MIN = 2 ** -1022;

/**
 * Eigenvalues (ascending) and, unless `vectors: false`, eigenvectors of the
 * symmetric `n×n` row-major matrix `a`. A non-symmetric input is replaced by
 * its symmetric part (A + Aᵀ)/2 — for a symmetric input that is exactly A.
 * The matrix is scaled by a power of two before and after (exact), so huge or
 * tiny scales neither overflow nor underflow. Throws on NaN/Inf or a length
 * other than n·n. `a` is not mutated.
 */
export function eigh(a: ArrayLike<number>, n: number, options: { vectors?: boolean } = {}): SymmetricEigen {
  checkSquare('eigh', 'a', a, n);
  const wantVectors = options.vectors ?? true;
  if (n === 0) return wantVectors ? { values: new Float64Array(0), vectors: new Float64Array(0) } : { values: new Float64Array(0) };

  // Lower triangle of the symmetric part, scaled by an exact power of two.
  const W = new Float64Array(n * n);
  let maxAbs = 0;
  // 32×32 tiles so that the transposed reads a[j, i] stay in cache.
  for (let i0 = 0; i0 < n; i0 += 32) {
    const i1 = Math.min(n, i0 + 32);
    for (let j0 = 0; j0 <= i0; j0 += 32) {
      for (let i = i0; i < i1; i++) {
        const j1 = Math.min(j0 + 32, i + 1);
        for (let j = j0; j < j1; j++) {
          const s = 0.5 * ((a[i * n + j] as number) + (a[j * n + i] as number));
          W[i * n + j] = s;
          const t = Math.abs(s);
          if (t > maxAbs) maxAbs = t;
        }
      }
    }
  }
  if (maxAbs === 0) {
    const values = new Float64Array(n);
    if (!wantVectors) return { values };
    const vectors = new Float64Array(n * n);
    for (let i = 0; i < n; i++) vectors[i * n + i] = 1;
    return { values, vectors };
  }
  const scale = powerOfTwoScale(maxAbs);
  if (scale !== 1) for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) W[i * n + j] *= scale;

  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const betas = tridiagonalizeLower(W, n, d, e);
  let Zt: Float64Array | undefined;
  if (wantVectors) Zt = formQt(W, n, betas);
  implicitQL(d, e, n, Zt);
  return finish(d, n, Zt, 1 / scale);
}

/** Eigenvalues (ascending) of the symmetric `n×n` matrix `a` (see `eigh`). */
export function eigvalsh(a: ArrayLike<number>, n: number): Float64Array {
  return eigh(a, n, { vectors: false }).values;
}

/**
 * Eigen-decomposition of the symmetric tridiagonal matrix with diagonal
 * `diag` (length n) and off-diagonal `offDiag` (length n−1):
 * T = V diag(values) Vᵀ, values ascending, COLUMN j of `vectors` (n×n row-major)
 * the unit eigenvector of values[j]. Cost O(n²) values only, ~6n³ with vectors.
 */
export function tridiagonalEigen(
  diag: ArrayLike<number>,
  offDiag: ArrayLike<number>,
  options: { vectors?: boolean } = {},
): SymmetricEigen {
  const fn = 'tridiagonalEigen';
  if (diag == null || typeof diag.length !== 'number') throw new Error(`${fn}: diag must be an array of numbers.`);
  const n = diag.length;
  checkLength(fn, 'offDiag', offDiag ?? [], Math.max(0, n - 1), `(length n−1 = ${Math.max(0, n - 1)} for diag of length ${n}) off-diagonal`);
  checkFinite(fn, 'diag', diag);
  checkFinite(fn, 'offDiag', offDiag);
  const wantVectors = options.vectors ?? true;
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  let maxAbs = 0;
  for (let i = 0; i < n; i++) {
    d[i] = diag[i] as number;
    maxAbs = Math.max(maxAbs, Math.abs(d[i] as number));
  }
  for (let i = 0; i + 1 < n; i++) {
    e[i] = offDiag[i] as number;
    maxAbs = Math.max(maxAbs, Math.abs(e[i] as number));
  }
  const scale = maxAbs === 0 ? 1 : powerOfTwoScale(maxAbs);
  if (scale !== 1) {
    for (let i = 0; i < n; i++) {
      d[i] *= scale;
      e[i] *= scale;
    }
  }
  let Zt: Float64Array | undefined;
  if (wantVectors) {
    Zt = new Float64Array(n * n);
    for (let i = 0; i < n; i++) Zt[i * n + i] = 1;
  }
  implicitQL(d, e, n, Zt);
  return finish(d, n, Zt, 1 / scale);
}

/**
 * Eigenvalues (ascending) of the symmetric tridiagonal (diag, offDiag) and the
 * components `rows` of every unit eigenvector: `components[r·n + j]` is entry
 * rows[r] of the eigenvector of values[j]. Cost O(n²·(1 + rows.length)) —
 * e.g. the last components for Lanczos residual estimates β·|s_{m,j}|.
 */
export function tridiagonalEigenComponents(
  diag: ArrayLike<number>,
  offDiag: ArrayLike<number>,
  rows: ArrayLike<number>,
): { values: Float64Array; components: Float64Array } {
  const n = diag.length;
  const k = rows.length;
  const d = Float64Array.from(diag);
  const e = new Float64Array(n);
  for (let i = 0; i + 1 < n; i++) e[i] = offDiag[i] as number;
  let maxAbs = 0;
  for (let i = 0; i < n; i++) maxAbs = Math.max(maxAbs, Math.abs(d[i] as number), Math.abs(e[i] as number));
  const scale = maxAbs === 0 ? 1 : powerOfTwoScale(maxAbs);
  for (let i = 0; i < n; i++) {
    d[i] *= scale;
    e[i] *= scale;
  }
  // Zt (n×k): column c tracks coordinate rows[c] of every eigenvector.
  const Zt = new Float64Array(n * k);
  for (let c = 0; c < k; c++) Zt[(rows[c] as number) * k + c] = 1;
  implicitQL(d, e, n, Zt, undefined, k);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => (d[x] as number) - (d[y] as number));
  const values = new Float64Array(n);
  const components = new Float64Array(k * n);
  for (let j = 0; j < n; j++) {
    const q = order[j] as number;
    values[j] = (d[q] as number) / scale;
    for (let c = 0; c < k; c++) components[c * n + j] = Zt[q * k + c] as number;
  }
  return { values, components };
}

/**
 * 2^k with 2^k · maxAbs ∈ [0.5, 1) (exact scaling); k is clamped to ±1000 so
 * that 2^k itself stays a normal number (subnormal inputs are then only
 * scaled up to ~1e-9, which is harmless).
 */
export function powerOfTwoScale(maxAbs: number): number {
  const k = -Math.ceil(Math.log2(maxAbs));
  return 2 ** Math.max(-1000, Math.min(1000, k));
}

/**
 * Householder reduction of the symmetric matrix whose lower triangle is in W
 * (n×n row-major) to tridiagonal form, from the bottom row upwards. Step i
 * (i = n−1 … 2) reflects row i's entries 0..i−1 onto position i−1 with
 * H_i = I − β_i v_i v_iᵀ (v_i stored in W[i, 0..i−1]) and updates the leading
 * i×i block: L ← H L H = L − v wᵀ − w vᵀ with p = β L v, w = p − (β/2)(vᵀp) v.
 * The update of step i is fused with the product L v of step i−1 (row i−1 is
 * updated first so that v_{i−1} is known), so every step streams the matrix
 * once. Output: d (diagonal), e[k] couples k and k+1. Returns β (per row).
 */
export function tridiagonalizeLower(W: Float64Array, n: number, d: Float64Array, e: Float64Array): Float64Array {
  const betas = new Float64Array(n);
  let p = new Float64Array(n);
  let pn = new Float64Array(n);
  // Householder vector for x = W[i, 0..i−1] → α e_{i−1}; stores v in place, sets e[i−1], returns β.
  const reflector = (i: number): number => {
    const ri = i * n;
    const xl = W[ri + i - 1] as number;
    // ‖x‖ from the column scaled by its largest entry: squares of tiny entries
    // (≲ 1e-154) would be subnormal and lose their digits.
    let scale = 0;
    for (let c = 0; c < i - 1; c++) scale = Math.max(scale, Math.abs(W[ri + c] as number));
    if (scale === 0) {
      e[i - 1] = xl;
      betas[i] = 0;
      return 0;
    }
    scale = Math.max(scale, Math.abs(xl));
    let sigma = 0;
    for (let c = 0; c < i; c++) {
      const x = (W[ri + c] as number) / scale;
      sigma += x * x;
    }
    const norm = scale * Math.sqrt(sigma);
    const alpha = xl > 0 ? -norm : norm;
    // v = (x − α e_{i−1}) / (x_{i−1} − α), so v_{i−1} = 1 and β = 1 + |x_{i−1}|/‖x‖ ∈ [1, 2]
    // (LAPACK's normalisation: β v vᵀ is unchanged, and nothing underflows when ‖x‖ is tiny).
    const denom = xl - alpha; // |denom| = |xl| + ‖x‖ ≥ ‖x‖ > 0
    for (let c = 0; c < i - 1; c++) W[ri + c] = (W[ri + c] as number) / denom;
    W[ri + i - 1] = 1;
    const beta = 1 + Math.abs(xl) / norm;
    betas[i] = beta;
    e[i - 1] = alpha;
    return beta;
  };
  let i = n - 1;
  let beta = 0;
  let pReady = false; // p = L v (unscaled) for the current step, from the fused pass
  while (i >= 2) {
    const ri = i * n;
    if (!pReady) {
      d[i] = W[ri + i] as number;
      beta = reflector(i);
      if (beta === 0) {
        i--;
        continue;
      }
      // p = L v over the lower triangle of the leading i×i block.
      p.fill(0, 0, i);
      for (let r = 0; r < i; r++) {
        const rr = r * n;
        const vr = W[ri + r] as number;
        let s = 0;
        for (let c = 0; c < r; c++) {
          const l = W[rr + c] as number;
          s += l * (W[ri + c] as number);
          p[c] += l * vr;
        }
        p[r] += s + (W[rr + r] as number) * vr;
      }
    }
    // w = β p − (β²/2)(vᵀp) v, kept in p.
    let vp = 0;
    for (let r = 0; r < i; r++) {
      p[r] *= beta;
      vp += (W[ri + r] as number) * (p[r] as number);
    }
    const K = 0.5 * beta * vp;
    for (let r = 0; r < i; r++) p[r] -= K * (W[ri + r] as number);
    // Row i−1 first, then the next reflector from it.
    const r1 = i - 1;
    {
      const rr = r1 * n;
      const vr = W[ri + r1] as number;
      const wr = p[r1] as number;
      for (let c = 0; c <= r1; c++) W[rr + c] -= vr * (p[c] as number) + wr * (W[ri + c] as number);
    }
    let betaNext = 0;
    if (r1 >= 2) {
      d[r1] = W[r1 * n + r1] as number;
      betaNext = reflector(r1);
    }
    const rn = r1 * n; // next reflector v' = W[i−1, 0..i−2]
    if (betaNext !== 0) {
      // Fused: rows 0..i−2 get L ← L − v wᵀ − w vᵀ and feed p' = L v'.
      pn.fill(0, 0, r1);
      for (let r = 0; r < r1; r++) {
        const rr = r * n;
        const vr = W[ri + r] as number;
        const wr = p[r] as number;
        const vnr = W[rn + r] as number;
        let s = 0;
        for (let c = 0; c < r; c++) {
          const a = (W[rr + c] as number) - (vr * (p[c] as number) + wr * (W[ri + c] as number));
          W[rr + c] = a;
          s += a * (W[rn + c] as number);
          pn[c] += a * vnr;
        }
        const a = (W[rr + r] as number) - 2 * vr * wr;
        W[rr + r] = a;
        pn[r] += s + a * vnr;
      }
      const t = p;
      p = pn;
      pn = t;
      beta = betaNext;
      pReady = true;
      i = r1;
    } else {
      for (let r = 0; r < r1; r++) {
        const rr = r * n;
        const vr = W[ri + r] as number;
        const wr = p[r] as number;
        for (let c = 0; c <= r; c++) W[rr + c] -= vr * (p[c] as number) + wr * (W[ri + c] as number);
      }
      pReady = false;
      // Step i−1 is complete when its reflector was trivial (r1 ≥ 2); else the loop ends.
      i = r1 >= 2 ? r1 - 1 : r1;
    }
  }
  if (n >= 2) {
    d[1] = W[n + 1] as number;
    e[0] = W[n] as number;
  }
  d[0] = W[0] as number;
  e[n - 1] = 0;
  return betas;
}

/**
 * Qᵀ = H_2 H_3 ⋯ H_{n−1} (row-major n×n), built as M ← M H_i for i = 2…n−1;
 * M H_i only touches the leading i×i block (backward accumulation). Four
 * reflectors at a time in compact-WY form, H_i ⋯ H_{i+3} = I − V T Vᵀ, so
 * each row of M is read twice per four reflectors: u = (M_r V) T, then
 * M_r ← M_r − u Vᵀ.
 */
export function formQt(W: Float64Array, n: number, betas: Float64Array): Float64Array {
  const M = new Float64Array(n * n);
  for (let i = 0; i < n; i++) M[i * n + i] = 1;
  const NB = 4;
  const V = new Float64Array(NB * n); // block vectors, zero-padded to a common length
  const T = new Float64Array(NB * NB);
  let i = 2;
  while (i < n) {
    const nb = Math.min(NB, n - i);
    if (nb < NB) {
      // Remainder: one reflector at a time.
      for (; i < n; i++) {
        const beta = betas[i] as number;
        if (beta === 0) continue;
        const ri = i * n;
        for (let r = 0; r < i; r++) {
          const rr = r * n;
          let s = 0;
          for (let c = 0; c < i; c++) s += (M[rr + c] as number) * (W[ri + c] as number);
          s *= beta;
          if (s !== 0) for (let c = 0; c < i; c++) M[rr + c] -= s * (W[ri + c] as number);
        }
      }
      break;
    }
    const len = i + NB - 1; // longest vector (H_{i+3} acts on 0..i+2)
    V.fill(0, 0, NB * len);
    for (let t = 0; t < NB; t++) {
      const k = i + t;
      if (betas[k] === 0) continue;
      V.set(W.subarray(k * n, k * n + k), t * len);
    }
    // T (upper): T_tt = β_t, T[0:t, t] = −β_t T[0:t, 0:t] (V[:, 0:t]ᵀ v_t).
    T.fill(0);
    for (let t = 0; t < NB; t++) {
      const beta = betas[i + t] as number;
      T[t * NB + t] = beta;
      if (beta === 0) continue;
      for (let r = 0; r < t; r++) {
        let s = 0;
        for (let q = r; q < t; q++) {
          let g = 0;
          for (let c = 0; c < len; c++) g += (V[q * len + c] as number) * (V[t * len + c] as number);
          s += (T[r * NB + q] as number) * g;
        }
        T[r * NB + t] = -beta * s;
      }
    }
    const o1 = len;
    const o2 = 2 * len;
    const o3 = 3 * len;
    const t00 = T[0] as number, t01 = T[1] as number, t02 = T[2] as number, t03 = T[3] as number;
    const t11 = T[5] as number, t12 = T[6] as number, t13 = T[7] as number;
    const t22 = T[10] as number, t23 = T[11] as number, t33 = T[15] as number;
    // Rows of M that can be non-zero in columns 0..len−1: rows 0..len−1.
    for (let r = 0; r < len; r++) {
      const rr = r * n;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let c = 0; c < len; c++) {
        const m = M[rr + c] as number;
        a0 += m * (V[c] as number);
        a1 += m * (V[o1 + c] as number);
        a2 += m * (V[o2 + c] as number);
        a3 += m * (V[o3 + c] as number);
      }
      // u = a T
      const u0 = a0 * t00;
      const u1 = a0 * t01 + a1 * t11;
      const u2 = a0 * t02 + a1 * t12 + a2 * t22;
      const u3 = a0 * t03 + a1 * t13 + a2 * t23 + a3 * t33;
      for (let c = 0; c < len; c++) {
        M[rr + c] -= u0 * (V[c] as number) + u1 * (V[o1 + c] as number) + u2 * (V[o2 + c] as number) + u3 * (V[o3 + c] as number);
      }
    }
    i += NB;
  }
  return M;
}

/**
 * Implicit symmetric QL with shifts from the leading 2×2 block (Wilkinson-type)
 * on the tridiagonal (d, e), e[k] coupling k and k+1 (e[n−1] unused). On exit d
 * holds the eigenvalues (unsorted); returns the number of QL iterations. When Zt is given (n×n, rows = current
 * basis vectors; rows of length `cols`, default n), each plane rotation G on
 * (i, i+1) is applied as Zt ← Gᵀ Zt, i.e. to the contiguous rows i and i+1.
 */
export function implicitQL(d: Float64Array, e: Float64Array, n: number, Zt?: Float64Array, log?: RotationLog, cols = n): number {
  if (n > 0) e[n - 1] = 0;
  const maxIter = 30 * n;
  let iterations = 0;
  // Deflation also relative to the matrix norm (EISPACK tql2): zero rows of a
  // PSD matrix leave zero diagonal entries beside rounding-level off-diagonals,
  // which a test relative to the neighbouring diagonal alone never deflates.
  // Zeroing |e| ≤ ε‖T‖ perturbs eigenvalues by at most ε‖T‖, the accuracy the
  // Householder reduction already has.
  let anorm = 0;
  for (let i = 0; i < n; i++) anorm = Math.max(anorm, Math.abs(d[i] as number) + Math.abs(e[i] as number));
  const floor = EPS * anorm;
  const cs = Zt ? new Float64Array(n) : new Float64Array(0);
  const ss = Zt ? new Float64Array(n) : new Float64Array(0);
  for (let l = 0; l < n; l++) {
    for (;;) {
      // Smallest m ≥ l with a negligible e[m]: the block l..m is unreduced.
      let m = l;
      for (; m < n - 1; m++) {
        const dd = Math.abs(d[m] as number) + Math.abs(d[m + 1] as number);
        const em = Math.abs(e[m] as number);
        if (em <= EPS * dd || em <= floor || em < SAFE_MIN) {
          e[m] = 0;
          break;
        }
      }
      if (m === l) break;
      if (++iterations > maxIter) {
        throw new Error(`implicitQL: no convergence after ${maxIter} iterations (n = ${n}); the input may contain extreme values.`);
      }
      // Shift: eigenvalue of the leading 2×2 block closer to d[l].
      let g = ((d[l + 1] as number) - (d[l] as number)) / (2 * (e[l] as number));
      let r = Math.hypot(g, 1);
      g = (d[m] as number) - (d[l] as number) + (e[l] as number) / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let underflow = false;
      let lowest = m; // rotations recorded for rows lowest..m−1
      if (log) log.reserve(m - l);
      for (let i = m - 1; i >= l; i--) {
        const f = s * (e[i] as number);
        const b = c * (e[i] as number);
        r = Math.sqrt(f * f + g * g);
        if (!(r > SAFE_MIN) || r === Infinity) r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          // Deflation by underflow: recover and restart the search.
          d[i + 1] -= p;
          e[m] = 0;
          underflow = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = (d[i + 1] as number) - p;
        r = ((d[i] as number) - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        if (log) {
          const t = log.count++;
          log.idx[t] = i;
          log.c[t] = c;
          log.s[t] = s;
        }
        if (Zt) {
          cs[i] = c;
          ss[i] = s;
          lowest = i;
        }
      }
      if (Zt && lowest <= m - 1) applyRotationSweep(Zt, cols, cs, ss, lowest, m);
      if (underflow) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
  return iterations;
}

/**
 * The plane rotations of `implicitQL` in order of application: rotation t acts
 * on (idx[t], idx[t]+1); T = Z Λ Zᵀ with Z = G_1 ⋯ G_N and
 * G = [[c, s], [−s, c]] on those two coordinates.
 */
export class RotationLog {
  count = 0;
  idx: Int32Array;
  c: Float64Array;
  s: Float64Array;
  /** `capacity`: expected number of rotations (≈ n² for an n×n QL); grows as needed. */
  constructor(capacity = 1024) {
    this.idx = new Int32Array(capacity);
    this.c = new Float64Array(capacity);
    this.s = new Float64Array(capacity);
  }
  /** Makes room for `extra` more rotations. */
  reserve(extra: number): void {
    if (this.count + extra <= this.idx.length) return;
    const cap = Math.max(2 * this.idx.length, this.count + extra);
    const idx = new Int32Array(cap);
    idx.set(this.idx.subarray(0, this.count));
    this.idx = idx;
    const cc = new Float64Array(cap);
    cc.set(this.c.subarray(0, this.count));
    this.c = cc;
    const ss = new Float64Array(cap);
    ss.set(this.s.subarray(0, this.count));
    this.s = ss;
  }
}

/**
 * Applies the rotation sweep G_{m−1}, then G_{m−2}, …, G_{lo} (G_i acting on
 * rows i, i+1 as [z_i; z_{i+1}] ← [c z_i − s z_{i+1}; s z_i + c z_{i+1}]) to the
 * rows of Zt. Column strips of 8 carry the running row in locals, so every
 * element is loaded and stored once per sweep instead of twice per rotation.
 */
function applyRotationSweep(Zt: Float64Array, n: number, cs: Float64Array, ss: Float64Array, lo: number, m: number): void {
  let k0 = 0;
  for (; k0 + 8 <= n; k0 += 8) {
    const top = m * n + k0;
    let x0 = Zt[top] as number;
    let x1 = Zt[top + 1] as number;
    let x2 = Zt[top + 2] as number;
    let x3 = Zt[top + 3] as number;
    let x4 = Zt[top + 4] as number;
    let x5 = Zt[top + 5] as number;
    let x6 = Zt[top + 6] as number;
    let x7 = Zt[top + 7] as number;
    for (let i = m - 1; i >= lo; i--) {
      const c = cs[i] as number;
      const s = ss[i] as number;
      const ri = i * n + k0;
      const rj = ri + n;
      let z = Zt[ri] as number;
      Zt[rj] = s * z + c * x0;
      x0 = c * z - s * x0;
      z = Zt[ri + 1] as number;
      Zt[rj + 1] = s * z + c * x1;
      x1 = c * z - s * x1;
      z = Zt[ri + 2] as number;
      Zt[rj + 2] = s * z + c * x2;
      x2 = c * z - s * x2;
      z = Zt[ri + 3] as number;
      Zt[rj + 3] = s * z + c * x3;
      x3 = c * z - s * x3;
      z = Zt[ri + 4] as number;
      Zt[rj + 4] = s * z + c * x4;
      x4 = c * z - s * x4;
      z = Zt[ri + 5] as number;
      Zt[rj + 5] = s * z + c * x5;
      x5 = c * z - s * x5;
      z = Zt[ri + 6] as number;
      Zt[rj + 6] = s * z + c * x6;
      x6 = c * z - s * x6;
      z = Zt[ri + 7] as number;
      Zt[rj + 7] = s * z + c * x7;
      x7 = c * z - s * x7;
    }
    const bot = lo * n + k0;
    Zt[bot] = x0;
    Zt[bot + 1] = x1;
    Zt[bot + 2] = x2;
    Zt[bot + 3] = x3;
    Zt[bot + 4] = x4;
    Zt[bot + 5] = x5;
    Zt[bot + 6] = x6;
    Zt[bot + 7] = x7;
  }
  for (let k = k0; k < n; k++) {
    let x = Zt[m * n + k] as number;
    for (let i = m - 1; i >= lo; i--) {
      const c = cs[i] as number;
      const s = ss[i] as number;
      const z = Zt[i * n + k] as number;
      Zt[(i + 1) * n + k] = s * z + c * x;
      x = c * z - s * x;
    }
    Zt[lo * n + k] = x;
  }
}

/** Sorts ascending, unscales, and turns the eigenvector rows of Zt into columns. */
function finish(d: Float64Array, n: number, Zt: Float64Array | undefined, unscale: number): SymmetricEigen {
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => (d[x] as number) - (d[y] as number));
  const values = new Float64Array(n);
  for (let j = 0; j < n; j++) values[j] = (d[order[j] as number] as number) * unscale;
  if (!Zt) return { values };
  // vectors[k, j] = Zt[order[j], k]
  const vectors = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const src = (order[j] as number) * n;
    for (let k = 0; k < n; k++) vectors[k * n + j] = Zt[src + k] as number;
  }
  return { values, vectors };
}
