/**
 * Shared machinery of the solvers.
 *
 * Each solver is written once, as a generator that yields product requests
 * (a stack `[K, D]` to multiply with the operator) and receives the products;
 * a synchronous driver (`cg`, `lissa`, …) or an asynchronous one (`cgAsync`,
 * …, for operators that stream a tf.data.Dataset) answers the requests. The
 * generator owns the tensors it yields and the products it receives; on an
 * error the driver throws it into the generator so that its `finally`
 * blocks free everything.
 *
 * Vectors stay float32 tensors; reductions (dot products, Gram matrices) are
 * accumulated in float64 on the CPU from `dataSync` (measured on wasm,
 * D = 235k: a float32 `sum(mul)` has relative error ~1e-5, the float64 dot
 * product after two downloads costs ~1.9 ms) — small dense problems
 * (K×K Gram systems, tridiagonal matrices) are solved in float64 (src/linalg).
 */
import * as tf from '@tensorflow/tfjs';
import { isSampledOperator, type SampledOperator } from '../operators/curvature';
import { LinearOperator, LowRankOperator, MatvecOperator, toStack, type Matvec } from '../operators/linearOperator';
import type { Rng } from '../utils/random';

/** An operator, or a product function `v ↦ A v` (called with `[D]` vectors). */
export type OperatorLike = LinearOperator | Matvec;

export interface ProductRequest {
  readonly V: tf.Tensor2D;
  /** Multiply with a random minibatch's curvature instead (LiSSA). */
  readonly sampled?: { readonly rng: Rng; readonly batchSize: number };
}

export type SolverGenerator<R> = Generator<ProductRequest, R, tf.Tensor2D>;

/** Wrap a product function; validate sizes. */
export function asOperator(op: OperatorLike, size: number, where: string): LinearOperator {
  if (op instanceof LinearOperator) {
    if (op.size !== size) {
      throw new Error(`${where}: the operator acts on vectors of length ${op.size}, but the right-hand side has length ${size}.`);
    }
    return op;
  }
  if (typeof op === 'function') return new MatvecOperator(size, op, { name: `${where} product function` });
  throw new Error(`${where}: expected a LinearOperator or a function v ↦ A·v, got ${typeof op}.`);
}

export interface SizedOptions {
  /** Vector length D, needed only when the operator is a product function. */
  size?: number;
}

/** An operator from an operator or a product function plus `size`. */
export function sizedOperator(where: string, op: OperatorLike, size: number | undefined): LinearOperator {
  if (op instanceof LinearOperator) {
    if (size !== undefined && size !== op.size) throw new Error(`${where}: option size = ${size} but the operator has size ${op.size}.`);
    return op;
  }
  if (size === undefined || !Number.isInteger(size) || size < 1) {
    throw new Error(`${where}: for a product function pass the vector length as option 'size' (an integer ≥ 1).`);
  }
  return asOperator(op, size, where);
}

function answer(op: LinearOperator, req: ProductRequest, where: string): tf.Tensor2D {
  if (req.sampled) {
    if (!isSampledOperator(op)) throw new Error(`${where}: minibatch sampling needs a curvature operator over data.`);
    return (op as LinearOperator & SampledOperator).sampledMatmat(req.V, req.sampled.rng, req.sampled.batchSize);
  }
  return op.matmat(req.V);
}

async function answerAsync(op: LinearOperator, req: ProductRequest, where: string): Promise<tf.Tensor2D> {
  if (req.sampled) {
    if (!isSampledOperator(op)) throw new Error(`${where}: minibatch sampling needs a curvature operator over data.`);
    return (op as LinearOperator & SampledOperator).sampledMatmatAsync(req.V, req.sampled.rng, req.sampled.batchSize);
  }
  return op.matmatAsync(req.V);
}

/** Drive a solver synchronously. */
export function runSync<R>(gen: SolverGenerator<R>, op: LinearOperator, where: string, asyncName: string): R {
  if (op.isAsync) {
    gen.return(undefined as unknown as R);
    throw new Error(`${where}: ${op.name} is asynchronous (it streams a tf.data.Dataset); use ${asyncName} instead.`);
  }
  let step = gen.next();
  while (!step.done) {
    let res: tf.Tensor2D;
    try {
      res = answer(op, step.value, where);
    } catch (e) {
      gen.throw(e);
      throw e;
    }
    step = gen.next(res);
  }
  return step.value;
}

/** Drive a solver asynchronously (any operator). */
export async function runAsync<R>(gen: SolverGenerator<R>, op: LinearOperator, where: string): Promise<R> {
  let step = gen.next();
  while (!step.done) {
    let res: tf.Tensor2D;
    try {
      res = await answerAsync(op, step.value, where);
    } catch (e) {
      gen.throw(e);
      throw e;
    }
    step = gen.next(res);
  }
  return step.value;
}

/** Right-hand sides: `[D]` or `[K, D]` float32 → a stack `[K, D]` (new tensor object). */
export function rhsStack(where: string, b: tf.Tensor): tf.Tensor2D {
  if (!(b instanceof tf.Tensor)) throw new Error(`${where}: the right-hand side must be a tensor [D] or [K, D], got ${typeof b}.`);
  const size = b.shape[b.rank - 1] as number;
  if (b.rank < 1 || b.rank > 2 || size < 1) {
    throw new Error(`${where}: the right-hand side must be a tensor [D] or [K, D], got shape [${b.shape.join(', ')}].`);
  }
  return toStack(where, size, b);
}

