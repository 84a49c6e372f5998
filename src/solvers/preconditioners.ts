/**
 * Preconditioners M ≈ (A + μI)⁻¹ for cg / blockCg (`preconditioner` option):
 *
 * - Jacobi: `diag(1/(d + μ))` with d the diagonal of A — given explicitly
 *   (e.g. from DiagGGNExact) or estimated by Hutchinson's estimator
 *   `d ≈ (1/S) Σ_s z_s ⊙ A z_s` with Rademacher z_s (one stacked product of
 *   S vectors). Negative estimates are clamped to 0.
 * - Nyström (Frangella, Tropp & Udell 2023): from the rank-ℓ Nyström
 *   approximation Uᵀ Λ̂ U, `P⁻¹ = (λ̂_ℓ + μ) Uᵀ (Λ̂ + μI)⁻¹ U + (I − UᵀU)`
 *   where λ̂_ℓ is the smallest retained Nyström eigenvalue. With ℓ chosen so
 *   that λ̂_ℓ ≲ μ, preconditioned CG converges in a few iterations
 *   independently of the spectrum.
 */
import * as tf from '@tensorflow/tfjs';
import { DiagonalOperator, LowRankOperator } from '../operators/linearOperator';
import { Rng } from '../utils/random';
import {
  checkFiniteValues,
  checkInteger,
  checkNumber,
  lowRankFrom,
  runAsync,
  runSync,
  sizedOperator,
  type OperatorLike,
  type SizedOptions,
  type SolverGenerator,
} from './common';
import { checkRank, nystromGenerator, type NystromFactors, type NystromOptions } from './nystrom';

export interface HutchinsonOptions extends SizedOptions {
  /** Number of random probe vectors S (default 16). */
  samples?: number;
  seed?: number;
}

function* hutchinsonGenerator(where: string, D: number, options: HutchinsonOptions): SolverGenerator<Float64Array> {
  const S = checkInteger(where, 'samples', options.samples ?? 16, 1);
  const rng = new Rng(options.seed ?? 0);
  const z = new Float32Array(S * D);
  for (let i = 0; i < z.length; i++) z[i] = rng.uniform() < 0.5 ? -1 : 1;
  const Z = tf.tensor2d(z, [S, D]);
  let AZ: tf.Tensor2D | undefined;
  try {
    AZ = yield { V: Z };
    const az = AZ.dataSync();
    checkFiniteValues(where, 'A·z', az, 1);
    const d = new Float64Array(D);
    for (let s = 0; s < S; s++) for (let i = 0; i < D; i++) d[i] = (d[i] as number) + (z[s * D + i] as number) * (az[s * D + i] as number);
    for (let i = 0; i < D; i++) d[i] = (d[i] as number) / S;
    return d;
  } finally {
    tf.dispose([Z, ...(AZ ? [AZ] : [])]);
  }
}

/** Hutchinson estimate of diag(A) (float64), from S Rademacher probes. */
export function hutchinsonDiagonal(op: OperatorLike, options: HutchinsonOptions = {}): Float64Array {
  const where = 'hutchinsonDiagonal';
  const A = sizedOperator(where, op, options.size);
  return runSync(hutchinsonGenerator(where, A.size, options), A, where, 'hutchinsonDiagonalAsync');
}

export async function hutchinsonDiagonalAsync(op: OperatorLike, options: HutchinsonOptions = {}): Promise<Float64Array> {
  const where = 'hutchinsonDiagonalAsync';
  const A = sizedOperator(where, op, options.size);
  return runAsync(hutchinsonGenerator(where, A.size, options), A, where);
}

export interface JacobiOptions extends HutchinsonOptions {
  /** μ in (A + μI) (default 0; then every diagonal entry must be > 0). */
  damping?: number;
  /** The exact diagonal (skips the estimate). */
  diagonal?: tf.Tensor | ArrayLike<number>;
}

function jacobiFrom(where: string, d: ArrayLike<number>, damping: number): DiagonalOperator {
  const inv = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const s = Math.max(d[i] as number, 0) + damping;
    if (!(s > 0) || !Number.isFinite(s)) {
      throw new Error(`${where}: diagonal entry ${i} + damping is ${s}; a Jacobi preconditioner needs positive entries — pass damping > 0.`);
    }
    inv[i] = 1 / s;
  }
  return new DiagonalOperator(inv);
}

/** Jacobi preconditioner `diag(1/(max(d, 0) + μ))` (Hutchinson estimate of d unless `diagonal` is given). */
export function jacobiPreconditioner(op: OperatorLike, options: JacobiOptions = {}): DiagonalOperator {
  const where = 'jacobiPreconditioner';
  const damping = checkNumber(where, 'damping', options.damping ?? 0, 0);
  const A = sizedOperator(where, op, options.size);
  const d = diagonalOption(where, options.diagonal, A.size) ?? hutchinsonDiagonal(A, options);
  return jacobiFrom(where, d, damping);
}

export async function jacobiPreconditionerAsync(op: OperatorLike, options: JacobiOptions = {}): Promise<DiagonalOperator> {
  const where = 'jacobiPreconditionerAsync';
  const damping = checkNumber(where, 'damping', options.damping ?? 0, 0);
  const A = sizedOperator(where, op, options.size);
  const d = diagonalOption(where, options.diagonal, A.size) ?? (await hutchinsonDiagonalAsync(A, options));
  return jacobiFrom(where, d, damping);
}

function diagonalOption(where: string, d: JacobiOptions['diagonal'], D: number): ArrayLike<number> | undefined {
  if (d === undefined) return undefined;
  const v = d instanceof tf.Tensor ? d.dataSync() : d;
  if (v.length !== D) throw new Error(`${where}: option 'diagonal' has ${v.length} entries, the operator has size ${D}.`);
  return v;
}

export interface NystromPreconditionerOptions extends NystromOptions {
  /** μ > 0: the damping of the system (A + μI) x = b that CG will solve. */
  damping: number;
}

function preconditionerFrom(f: NystromFactors, mu: number): LowRankOperator {
  const lmin = f.values.length > 0 ? Math.min(...f.values) : 0;
  return lowRankFrom(
    f.U,
    f.values.map((l) => (lmin + mu) / (l + mu) - 1),
    1,
  );
}

/** Nyström preconditioner of rank ℓ for `(A + μI)` (A PSD; μ > 0). */
export function nystromPreconditioner(op: OperatorLike, rank: number, options: NystromPreconditionerOptions): LowRankOperator {
  const where = 'nystromPreconditioner';
  const mu = checkNumber(where, 'damping', options?.damping, 0, true);
  const A = sizedOperator(where, op, options.size);
  const r = checkRank(where, rank, A.size);
  return preconditionerFrom(runSync(nystromGenerator(where, A.size, r, options), A, where, 'nystromPreconditionerAsync'), mu);
}

export async function nystromPreconditionerAsync(op: OperatorLike, rank: number, options: NystromPreconditionerOptions): Promise<LowRankOperator> {
  const where = 'nystromPreconditionerAsync';
  const mu = checkNumber(where, 'damping', options?.damping, 0, true);
  const A = sizedOperator(where, op, options.size);
  const r = checkRank(where, rank, A.size);
  return preconditionerFrom(await runAsync(nystromGenerator(where, A.size, r, options), A, where), mu);
}
