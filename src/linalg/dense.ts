/**
 * Small dense helpers in float64 on the CPU. Matrices are row-major
 * `Float64Array`s (inputs may be any `ArrayLike<number>`) with explicit sizes;
 * inputs are never mutated, every result is a fresh array.
 */

/** Throws unless `n` is a non-negative integer. */
export function checkSize(fn: string, name: string, n: number): void {
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`${fn}: ${name} must be a non-negative integer, got ${n}.`);
  }
}

/** Throws unless `a.length === expected`, naming both. */
export function checkLength(
  fn: string,
  name: string,
  a: ArrayLike<number>,
  expected: number,
  shape: string,
): void {
  if (a == null || typeof a.length !== 'number') {
    throw new Error(`${fn}: ${name} must be an array of numbers (row-major ${shape}).`);
  }
  if (a.length !== expected) {
    throw new Error(
      `${fn}: ${name} has length ${a.length}, but a row-major ${shape} matrix needs ${expected} entries.`,
    );
  }
}

/** Throws on the first NaN/±Inf entry, naming its position. */
export function checkFinite(fn: string, name: string, a: ArrayLike<number>, cols = 0): void {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    if (!Number.isFinite(x)) {
      const where = cols > 0 ? `[${Math.floor(i / cols)}, ${i % cols}]` : `[${i}]`;
      throw new Error(
        `${fn}: ${name}${where} is ${x}; the input must be finite (check for overflow or division by zero upstream).`,
      );
    }
  }
}

/** Validated square matrix `n×n`: size, length and finiteness. */
export function checkSquare(fn: string, name: string, a: ArrayLike<number>, n: number): void {
  checkSize(fn, 'n', n);
  checkLength(fn, name, a, n * n, `${n}×${n}`);
  checkFinite(fn, name, a, n);
}

/** `n×n` identity. */
export function identity(n: number): Float64Array {
  checkSize('identity', 'n', n);
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  return out;
}

/** Transpose of the row-major `m×n` matrix `a` → `n×m`. */
export function transpose(a: ArrayLike<number>, m: number, n: number): Float64Array {
  checkSize('transpose', 'm', m);
  checkSize('transpose', 'n', n);
  checkLength('transpose', 'a', a, m * n, `${m}×${n}`);
  const out = new Float64Array(m * n);
  // Blocked so that both the reads and the writes stay in cache.
  const B = 32;
  for (let i0 = 0; i0 < m; i0 += B) {
    const i1 = Math.min(m, i0 + B);
    for (let j0 = 0; j0 < n; j0 += B) {
      const j1 = Math.min(n, j0 + B);
      for (let i = i0; i < i1; i++) {
        const row = i * n;
        for (let j = j0; j < j1; j++) out[j * m + i] = a[row + j] as number;
      }
    }
  }
  return out;
}

/** `C = A B` with `A` m×k and `B` k×n (row-major, i-k-j loop order). */
export function matmul(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): Float64Array {
  checkSize('matmul', 'm', m);
  checkSize('matmul', 'k', k);
  checkSize('matmul', 'n', n);
  checkLength('matmul', 'a', a, m * k, `${m}×${k}`);
  checkLength('matmul', 'b', b, k * n, `${k}×${n}`);
  const A = asF64(a);
  const Bm = asF64(b);
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    const ai = i * k;
    for (let p = 0; p < k; p++) {
      const aip = A[ai + p] as number;
      if (aip === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) C[ci + j] += aip * (Bm[bp + j] as number);
    }
  }
  return C;
}

/** `(A + Aᵀ)/2` of an `n×n` matrix. */
export function symmetrize(a: ArrayLike<number>, n: number): Float64Array {
  checkSize('symmetrize', 'n', n);
  checkLength('symmetrize', 'a', a, n * n, `${n}×${n}`);
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    out[i * n + i] = a[i * n + i] as number;
    for (let j = 0; j < i; j++) {
      const s = 0.5 * ((a[i * n + j] as number) + (a[j * n + i] as number));
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  }
  return out;
}

/** Frobenius norm `‖a‖_F`, computed with scaling (no overflow/underflow). */
export function frobeniusNorm(a: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i] as number));
  if (scale === 0 || !Number.isFinite(scale)) return scale;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const x = (a[i] as number) / scale;
    s += x * x;
  }
  return scale * Math.sqrt(s);
}

