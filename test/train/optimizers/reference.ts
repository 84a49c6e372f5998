/**
 * Float64 references for the optimizer tests, independent of curvpack:
 * explicit dense matrices, Kronecker products, Gaussian elimination, and
 * the model's flat parameter vector.
 */
import * as tf from '@tensorflow/tfjs';

/** The model's trainable weights as one float64 vector (flat order: layer order, kernel before bias, row-major). */
export function flatWeights(model: tf.LayersModel): Float64Array {
  const parts = model.trainableWeights.map((w) => Array.from((w.read() as tf.Tensor).dataSync()));
  return Float64Array.from(parts.flat());
}

/** Row-major `kron(A, B)` of an `a×a` and a `b×b` matrix. */
export function kron(A: ArrayLike<number>, a: number, B: ArrayLike<number>, b: number): Float64Array {
  const n = a * b;
  const out = new Float64Array(n * n);
  for (let i = 0; i < a; i++)
    for (let j = 0; j < a; j++) {
      const aij = A[i * a + j] as number;
      for (let k = 0; k < b; k++) for (let l = 0; l < b; l++) out[(i * b + k) * n + j * b + l] = aij * (B[k * b + l] as number);
    }
  return out;
}

/** `M + d·I` (n×n, new array). */
export function addIdentity(M: ArrayLike<number>, n: number, d: number): Float64Array {
  const out = Float64Array.from(M);
  for (let i = 0; i < n; i++) out[i * n + i] += d;
  return out;
}

/** Solve `M x = b` by Gaussian elimination with partial pivoting (float64). */
export function solve(M: ArrayLike<number>, b: ArrayLike<number>, n: number): Float64Array {
  const A = Float64Array.from(M);
  const x = Float64Array.from(b);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r * n + c] as number) > Math.abs(A[piv * n + c] as number)) piv = r;
    if (piv !== c) {
      for (let k = 0; k < n; k++) {
        const t = A[c * n + k] as number;
        A[c * n + k] = A[piv * n + k] as number;
        A[piv * n + k] = t;
      }
      const t = x[c] as number;
      x[c] = x[piv] as number;
      x[piv] = t;
    }
    const p = A[c * n + c] as number;
    if (p === 0) throw new Error('solve: singular matrix');
    for (let r = c + 1; r < n; r++) {
      const f = (A[r * n + c] as number) / p;
      if (f === 0) continue;
      for (let k = c; k < n; k++) A[r * n + k] -= f * (A[c * n + k] as number);
      x[r] -= f * (x[c] as number);
    }
  }
  for (let r = n - 1; r >= 0; r--) {
    let s = x[r] as number;
    for (let k = r + 1; k < n; k++) s -= (A[r * n + k] as number) * (x[k] as number);
    x[r] = s / (A[r * n + r] as number);
  }
  return x;
}

export { maxRelErr } from '../../conformance/compare';

/** `a − b`. */
export function sub(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => (a[i] as number) - (b[i] as number));
}