export { checkInteger, checkNumber } from '../utils/options';

/** Throws on NaN/Inf in a float64 array, naming what produced it. */
export function checkFiniteValues(where: string, what: string, values: ArrayLike<number>, iteration: number): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i] as number)) {
      throw new Error(
        `${where}: ${what} is ${values[i]} at iteration ${iteration}: the operator returned non-finite values (NaN/Inf). Check the model weights, the data and the damping.`,
      );
    }
  }
}

// ---------------------------------------------------------------------------
// Float64 reductions on the CPU.

/** Row-wise dot products ⟨a_k, b_k⟩ of two stacks `[K, D]` (float64). */
export function rowDots(A: tf.Tensor2D, B: tf.Tensor2D): Float64Array {
  const [K, D] = A.shape;
  const a = A.dataSync();
  const b = A === B ? a : B.dataSync();
  const out = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    let s = 0;
    const o = k * D;
    for (let i = 0; i < D; i++) s += (a[o + i] as number) * (b[o + i] as number);
    out[k] = s;
  }
  return out;
}

export function rowNorms(A: tf.Tensor2D): Float64Array {
  return rowDots(A, A).map(Math.sqrt);
}

/** Work (k·m·D) below which Gram matrices are accumulated in float64 on the CPU. */
const CPU_GRAM_WORK = 3e8;

/**
 * Gram matrix `A Bᵀ` (`[k, D] × [m, D] → k×m`, row-major float64). Float64
 * on the CPU up to k·m·D = 3e8 (≈0.4 s); above, a float32 device matMul
 * (transposeB: measured faster than an explicit transpose for this shape,
 * 17 vs 30 ms at k = m = 10, D = 235k).
 */
export function gram(A: tf.Tensor2D, B: tf.Tensor2D): Float64Array {
  const [k, D] = A.shape;
  const m = B.shape[0];
  if (k * m * D > CPU_GRAM_WORK) {
    const G = tf.matMul(A, B, false, true);
    const out = Float64Array.from(G.dataSync());
    G.dispose();
    return out;
  }
  const a = A.dataSync();
  const b = A === B ? a : B.dataSync();
  const out = new Float64Array(k * m);
  for (let i = 0; i < k; i++) {
    const oi = i * D;
    for (let j = A === B ? i : 0; j < m; j++) {
      const oj = j * D;
      let s = 0;
      for (let t = 0; t < D; t++) s += (a[oi + t] as number) * (b[oj + t] as number);
      out[i * m + j] = s;
      if (A === B) out[j * m + i] = s;
    }
  }
  return out;
}

/** `Y + diag(alpha) X` row-wise (new tensor). */
export function axpyRows(Y: tf.Tensor2D, X: tf.Tensor2D, alpha: ArrayLike<number>): tf.Tensor2D {
  return tf.tidy(() => tf.add(Y, tf.mul(X, tf.tensor2d(Float32Array.from(alpha), [alpha.length, 1]))) as tf.Tensor2D);
}

/** `C X` for a small row-major float64 `C [r, k]` and a stack `X [k, D]` → `[r, D]`. */
export function combineRows(C: ArrayLike<number>, r: number, X: tf.Tensor2D): tf.Tensor2D {
  const k = X.shape[0];
  return tf.tidy(() => tf.matMul(tf.tensor2d(Float32Array.from(C), [r, k]), X));
}

/** Rows `idx` of a stack `[K, D]` → `[idx.length, D]` (new tensor). */
export function gatherRows(T: tf.Tensor2D, idx: readonly number[]): tf.Tensor2D {
  return tf.tidy(() => tf.gather(T, tf.tensor1d(idx as number[], 'int32')) as tf.Tensor2D);
}

/** Replace `*ref` by `next`, disposing the old tensor. */
export function replace<T extends tf.Tensor>(old: T | undefined, next: T): T {
  if (old !== undefined && old !== next) old.dispose();
  return next;
}

/** `Uᵀ diag(d) U + shift·I` from rows U that this call disposes (the operator keeps its own copy). */
export function lowRankFrom(U: tf.Tensor2D, d: ArrayLike<number>, shift = 0): LowRankOperator {
  try {
    return new LowRankOperator(U, d, shift);
  } finally {
    U.dispose();
  }
}

/** The result of an iterative solve. */
export interface SolveResult {
  /** The solution, with the right-hand side's shape (caller disposes). */
  x: tf.Tensor;
  /** Iterations (operator products; for stacks the number of stacked products). */
  iterations: number;
  /** Whether every system met its tolerance. */
  converged: boolean;
  /** Largest residual norm ‖b_k − A x_k‖ over the systems (the solver's recurrence for CG). */
  residualNorm: number;
  /** Largest relative residual ‖b_k − A x_k‖ / ‖b_k‖. */
  relativeResidual: number;
  /** Per system: residual norms. */
  residualNorms: Float64Array;
  /** Largest relative residual after each iteration. */
  history: number[];
}
