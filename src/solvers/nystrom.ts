/**
 * Randomized Nyström approximation of a symmetric positive semi-definite
 * operator (Tropp et al. 2017, the numerically stable variant used by
 * Frangella, Tropp & Udell 2023):
 *
 *   Ω [ℓ, D] random orthonormal rows, Y = A Ω (one product with ℓ vectors),
 *   ν = √D·ε₃₂·‖Y‖_F (shift), Y_ν = Y + νΩ, L Lᵀ = Ω Y_νᵀ (Cholesky, ℓ×ℓ),
 *   B = L⁻¹ Y_ν, B = Σ Vᵀ U (SVD via the ℓ×ℓ eigenproblem of B Bᵀ),
 *   Â = Uᵀ max(Σ² − ν, 0) U.
 *
 * With ℓ = D (and A PSD) Â = A up to rounding. `nystromSketch` returns Â as a
 * LowRankOperator; `.inverse(λ)` is the sketch-and-solve inverse
 * `Uᵀ (Λ̂+λ)⁻¹ U + (I − UᵀU)/λ`. Cost: one stacked product with ℓ vectors,
 * O(ℓ²D) for the Gram matrices, O(ℓ³) dense float64 work.
 */
import * as tf from '@tensorflow/tfjs';
import { cholesky } from '../linalg/cholesky';
import { eigh } from '../linalg/eigh';
import type { LowRankOperator } from '../operators/linearOperator';
import { Rng } from '../utils/random';
import { orthonormalRows } from './blockCg';
import {
  checkFiniteValues,
  checkInteger,
  combineRows,
  gram,
  lowRankFrom,
  runAsync,
  runSync,
  sizedOperator,
  type OperatorLike,
  type SizedOptions,
  type SolverGenerator,
} from './common';

export interface NystromOptions extends SizedOptions {
  /** Seed of the random test matrix (default 0). */
  seed?: number;
  /**
   * Sketch directions with singular value below `rankTol` times the largest
   * are dropped (their eigenvalue estimate is below rankTol²·max; default 1e-4,
   * above float32 rounding).
   */
  rankTol?: number;
}

export interface NystromFactors {
  /** Orthonormal rows `[r, D]` (r ≤ rank), eigenvalues ascending. */
  U: tf.Tensor2D;
  values: Float64Array;
}

/** Inverse of a lower-triangular ℓ×ℓ matrix (float64). */
function lowerInverse(L: Float64Array, n: number): Float64Array {
  const X = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    X[j * n + j] = 1 / (L[j * n + j] as number);
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += (L[i * n + k] as number) * (X[k * n + j] as number);
      X[i * n + j] = -s / (L[i * n + i] as number);
    }
  }
  return X;
}

export function checkRank(where: string, rank: unknown, D: number): number {
  const r = checkInteger(where, 'rank', rank, 1);
  if (r > D) {
    throw new Error(`${where}: rank ${r} is larger than the operator size D = ${D} (the number of parameters); use rank ≤ ${D}.`);
  }
  return r;
}

/**
 * The random test matrix Ω: `rank` orthonormal rows `[rank, D]` from
 * Gaussian rows drawn with `rng` (seeded: `new Rng(seed)` reproduces it).
 */
export function nystromTestMatrix(D: number, rank: number, rng: Rng, where = 'nystrom'): tf.Tensor2D {
  const G = tf.tensor2d(rng.normals(rank * D), [rank, D]);
  const Omega = orthonormalRows(G, 1e-6);
  G.dispose();
  if (Omega === undefined || Omega.shape[0] !== rank) {
    Omega?.dispose();
    throw new Error(`${where}: the random test matrix is rank deficient; use another seed.`);
  }
  return Omega;
}

