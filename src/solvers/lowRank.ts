/**
 * Lanczos with full reorthogonalisation for k eigenpairs of a symmetric
 * operator (`eigsh`), and the low-rank approximation built from them
 * (`arnoldi`, pyDVL's name for it):
 *
 *   A ≈ Uᵀ diag(θ) U   (U [k, D] orthonormal Ritz vectors)
 *
 * as a LowRankOperator whose `projectedInverse(λ) = Uᵀ (θ + λ)⁻¹ U` is
 * pyDVL's Arnoldi influence and whose `inverse(λ)` adds the Woodbury
 * correction `(I − UᵀU)/λ` (the exact inverse of the low-rank matrix + λI).
 *
 * Each Lanczos step multiplies A with one vector, orthogonalises it against
 * every previous basis vector twice (classical Gram–Schmidt, float64
 * coefficients), and extends the tridiagonal matrix T. Convergence: the Ritz
 * residual ‖A y − θ y‖ = β_j |s_j| of each wanted pair is below
 * `tol · max|θ|`. On breakdown (an invariant subspace: rank-deficient GGNs,
 * repeated eigenvalues) the iteration restarts with a random vector
 * orthogonal to the basis, so `k = D` recovers the whole spectrum.
 * Cost: m products (m ≤ maxIter), O(m²D) flops for the orthogonalisation
 * (plain 2-D matMuls against a basis kept in chunks of BASIS_CHUNK rows, so
 * appending a vector copies at most one chunk), O(m³) float64 eigensolves of
 * T (every few steps).
 */
import * as tf from '@tensorflow/tfjs';
import { eigh } from '../linalg/eigh';
import type { LowRankOperator } from '../operators/linearOperator';
import { Rng } from '../utils/random';
import {
  checkFiniteValues,
  checkInteger,
  checkNumber,
  gram,
  lowRankFrom,
  runAsync,
  runSync,
  sizedOperator,
  type OperatorLike,
  type SizedOptions,
  type SolverGenerator,
} from './common';
import { checkRank } from './nystrom';

export type EigenWhich = 'largest' | 'smallest' | 'magnitude';

export interface EigshOptions extends SizedOptions {
  /** Which eigenvalues: algebraically largest (default), smallest, or largest in magnitude. */
  which?: EigenWhich;
  /** Maximum Krylov dimension (default min(D, max(2k + 20, 3k))). */
  maxIter?: number;
  /** Ritz residual tolerance relative to the largest |eigenvalue| (default 1e-6). */
  tol?: number;
  /** Seed of the start vector (default 0). */
  seed?: number;
}

export interface EigshResult {
  /** Eigenvalues, ascending. */
  values: Float64Array;
  /** Unit eigenvectors as rows `[k, D]` (row i ↔ values[i]); caller disposes. */
  vectors: tf.Tensor2D;
  /** Products with the operator (Krylov dimension). */
  iterations: number;
  /** Ritz residual norms ‖A y_i − θ_i y_i‖ (same order as values). */
  residuals: Float64Array;
  /** Whether every residual met the tolerance (always true when the Krylov space is exhausted). */
  converged: boolean;
}

function selectIndices(theta: Float64Array, k: number, which: EigenWhich): number[] {
  const idx = Array.from(theta, (_, i) => i);
  if (which === 'largest') idx.sort((a, b) => (theta[b] as number) - (theta[a] as number));
  else if (which === 'smallest') idx.sort((a, b) => (theta[a] as number) - (theta[b] as number));
  else idx.sort((a, b) => Math.abs(theta[b] as number) - Math.abs(theta[a] as number));
  return idx.slice(0, k);
}

/** Tridiagonal T (m×m) from α, β (β[i] couples i and i+1). */
function tridiagonal(alpha: readonly number[], beta: readonly number[], m: number): Float64Array {
  const T = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    T[i * m + i] = alpha[i] as number;
    if (i + 1 < m) T[i * m + i + 1] = T[(i + 1) * m + i] = beta[i] as number;
  }
  return T;
}

/** Rows per basis chunk: appending copies at most one chunk ([BASIS_CHUNK, D]). */
const BASIS_CHUNK = 32;

/**
 * An orthonormal basis [m, D] kept as chunks of at most BASIS_CHUNK rows.
 * Products are plain 2-D matMuls (no transpose flags; a row vector [1, D]
 * becomes the column [D, 1] by a reshape).
 */
class ChunkedBasis {
  private readonly chunks: tf.Tensor2D[] = [];
  rows = 0;

  constructor(private readonly D: number) {}

