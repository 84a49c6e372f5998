/**
 * Cholesky factorisation and SPD solves in float64 on the CPU.
 * A = L Lᵀ with L lower triangular (row-major n×n). Cost n³/3 flops to
 * factor, 2n²·nrhs to solve.
 */
import { asF64, checkFinite, checkLength, checkSize, checkSquare } from './dense';

/**
 * Lower Cholesky factor L of the symmetric positive-definite `n×n` matrix `a`
 * (A = L Lᵀ, entries above the diagonal are zero). Uses the symmetric part
 * (A + Aᵀ)/2, like `eigh`. Throws naming the failing pivot when A is not
 * (numerically) positive definite. `a` is not mutated.
 */
export function cholesky(a: ArrayLike<number>, n: number): Float64Array {
  checkSquare('cholesky', 'a', a, n);
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) L[i * n + j] = 0.5 * ((a[i * n + j] as number) + (a[j * n + i] as number));
  }
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, Math.abs(L[i * n + i] as number));
  // Row-oriented (Cholesky–Banachiewicz): row i from the rows above, all dot
  // products over contiguous row prefixes.
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j < i; j++) {
      const rj = j * n;
      let s = L[ri + j] as number;
      for (let p = 0; p < j; p++) s -= (L[ri + p] as number) * (L[rj + p] as number);
      L[ri + j] = s / (L[rj + j] as number);
    }
    let s = L[ri + i] as number;
    for (let p = 0; p < i; p++) s -= (L[ri + p] as number) * (L[ri + p] as number);
    if (!(s > 0)) {
      const damping = Math.max(Math.abs(s), Number.EPSILON * maxDiag * n, Number.MIN_VALUE);
      throw new Error(
        `cholesky: the matrix is not positive definite — pivot ${i} (0-based) is ${s} ≤ 0 ` +
          `(largest |diagonal| ${maxDiag}). Add damping, e.g. A + λI with λ ≳ ${damping.toExponential(2)} ` +
          `(or use eigh for semi-definite/indefinite matrices).`,
      );
    }
    L[ri + i] = Math.sqrt(s);
  }
  return L;
}

/**
 * Solves (L Lᵀ) X = B given the lower Cholesky factor `L` (n×n) and the
 * right-hand sides `b` (row-major n×nrhs, default nrhs = 1). Returns X (n×nrhs).
 */
export function choleskySolve(L: ArrayLike<number>, n: number, b: ArrayLike<number>, nrhs = 1): Float64Array {
  const fn = 'choleskySolve';
  checkSize(fn, 'n', n);
  checkSize(fn, 'nrhs', nrhs);
  checkLength(fn, 'L', L, n * n, `${n}×${n}`);
  checkLength(fn, 'b', b, n * nrhs, `${n}×${nrhs}`);
  checkFinite(fn, 'b', b, nrhs);
  const Lm = asF64(L);
  for (let i = 0; i < n; i++) {
    const lii = Lm[i * n + i] as number;
    if (!(lii !== 0 && Number.isFinite(lii))) {
      throw new Error(`${fn}: L[${i}, ${i}] is ${lii}; L must be a lower Cholesky factor with a non-zero finite diagonal.`);
    }
  }
  const X = Float64Array.from(b);
  // Forward: L Y = B, row i of Y from rows p < i.
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    const xi = i * nrhs;
    for (let p = 0; p < i; p++) {
      const l = Lm[ri + p] as number;
      if (l === 0) continue;
      const xp = p * nrhs;
      for (let c = 0; c < nrhs; c++) X[xi + c] -= l * (X[xp + c] as number);
    }
    const inv = 1 / (Lm[ri + i] as number);
    for (let c = 0; c < nrhs; c++) X[xi + c] *= inv;
  }
  // Backward: Lᵀ X = Y, column-oriented so that L is read by rows.
  for (let i = n - 1; i >= 0; i--) {
    const ri = i * n;
    const xi = i * nrhs;
    const inv = 1 / (Lm[ri + i] as number);
    for (let c = 0; c < nrhs; c++) X[xi + c] *= inv;
    for (let p = 0; p < i; p++) {
      const l = Lm[ri + p] as number;
      if (l === 0) continue;
      const xp = p * nrhs;
      for (let c = 0; c < nrhs; c++) X[xp + c] -= l * (X[xi + c] as number);
    }
  }
  return X;
}

/** Solves A X = B for symmetric positive-definite A (n×n) and B (n×nrhs) via Cholesky. */
export function solveSPD(a: ArrayLike<number>, n: number, b: ArrayLike<number>, nrhs = 1): Float64Array {
  checkSize('solveSPD', 'n', n);
  checkSize('solveSPD', 'nrhs', nrhs);
  checkLength('solveSPD', 'b', b, n * nrhs, `${n}×${nrhs}`);
  return choleskySolve(cholesky(a, n), n, b, nrhs);
}
