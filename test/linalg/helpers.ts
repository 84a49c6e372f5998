/**
 * Independent brute-force references for the linalg tests: plain triple loops
 * and explicitly built orthogonal matrices (products of Householder
 * reflectors written out here, not taken from src/linalg).
 */
import { Rng } from '../../src/utils/random';

/** Random symmetric n×n with N(0,1) entries. */
export function randomSymmetric(n: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const x = rng.normal();
      a[i * n + j] = x;
      a[j * n + i] = x;
    }
  }
  return a;
}

/** Random m×n with N(0,1) entries. */
export function randomMatrix(m: number, n: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  const a = new Float64Array(m * n);
  for (let i = 0; i < a.length; i++) a[i] = rng.normal();
  return a;
}

/** Plain C = A B (A m×k, B k×n). */
export function mm(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p] as number;
      for (let j = 0; j < n; j++) c[i * n + j] += aip * (b[p * n + j] as number);
    }
  }
  return c;
}

/** Plain transpose of m×n. */
export function tr(a: ArrayLike<number>, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j] as number;
  return t;
}

export function fro(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) ** 2;
  return Math.sqrt(s);
}

/**
 * Random orthogonal n×n as a product of `count` random Householder
 * reflectors (I − 2uuᵀ/uᵀu), each applied explicitly; count = n gives a
 * dense, generic orthogonal matrix.
 */
export function randomOrthogonal(n: number, seed: number, count = Math.min(n, 8)): Float64Array {
  const rng = new Rng(seed);
  const Q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) Q[i * n + i] = 1;
  const u = new Float64Array(n);
  for (let r = 0; r < count; r++) {
    let uu = 0;
    for (let i = 0; i < n; i++) {
      u[i] = rng.normal();
      uu += u[i]! * u[i]!;
    }
    // Q ← Q (I − 2uuᵀ/uᵀu)
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += Q[i * n + j]! * u[j]!;
      s *= 2 / uu;
      for (let j = 0; j < n; j++) Q[i * n + j] -= s * u[j]!;
    }
  }
  return Q;
}

/** Q diag(λ) Qᵀ, symmetrised exactly. */
export function withSpectrum(lambda: ArrayLike<number>, Q: Float64Array): Float64Array {
  const n = lambda.length;
  const QL = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) QL[i * n + j] = Q[i * n + j]! * (lambda[j] as number);
  const A = mm(QL, tr(Q, n, n), n, n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const s = 0.5 * (A[i * n + j]! + A[j * n + i]!);
      A[i * n + j] = s;
      A[j * n + i] = s;
    }
  }
  return A;
}

/** ‖A − V diag(λ) Vᵀ‖_F / ‖A‖_F and max |VᵀV − I| for V n×n with eigenvector columns. */
export function eigenErrors(a: ArrayLike<number>, n: number, values: ArrayLike<number>, V: ArrayLike<number>): { reconstruction: number; orthogonality: number } {
  const VL = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) VL[i * n + j] = (V[i * n + j] as number) * (values[j] as number);
  const Vt = tr(V, n, n);
  const R = mm(VL, Vt, n, n, n);
  let num = 0;
  for (let i = 0; i < n * n; i++) num += (R[i]! - (a[i] as number)) ** 2;
  const den = fro(a);
  const G = mm(Vt, V, n, n, n);
  let orth = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) orth = Math.max(orth, Math.abs(G[i * n + j]! - (i === j ? 1 : 0)));
  return { reconstruction: den === 0 ? Math.sqrt(num) : Math.sqrt(num) / den, orthogonality: orth };
}

export { maxAbs, maxErrScaled } from '../conformance/compare';

