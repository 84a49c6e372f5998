/**
 * Conjugate gradient for symmetric positive-definite `A x = b`, with an
 * optional preconditioner `M ≈ A⁻¹` and a warm start `x0`. A stack of
 * right-hand sides `[K, D]` runs K independent CG recurrences in lockstep,
 * one stacked operator product per iteration (converged systems drop out of
 * the products). Stops system k when ‖r_k‖ ≤ max(rtol·‖b_k‖, atol).
 *
 * Cost per iteration: one product with A (and M), three float64 row
 * reductions of `[K, D]` on the CPU, three axpy's on the device.
 */
import * as tf from '@tensorflow/tfjs';
import { fromStack, LinearOperator } from '../operators/linearOperator';
import {
  asOperator,
  axpyRows,
  checkFiniteValues,
  checkInteger,
  checkNumber,
  gatherRows,
  replace,
  rhsStack,
  rowDots,
  rowNorms,
  runAsync,
  runSync,
  type OperatorLike,
  type SolveResult,
  type SolverGenerator,
} from './common';

export interface CgOptions {
  /** Relative tolerance on ‖b − A x‖/‖b‖ (default 1e-6). */
  rtol?: number;
  /** Absolute tolerance on ‖b − A x‖ (default 0). */
  atol?: number;
  /** Maximum iterations (default min(max(10·D, 100), 1000)). */
  maxIter?: number;
  /** Warm start (b's shape). */
  x0?: tf.Tensor;
  /** Preconditioner M ≈ A⁻¹ (a synchronous operator, e.g. jacobiPreconditioner / nystromPreconditioner). */
  preconditioner?: LinearOperator;
  /** Called after every iteration with the relative residuals of all systems. */
  callback?: (iteration: number, relativeResiduals: Float64Array) => void;
}

/** The options cg and blockCg share, validated. */
export interface CgParsed {
  rtol: number;
  atol: number;
  maxIter: number;
  M: LinearOperator | undefined;
}

function defaultMaxIter(D: number): number {
  return Math.min(Math.max(10 * D, 100), 1000);
}

export function parseCgOptions(where: string, o: CgOptions, D: number): CgParsed {
  const rtol = checkNumber(where, 'rtol', o.rtol ?? 1e-6, 0);
  const atol = checkNumber(where, 'atol', o.atol ?? 0, 0);
  if (rtol === 0 && atol === 0) throw new Error(`${where}: rtol and atol are both 0; the iteration could never stop — give a positive tolerance.`);
  const maxIter = checkInteger(where, 'maxIter', o.maxIter ?? defaultMaxIter(D), 1);
  const M = o.preconditioner;
  if (M !== undefined) {
    if (!(M instanceof LinearOperator)) throw new Error(`${where}: option 'preconditioner' must be a LinearOperator.`);
    if (M.size !== D) throw new Error(`${where}: the preconditioner acts on length ${M.size}, the system on length ${D}.`);
    if (M.isAsync) throw new Error(`${where}: the preconditioner must be synchronous (an explicit operator).`);
  }
  return { rtol, atol, maxIter, M };
}

/** `[Ka, D]` products of the active rows → `[K, D]` with zero rows elsewhere. */
function embedRows(Q: tf.Tensor2D, idx: readonly number[], K: number): tf.Tensor2D {
  const map = new Int32Array(K).fill(idx.length);
  idx.forEach((r, i) => (map[r] = i));
  return tf.tidy(() => tf.gather(tf.concat([Q, tf.zeros([1, Q.shape[1]])]), tf.tensor1d(map, 'int32')) as tf.Tensor2D);
}

export interface CgState {
  X: tf.Tensor2D;
  result: Omit<SolveResult, 'x'>;
}

/**
 * The stopping bookkeeping of cg and blockCg for K systems: tolerances
 * max(rtol·‖b_k‖, atol), which systems are still active (a system stops for
 * good once ‖r_k‖ ≤ its tolerance), relative residuals and their history.
 */
export class CgProgress {
  private readonly bnorm: Float64Array;
  private readonly tol: number[];
  private rnorm: Float64Array = new Float64Array(0);
  private active: boolean[] = [];
  private readonly history: number[] = [];

  constructor(
    private readonly where: string,
    B: tf.Tensor2D,
    o: CgParsed,
  ) {
    this.bnorm = rowNorms(B);
    checkFiniteValues(where, '‖b‖', this.bnorm, 0);
    this.tol = Array.from(this.bnorm, (b) => Math.max(o.rtol * b, o.atol));
  }