  /** Append a row [1, D] (copied). */
  append(q: tf.Tensor2D): void {
    const last = this.chunks[this.chunks.length - 1];
    if (last === undefined || last.shape[0] >= BASIS_CHUNK) this.chunks.push(tf.clone(q));
    else {
      this.chunks[this.chunks.length - 1] = tf.concat([last, q]) as tf.Tensor2D;
      last.dispose();
    }
    this.rows++;
  }

  /** Coefficients ⟨q_i, w⟩ for a row w [1, D] (float32 products, returned as float64). */
  project(w: tf.Tensor2D): Float64Array {
    const out = new Float64Array(this.rows);
    const col = tf.reshape(w, [this.D, 1]);
    let o = 0;
    for (const c of this.chunks) {
      const p = tf.matMul(c, col as tf.Tensor2D);
      out.set(p.dataSync(), o);
      o += c.shape[0];
      p.dispose();
    }
    col.dispose();
    return out;
  }

  /** Σ_i C[r, i] q_i for r < rows(C): [r, D] (new tensor). */
  combine(C: ArrayLike<number>, r: number): tf.Tensor2D {
    return tf.tidy(() => {
      let acc: tf.Tensor2D | undefined;
      let o = 0;
      for (const c of this.chunks) {
        const b = c.shape[0];
        const Cc = new Float32Array(r * b);
        for (let i = 0; i < r; i++) for (let j = 0; j < b; j++) Cc[i * b + j] = C[i * this.rows + o + j] as number;
        const term: tf.Tensor2D = tf.matMul(tf.tensor2d(Cc, [r, b]), c);
        acc = acc === undefined ? term : tf.add<tf.Tensor2D>(acc, term);
        o += b;
      }
      return acc as tf.Tensor2D;
    });
  }

  dispose(): void {
    tf.dispose(this.chunks);
    this.chunks.length = 0;
    this.rows = 0;
  }
}

function* lanczosGenerator(where: string, D: number, k: number, o: Required<Omit<EigshOptions, 'size'>>): SolverGenerator<EigshResult> {
  const rng = new Rng(o.seed);
  const basis = new ChunkedBasis(D);
  let W: tf.Tensor2D | undefined;
  let q: tf.Tensor2D | undefined;
  const alpha: number[] = [];
  const beta: number[] = [];
  let done = false;
  let vectors: tf.Tensor2D | undefined;

  /** Orthogonalise w against the basis twice (classical Gram–Schmidt); returns the new w and the coefficients' sum. */
  const orthogonalize = (w: tf.Tensor2D): { w: tf.Tensor2D; coeffs: Float64Array } => {
    const m = basis.rows;
    const total = new Float64Array(m);
    let cur = w;
    for (let pass = 0; pass < 2; pass++) {
      const c = basis.project(cur); // m
      for (let i = 0; i < m; i++) total[i] = (total[i] as number) + (c[i] as number);
      const next = tf.tidy(() => tf.sub(cur, basis.combine(c, 1))) as tf.Tensor2D;
      if (cur !== w) cur.dispose();
      cur = next;
    }
    return { w: cur, coeffs: total };
  };

  /** A random unit vector orthogonal to the basis, or undefined if the basis spans everything. */
  const freshVector = (): tf.Tensor2D | undefined => {
    for (let attempt = 0; attempt < 3; attempt++) {
      let v: tf.Tensor2D = tf.tensor2d(rng.normals(D), [1, D]);
      if (basis.rows > 0) {
        const r = orthogonalize(v);
        v.dispose();
        v = r.w;
      }
      const n = Math.sqrt(gram(v, v)[0] as number);
      if (n > 1e-3) {
        const u = tf.div(v, n) as tf.Tensor2D;
        v.dispose();
        return u;
      }
      v.dispose();
    }
    return undefined;
  };

  try {
    q = freshVector() as tf.Tensor2D;
    let iterations = 0;
    let theta: Float64Array = new Float64Array(0);
    let S: Float64Array = new Float64Array(0);
    let m = 0;
    let converged = false;
    let lastBeta = 0;
    while (true) {
      basis.append(q);
      W = yield { V: q };
      iterations++;
      m = basis.rows;
      const wNorm = Math.sqrt(gram(W, W)[0] as number);
      checkFiniteValues(where, '‖A q‖', [wNorm], iterations);
      const { w, coeffs } = orthogonalize(W);
      W.dispose();
      W = w;
      alpha.push(coeffs[m - 1] as number);
      const b = Math.sqrt(gram(W, W)[0] as number);
      lastBeta = b;
      // Ritz pairs of T every step while small, every 5 steps later.
      const wanted = Math.min(k, m);
      const check = m <= 60 || m % 5 === 0 || m >= o.maxIter || m >= D;
      if (check) {
        const eig = eigh(tridiagonal(alpha, beta, m), m);
        theta = eig.values;
        S = eig.vectors as Float64Array;
        const sel = selectIndices(theta, wanted, o.which);
        const scale = Math.max(...Array.from(theta, Math.abs), 1e-300);
        converged = wanted === k && sel.every((i) => b * Math.abs(S[(m - 1) * m + i] as number) <= o.tol * scale);
      }
      if (converged || m >= o.maxIter || m >= D) break;
      // Breakdown: the Krylov space is invariant (b at float32 rounding level of ‖Aq‖).
      let next: tf.Tensor2D | undefined;
      if (b <= 1e-5 * Math.max(wNorm, 1e-300)) {
        beta.push(0);
        next = freshVector();
        if (next === undefined) break;
      } else {
        beta.push(b);
        next = tf.div(W, b) as tf.Tensor2D;
      }
      W.dispose();
      W = undefined;
      q.dispose();
      q = next;
    }
    // Final Ritz pairs (recompute if the last step skipped the check).
    const eig = eigh(tridiagonal(alpha, beta, m), m);
    theta = eig.values;
    S = eig.vectors as Float64Array;
    const sel = selectIndices(theta, Math.min(k, m), o.which).sort((a, b) => (theta[a] as number) - (theta[b] as number));
    const C = new Float64Array(sel.length * m);
    sel.forEach((j, r) => {
      for (let i = 0; i < m; i++) C[r * m + i] = S[i * m + j] as number;
    });
    vectors = basis.combine(C, sel.length);
    const residuals = Float64Array.from(sel, (i) => lastBeta * Math.abs(S[(m - 1) * m + i] as number));
    const scale = Math.max(...Array.from(theta, Math.abs), 1e-300);
    if (sel.length < k) {
      throw new Error(`${where}: found only ${sel.length} of ${k} eigenpairs (Krylov dimension ${m}); raise maxIter.`);
    }
    done = true;
    return {
      values: Float64Array.from(sel, (i) => theta[i] as number),
      vectors,
      iterations,
      residuals,
      converged: m >= D || residuals.every((r) => r <= o.tol * scale),
    };
  } finally {
    basis.dispose();
    tf.dispose([W, q].filter((t): t is tf.Tensor2D => t !== undefined && !t.isDisposed));
    if (!done) vectors?.dispose();
  }
}