export function* nystromGenerator(where: string, D: number, rank: number, options: NystromOptions): SolverGenerator<NystromFactors> {
  const rankTol = options.rankTol ?? 1e-4;
  if (!(rankTol > 0 && rankTol < 1)) throw new Error(`${where}: option 'rankTol' must be in (0, 1), got ${rankTol}.`);
  const rng = new Rng(options.seed ?? 0);
  const owned: tf.Tensor[] = [];
  const own = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  let done = false;
  let U: tf.Tensor2D | undefined;
  try {
    const Omega = own(nystromTestMatrix(D, rank, rng, where));
    const Y = own(yield { V: Omega });
    const yd = Y.dataSync();
    checkFiniteValues(where, 'the sketch A·Ω', yd, 1);
    let fro = 0;
    for (let i = 0; i < yd.length; i++) fro += (yd[i] as number) * (yd[i] as number);
    const nu = Math.sqrt(D) * 2 ** -23 * Math.sqrt(fro);
    if (!(nu > 0)) throw new Error(`${where}: the operator returned 0 on the whole sketch; it has no range to approximate.`);
    const Ynu = own(tf.tidy(() => tf.add(Y, tf.mul(Omega, nu)) as tf.Tensor2D));
    const M = gram(Omega, Ynu);
    for (let i = 0; i < rank; i++) for (let j = 0; j < i; j++) M[i * rank + j] = M[j * rank + i] = 0.5 * ((M[i * rank + j] as number) + (M[j * rank + i] as number));
    let L: Float64Array;
    try {
      L = cholesky(M, rank);
    } catch {
      throw new Error(
        `${where}: Ωᵀ(AΩ) is not positive definite: the Nyström approximation needs a positive semi-definite operator (GGN, empirical Fisher, or a Hessian with enough damping added).`,
      );
    }
    const B = own(combineRows(lowerInverse(L, rank), rank, Ynu)); // [ℓ, D]
    const { values, vectors } = eigh(gram(B, B), rank); // σ² ascending
    const V = vectors as Float64Array;
    const top = Math.max(0, values[rank - 1] as number);
    const keep: number[] = [];
    for (let i = 0; i < rank; i++) {
      const s2 = values[i] as number;
      if (s2 > 0 && Math.sqrt(s2) > rankTol * Math.sqrt(top)) keep.push(i);
    }
    const C = new Float64Array(keep.length * rank);
    const lam = new Float64Array(keep.length);
    keep.forEach((j, r) => {
      const s2 = values[j] as number;
      lam[r] = Math.max(s2 - nu, 0);
      const inv = 1 / Math.sqrt(s2);
      for (let i = 0; i < rank; i++) C[r * rank + i] = (V[i * rank + j] as number) * inv;
    });
    U = combineRows(C, keep.length, B);
    done = true;
    return { U, values: lam };
  } finally {
    tf.dispose(owned);
    if (!done) U?.dispose();
  }
}

/**
 * Rank-ℓ randomized Nyström approximation Â ≈ A of a PSD operator, as a
 * LowRankOperator (`.inverse(λ)`: sketch-and-solve). Throws for rank > D.
 * For a product function pass `{ size: D }`.
 */
export function nystromSketch(op: OperatorLike, rank: number, options: NystromOptions = {}): LowRankOperator {
  const where = 'nystromSketch';
  const A = sizedOperator(where, op, options.size);
  const r = checkRank(where, rank, A.size);
  const f = runSync(nystromGenerator(where, A.size, r, options), A, where, 'nystromSketchAsync');
  return lowRankFrom(f.U, f.values);
}

/** `nystromSketch` for every operator, including those that stream a tf.data.Dataset. */
export async function nystromSketchAsync(op: OperatorLike, rank: number, options: NystromOptions = {}): Promise<LowRankOperator> {
  const where = 'nystromSketchAsync';
  const A = sizedOperator(where, op, options.size);
  const r = checkRank(where, rank, A.size);
  const f = await runAsync(nystromGenerator(where, A.size, r, options), A, where);
  return lowRankFrom(f.U, f.values);
}