  /** The initial residual `R = B − A x0` decides which systems iterate at all. */
  start(R: tf.Tensor2D): void {
    this.rnorm = rowNorms(R);
    checkFiniteValues(this.where, '‖b − A x0‖', this.rnorm, 0);
    this.active = Array.from(this.rnorm, (r, k) => r > (this.tol[k] as number));
  }

  /** The residual after `iteration`: stops the systems that meet their tolerance, reports to `callback`. */
  update(R: tf.Tensor2D, iteration: number, callback: CgOptions['callback']): void {
    this.rnorm = rowNorms(R);
    checkFiniteValues(this.where, 'the residual norm', this.rnorm, iteration);
    this.rnorm.forEach((r, k) => {
      if (!(r > (this.tol[k] as number))) this.active[k] = false;
    });
    const rel = this.relative();
    this.history.push(Math.max(...rel));
    callback?.(iteration, rel);
  }

  get anyActive(): boolean {
    return this.active.some((a) => a);
  }

  /** Indices of the systems still iterating. */
  activeIndices(): number[] {
    return this.active.flatMap((a, k) => (a ? [k] : []));
  }

  private relative(): Float64Array {
    return Float64Array.from(this.rnorm, (r, k) => ((this.bnorm[k] as number) > 0 ? r / (this.bnorm[k] as number) : r));
  }

  result(iterations: number): Omit<SolveResult, 'x'> {
    const rel = this.relative();
    return {
      iterations,
      converged: !this.anyActive,
      residualNorm: Math.max(...this.rnorm),
      relativeResidual: Math.max(...rel),
      residualNorms: Float64Array.from(this.rnorm),
      history: this.history,
    };
  }
}

/** `X = x0` (or 0) and `R = B − A X` (one product when x0 is given; frees X if it fails). */
export function* initialResidual(B: tf.Tensor2D, X0: tf.Tensor2D | undefined): SolverGenerator<{ X: tf.Tensor2D; R: tf.Tensor2D }> {
  if (X0 === undefined) return { X: tf.zeros(B.shape), R: tf.clone(B) };
  const X = tf.clone(X0);
  let Q: tf.Tensor2D;
  try {
    Q = yield { V: X };
  } catch (e) {
    X.dispose();
    throw e;
  }
  const R = tf.sub(B, Q) as tf.Tensor2D;
  Q.dispose();
  return { X, R };
}

/** The CG recurrence as a generator of product requests (see common.ts). Owns nothing of B or X0. */
function* cgGenerator(where: string, B: tf.Tensor2D, X0: tf.Tensor2D | undefined, o: CgParsed, callback?: CgOptions['callback']): SolverGenerator<CgState> {
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
    Z = precondition(R);
    let rz = rowDots(R, Z);
    P = tf.clone(Z);
    let iterations = 0;
    while (progress.anyActive && iterations < o.maxIter) {
      const idx = progress.activeIndices();
      const Pa: tf.Tensor2D = idx.length === K ? P : gatherRows(P, idx);
      try {
        Q = yield { V: Pa };
      } finally {
        if (Pa !== P) Pa.dispose();
      }
      iterations++;
      if (idx.length !== K) Q = replace(Q, embedRows(Q, idx, K));
      const pq = rowDots(P, Q);
      checkFiniteValues(where, 'pᵀAp', pq, iterations);
      const alpha = new Float64Array(K);
      for (const k of idx) {
        if (!((pq[k] as number) > 0)) {
          throw new Error(
            `${where}: pᵀAp = ${pq[k]} ≤ 0 at iteration ${iterations}${K > 1 ? ` (system ${k})` : ''}: the operator is not positive definite (an indefinite Hessian?). Add damping larger than −λ_min, or use the GGN.`,
          );
        }
        alpha[k] = (rz[k] as number) / (pq[k] as number);
      }
      X = replace(X, axpyRows(X, P, alpha));
      R = replace(R, axpyRows(R, Q, alpha.map((a) => -a)));
      Q.dispose();
      Q = undefined;
      progress.update(R, iterations, callback);
      if (!progress.anyActive) break;
      Z = replace(Z, precondition(R));
      const rzNew = rowDots(R, Z);
      const beta = new Float64Array(K);
      for (const k of idx) beta[k] = (rz[k] as number) === 0 ? 0 : (rzNew[k] as number) / (rz[k] as number);
      P = replace(P, tf.tidy(() => tf.add(Z as tf.Tensor2D, tf.mul(P as tf.Tensor2D, tf.tensor2d(Float32Array.from(beta), [K, 1]))) as tf.Tensor2D));
      rz = rzNew;
    }
    done = true;
    return { X, result: progress.result(iterations) };
  } finally {
    tf.dispose([R, Z, P, Q].filter((t): t is tf.Tensor2D => t !== undefined));
    if (!done) X?.dispose();
  }
}

