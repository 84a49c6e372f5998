/**
 * Breakdown-free block conjugate gradient (Ji & Li 2017) for `A X = B` with
 * K right-hand sides `B [K, D]` (one per row) and symmetric positive-definite A.
 *
 * All systems share one Krylov space: each iteration multiplies A with a
 * block of s ≤ K search directions P (rows orthonormal), so K systems usually
 * need far fewer iterations than K separate CG runs. Directions that become
 * linearly dependent (e.g. converged systems, or right-hand sides in a common
 * subspace) are dropped by a rank-revealing orthonormalisation instead of
 * breaking down:
 *
 *   Q = A P, δ = P Qᵀ (s×s), Λ = δ⁻¹ (P Rᵀ)
 *   X ← X + Λᵀ P,  R ← R − Λᵀ Q
 *   Z = M R,  β = −δ⁻¹ (Q Zᵀ),  P ← orth(Z + βᵀ P)   (rows of unconverged systems)
 *
 * s×s and s×K systems are solved in float64 (Cholesky); Gram matrices are
 * float64 reductions of the float32 blocks (common.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { cholesky, choleskySolve } from '../linalg/cholesky';
import { eigh } from '../linalg/eigh';
import {
  checkFiniteValues,
  checkNumber,
  combineRows,
  gatherRows,
  gram,
  replace,
  runAsync,
  runSync,
  type OperatorLike,
  type SolveResult,
  type SolverGenerator,
} from './common';
import { CgProgress, finishSolve, initialResidual, parseCgOptions, setupSystems, type CgOptions, type CgParsed, type CgState } from './cg';

export interface BlockCgOptions extends CgOptions {
  /**
   * Directions whose singular value is below `rankTol` times the largest
   * are dropped in the orthonormalisation (default 1e-5: above float32
   * rounding of the blocks).
   */
  rankTol?: number;
}

interface Parsed extends CgParsed {
  rankTol: number;
}

function parse(where: string, o: BlockCgOptions, D: number): Parsed {
  return { ...parseCgOptions(where, o, D), rankTol: checkNumber(where, 'rankTol', o.rankTol ?? 1e-5, 0, true) };
}

/**
 * Orthonormal rows spanning the rows of W `[m, D]` (singular values below
 * rankTol·max dropped): two passes of Gram-eigendecomposition
 * orthonormalisation (float64 Gram and eigensolve, float32 combination).
 * Returns undefined when W has numerical rank 0. Does not dispose W.
 */
export function orthonormalRows(W: tf.Tensor2D, rankTol: number): tf.Tensor2D | undefined {
  let cur = W;
  for (let pass = 0; pass < 2; pass++) {
    const m = cur.shape[0];
    const G = gram(cur, cur);
    const { values, vectors } = eigh(G, m);
    const U = vectors as Float64Array;
    const top = Math.max(0, values[m - 1] as number);
    const keep: number[] = [];
    for (let i = m - 1; i >= 0; i--) {
      const v = values[i] as number;
      if (v > 0 && Math.sqrt(v) > rankTol * Math.sqrt(top)) keep.push(i);
    }
    if (keep.length === 0 || !(top > 0)) {
      if (cur !== W) cur.dispose();
      return undefined;
    }
    // Row j of the new basis: (1/σ_j) Σ_i U[i, j] w_i.
    const C = new Float64Array(keep.length * m);
    keep.forEach((j, r) => {
      const s = 1 / Math.sqrt(values[j] as number);
      for (let i = 0; i < m; i++) C[r * m + i] = (U[i * m + j] as number) * s;
    });
    const next = combineRows(C, keep.length, cur);
    if (cur !== W) cur.dispose();
    cur = next;
  }
  return cur;
}

/** `δ⁻¹ Y` for the SPD s×s δ and Y s×K (float64). */
function spdSolve(where: string, delta: Float64Array, s: number, Y: Float64Array, K: number, L: Float64Array | undefined, iteration: number): { X: Float64Array; L: Float64Array } {
  let chol = L;
  if (chol === undefined) {
    try {
      chol = cholesky(delta, s);
    } catch {
      throw new Error(
        `${where}: PᵀAP is not positive definite at iteration ${iteration}: the operator is not positive definite (an indefinite Hessian?). Add damping larger than −λ_min, or use the GGN.`,
      );
    }
  }
  return { X: choleskySolve(chol, s, Y, K), L: chol };
}