function parse(where: string, D: number, k: number, o: EigshOptions): Required<Omit<EigshOptions, 'size'>> {
  const which = o.which ?? 'largest';
  if (!['largest', 'smallest', 'magnitude'].includes(which)) {
    throw new Error(`${where}: option 'which' must be 'largest', 'smallest' or 'magnitude', got '${String(which)}'.`);
  }
  const maxIter = checkInteger(where, 'maxIter', o.maxIter ?? Math.min(D, Math.max(2 * k + 20, 3 * k)), k);
  return {
    which,
    maxIter: Math.min(maxIter, D),
    tol: checkNumber(where, 'tol', o.tol ?? 1e-6, 0, true),
    seed: o.seed ?? 0,
  };
}

/** k eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation. */
export function eigsh(op: OperatorLike, k: number, options: EigshOptions = {}): EigshResult {
  const where = 'eigsh';
  const A = sizedOperator(where, op, options.size);
  const r = checkRank(where, k, A.size);
  return runSync(lanczosGenerator(where, A.size, r, parse(where, A.size, r, options)), A, where, 'eigshAsync');
}

export async function eigshAsync(op: OperatorLike, k: number, options: EigshOptions = {}): Promise<EigshResult> {
  const where = 'eigshAsync';
  const A = sizedOperator(where, op, options.size);
  const r = checkRank(where, k, A.size);
  return runAsync(lanczosGenerator(where, A.size, r, parse(where, A.size, r, options)), A, where);
}

export interface ArnoldiOptions extends EigshOptions {}

/**
 * Rank-k approximation `Uᵀ diag(θ) U` of a symmetric operator from its k
 * eigenpairs (default: largest in magnitude, as pyDVL's Arnoldi). Use
 * `.projectedInverse(λ)` (pyDVL) or `.inverse(λ)` (with the Woodbury correction).
 */
export function arnoldi(op: OperatorLike, rank: number, options: ArnoldiOptions = {}): LowRankOperator {
  const r = eigsh(op, rank, { which: 'magnitude', ...options });
  return lowRankFrom(r.vectors, r.values);
}

export async function arnoldiAsync(op: OperatorLike, rank: number, options: ArnoldiOptions = {}): Promise<LowRankOperator> {
  const r = await eigshAsync(op, rank, { which: 'magnitude', ...options });
  return lowRankFrom(r.vectors, r.values);
}