/**
 * The right-hand sides as a stack, the operator, the parsed options and the
 * warm start (cg and blockCg). Frees what it made when a check fails.
 */
export function setupSystems<O extends CgOptions, P>(where: string, op: OperatorLike, b: tf.Tensor, options: O, parse: (where: string, o: O, D: number) => P) {
  const B = rhsStack(where, b);
  try {
    const A = asOperator(op, B.shape[1], where);
    const o = parse(where, options, B.shape[1]);
    let X0: tf.Tensor2D | undefined;
    if (options.x0 !== undefined) {
      const x0 = options.x0;
      if (!(x0 instanceof tf.Tensor) || x0.rank !== b.rank || x0.shape.some((d, i) => d !== b.shape[i])) {
        throw new Error(`${where}: x0 of shape [${(x0 as tf.Tensor).shape?.join(', ')}] must have the right-hand side's shape [${b.shape.join(', ')}].`);
      }
      X0 = rhsStack(where, x0);
    }
    return { A, B, X0, o };
  } catch (e) {
    B.dispose();
    throw e;
  }
}

/** The solution in the right-hand side's rank, with the solver's report. */
export function finishSolve(state: CgState, rank: number): SolveResult {
  return { x: fromStack(state.X, rank), ...state.result };
}

/** Solve `A x = b` (b `[D]` or `[K, D]`) by (preconditioned) conjugate gradients. */
export function cg(op: OperatorLike, b: tf.Tensor, options: CgOptions = {}): SolveResult {
  const where = 'cg';
  const { A, B, X0, o } = setupSystems(where, op, b, options, parseCgOptions);
  try {
    return finishSolve(runSync(cgGenerator(where, B, X0, o, options.callback), A, where, 'cgAsync'), b.rank);
  } finally {
    tf.dispose([B, ...(X0 ? [X0] : [])]);
  }
}

/** `cg` for every operator, including those that stream a tf.data.Dataset. */
export async function cgAsync(op: OperatorLike, b: tf.Tensor, options: CgOptions = {}): Promise<SolveResult> {
  const where = 'cgAsync';
  const { A, B, X0, o } = setupSystems(where, op, b, options, parseCgOptions);
  try {
    return finishSolve(await runAsync(cgGenerator(where, B, X0, o, options.callback), A, where), b.rank);
  } finally {
    tf.dispose([B, ...(X0 ? [X0] : [])]);
  }
}

export interface InverseByCgOptions extends Omit<CgOptions, 'x0' | 'callback'> {
  /** λ in (A + λI)⁻¹ (default 0). */
  damping?: number;
}

/**
 * `(A + λI)⁻¹` as an operator whose products run CG (each `apply` solves
 * for every row of its input). Throws when CG does not converge.
 */
export class CgInverseOperator extends LinearOperator {
  readonly name: string;
  readonly size: number;
  private readonly target: LinearOperator;
  private readonly opts: CgOptions;

  constructor(op: LinearOperator, options: InverseByCgOptions = {}) {
    super();
    const damping = checkNumber('inverseByCg', 'damping', options.damping ?? 0, 0);
    this.target = damping > 0 ? op.damp(damping) : op;
    this.size = op.size;
    this.name = `CG⁻¹${this.target.name}`;
    const { damping: _d, ...rest } = options;
    void _d;
    this.opts = rest;
    parseCgOptions('inverseByCg', rest, op.size);
  }

  override get isAsync(): boolean {
    return this.target.isAsync;
  }

  private check(r: SolveResult): tf.Tensor2D {
    if (!r.converged) {
      r.x.dispose();
      throw new Error(`${this.name}: CG did not converge in ${r.iterations} iterations (relative residual ${r.relativeResidual.toExponential(2)}); raise maxIter or the damping.`);
    }
    return r.x as tf.Tensor2D;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    return this.check(cg(this.target, V, this.opts));
  }

  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    return this.check(await cgAsync(this.target, V, this.opts));
  }
}

/** `(A + λI)⁻¹` applied by CG (an operator; see CgInverseOperator). */
export function inverseByCg(op: LinearOperator, options: InverseByCgOptions = {}): LinearOperator {
  return new CgInverseOperator(op, options);
}