function transposeSmall(a: Float64Array, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j] as number;
  return out;
}

function* blockCgGenerator(where: string, B: tf.Tensor2D, X0: tf.Tensor2D | undefined, o: Parsed, callback?: CgOptions['callback']): SolverGenerator<CgState> {
  const K = B.shape[0];
  let X: tf.Tensor2D | undefined;
  let R: tf.Tensor2D | undefined;
  let Z: tf.Tensor2D | undefined;
  let P: tf.Tensor2D | undefined;
  let Q: tf.Tensor2D | undefined;
  let done = false;
  const precondition = (Rm: tf.Tensor2D): tf.Tensor2D => (o.M ? o.M.matmat(Rm) : tf.clone(Rm));
  try {
    const progress = new CgProgress(where, B, o);
    ({ X, R } = yield* initialResidual(B, X0));
    progress.start(R);
    /** Orthonormalised active rows of T (undefined when they have rank 0); T is kept. */
    const nextDirections = (T: tf.Tensor2D): tf.Tensor2D | undefined => {
      const idx = progress.activeIndices();
      const Ta = idx.length === K ? T : gatherRows(T, idx);
      try {
        return orthonormalRows(Ta, o.rankTol);
      } finally {
        if (Ta !== T) Ta.dispose();
      }
    };
    Z = precondition(R);
    if (progress.anyActive) P = nextDirections(Z);
    let iterations = 0;
    while (P !== undefined && progress.anyActive && iterations < o.maxIter) {
      const s = P.shape[0];
      Q = yield { V: P };
      iterations++;
      const delta = gram(P, Q);
      checkFiniteValues(where, 'PᵀAP', delta, iterations);
      for (let i = 0; i < s; i++) for (let j = 0; j < i; j++) delta[i * s + j] = delta[j * s + i] = 0.5 * ((delta[i * s + j] as number) + (delta[j * s + i] as number));
      const { X: Lam, L } = spdSolve(where, delta, s, gram(P, R), K, undefined, iterations); // s×K
      const LamT = transposeSmall(Lam, s, K); // K×s
      X = replace(X, tf.tidy(() => tf.add(X as tf.Tensor2D, combineRows(LamT, K, P as tf.Tensor2D)) as tf.Tensor2D));
      R = replace(R, tf.tidy(() => tf.sub(R as tf.Tensor2D, combineRows(LamT, K, Q as tf.Tensor2D)) as tf.Tensor2D));
      progress.update(R, iterations, callback);
      if (!progress.anyActive) break;
      Z = replace(Z, precondition(R));
      const beta = spdSolve(where, delta, s, gram(Q, Z), K, L, iterations).X; // s×K, sign below
      Q.dispose();
      Q = undefined;
      const betaT = transposeSmall(beta, s, K).map((v) => -v); // K×s
      const W = tf.tidy(() => tf.add(Z as tf.Tensor2D, combineRows(betaT, K, P as tf.Tensor2D)) as tf.Tensor2D);
      const next = nextDirections(W);
      W.dispose();
      P.dispose();
      P = next;
    }
    done = true;
    return { X, result: progress.result(iterations) };
  } finally {
    tf.dispose([R, Z, P, Q].filter((t): t is tf.Tensor2D => t !== undefined));
    if (!done) X?.dispose();
  }
}

/** Solve `A X = B` for K right-hand sides (rows of B `[K, D]`, or one `[D]`) by breakdown-free block CG. */
export function blockCg(op: OperatorLike, b: tf.Tensor, options: BlockCgOptions = {}): SolveResult {
  const where = 'blockCg';
  const { A, B, X0, o } = setupSystems(where, op, b, options, parse);
  try {
    return finishSolve(runSync(blockCgGenerator(where, B, X0, o, options.callback), A, where, 'blockCgAsync'), b.rank);
  } finally {
    tf.dispose([B, ...(X0 ? [X0] : [])]);
  }
}

/** `blockCg` for every operator, including those that stream a tf.data.Dataset. */
export async function blockCgAsync(op: OperatorLike, b: tf.Tensor, options: BlockCgOptions = {}): Promise<SolveResult> {
  const where = 'blockCgAsync';
  const { A, B, X0, o } = setupSystems(where, op, b, options, parse);
  try {
    return finishSolve(await runAsync(blockCgGenerator(where, B, X0, o, options.callback), A, where), b.rank);
  } finally {
    tf.dispose([B, ...(X0 ? [X0] : [])]);
  }
}