/** Thin QR factorisation result: `A = Q R`, `Q` m×n with orthonormal columns, `R` n×n upper. */
export interface QR {
  q: Float64Array;
  r: Float64Array;
}

/**
 * Thin Householder QR of the row-major `m×n` matrix `a` (m ≥ n):
 * `A = Q R` with `Q` m×n (orthonormal columns) and `R` n×n upper triangular.
 * Rank-deficient input is fine (R then has zero diagonal entries and Q is
 * still orthonormal). Cost ≈ 4mn² − 4n³/3 flops.
 */
export function qr(a: ArrayLike<number>, m: number, n: number): QR {
  checkSize('qr', 'm', m);
  checkSize('qr', 'n', n);
  checkLength('qr', 'a', a, m * n, `${m}×${n}`);
  checkFinite('qr', 'a', a, n);
  if (m < n) throw new Error(`qr: needs m ≥ n for the thin factorisation, got a ${m}×${n} matrix (factor the transpose instead).`);
  // Work on Aᵀ (n×m): column j of A is the contiguous row j of W.
  const W = transpose(a, m, n);
  const betas = new Float64Array(n);
  const r = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const wj = j * m;
    // Householder vector v (stored in W[j, j:]) with H x = α e_j, H = I − β v vᵀ.
    let scale = 0;
    for (let i = j; i < m; i++) scale = Math.max(scale, Math.abs(W[wj + i] as number));
    let alpha = 0;
    let beta = 0;
    if (scale > 0) {
      let ss = 0;
      for (let i = j; i < m; i++) {
        const x = (W[wj + i] as number) / scale;
        ss += x * x;
      }
      const norm = scale * Math.sqrt(ss);
      const x0 = W[wj + j] as number;
      alpha = x0 > 0 ? -norm : norm;
      // Normalised reflector v_j = 1, β = 2/vᵀv = 1 + |x0|/‖x‖ ∈ [1, 2] (no underflow for tiny ‖x‖).
      const denom = x0 - alpha;
      for (let i = j + 1; i < m; i++) W[wj + i] = (W[wj + i] as number) / denom;
      W[wj + j] = 1;
      beta = 1 + Math.abs(x0) / norm;
      // Apply H to the remaining columns (rows of W).
      for (let c = j + 1; c < n; c++) {
        const wc = c * m;
        let s = 0;
        for (let i = j; i < m; i++) s += (W[wj + i] as number) * (W[wc + i] as number);
        s *= beta;
        if (s !== 0) for (let i = j; i < m; i++) W[wc + i] -= s * (W[wj + i] as number);
      }
    }
    betas[j] = beta;
    r[j * n + j] = beta === 0 ? (W[wj + j] as number) : alpha;
    for (let c = j + 1; c < n; c++) r[j * n + c] = W[c * m + j] as number;
  }
  // Q = H_0 H_1 ⋯ H_{n−1} [I; 0], built backwards as Qᵀ rows (n×m).
  const Qt = new Float64Array(n * m);
  for (let j = 0; j < n; j++) Qt[j * m + j] = 1;
  for (let j = n - 1; j >= 0; j--) {
    const beta = betas[j] as number;
    if (beta === 0) continue;
    const wj = j * m;
    // Columns of Q ↔ rows of Qt; H_j acts on entries j..m−1 of each row c ≥ j.
    for (let c = j; c < n; c++) {
      const qc = c * m;
      let s = 0;
      for (let i = j; i < m; i++) s += (W[wj + i] as number) * (Qt[qc + i] as number);
      s *= beta;
      if (s !== 0) for (let i = j; i < m; i++) Qt[qc + i] -= s * (W[wj + i] as number);
    }
  }
  return { q: transpose(Qt, n, m), r };
}

/**
 * Orthonormal basis of the column span of the `m×n` matrix `a` (m ≥ n), as the
 * thin Householder `Q` (m×n). Columns that are linearly dependent still get
 * orthonormal (arbitrary) completions, so the result always has orthonormal columns.
 */
export function orthonormalize(a: ArrayLike<number>, m: number, n: number): Float64Array {
  return qr(a, m, n).q;
}

/** Read-only float64 view: the array itself if it already is a Float64Array, else a copy. */
export function asF64(a: ArrayLike<number>): Float64Array {
  return a instanceof Float64Array ? a : Float64Array.from(a as ArrayLike<number>);
}
