/**
 * LiSSA (Agarwal et al. 2017, in pyDVL's form): the stochastic Neumann
 * iteration
 *
 *   h_0 = b,   h_t = b + (1 − dampen)·h_{t−1} − (A_t h_{t−1} + λ h_{t−1}) / scale,
 *   x = h_t / scale,
 *
 * where A_t is A (full products) or, with `batchSize`, the curvature of a
 * random minibatch (an unbiased estimate; needs a curvature operator over
 * data). Its fixed point solves (A + λ + scale·dampen) x = b. With full
 * products and T = (1 − dampen)I − (A + λI)/scale, h_t = Σ_{i≤t} Tⁱ b, so the
 * error after t iterations is T^{t+1}-small: the iteration converges iff
 * every eigenvalue of T lies in (−1, 1), i.e.
 * 0 < (λ_i(A) + λ)/scale + dampen < 2 — scale must exceed (λ_max + λ)/2 and
 * A + λ must be positive definite.
 *
 * Stops when max_k ‖h_t − h_{t−1}‖/‖h_t‖ ≤ rtol (reported as
 * `relativeResidual`: LiSSA has no residual of its own). Detects divergence
 * (non-finite values, or an update norm 1000× larger than the smallest seen:
 * for symmetric T the update norms ‖Tᵗb‖ never grow when the iteration
 * converges) and throws naming the fix.
 */
import * as tf from '@tensorflow/tfjs';
import { isSampledOperator } from '../operators/curvature';
import { fromStack } from '../operators/linearOperator';
import { Rng } from '../utils/random';
import {
  asOperator,
  checkInteger,
  checkNumber,
  replace,
  rhsStack,
  rowNorms,
  runAsync,
  runSync,
  type OperatorLike,
  type SolveResult,
  type SolverGenerator,
} from './common';

export interface LissaOptions {
  /** Divides the operator; must exceed (λ_max(A) + damping)/2 (default 10). */
  scale?: number;
  /** Shrinks the iterate each step (default 0); adds scale·dampen to the damping. */
  dampen?: number;
  /** λ added to the operator (default 0). */
  damping?: number;
  /** Maximum iterations (default 1000). */
  maxIter?: number;
  /** Relative change ‖h_t − h_{t−1}‖/‖h_t‖ at which to stop (default 1e-4). */
  rtol?: number;
  /** Minibatch size: multiply with the curvature of random minibatches (curvature operators only). */
  batchSize?: number;
  /** Seed of the minibatch sampling (default 0). */
  seed?: number;
  callback?: (iteration: number, relativeChange: number) => void;
}

interface Parsed {
  scale: number;
  dampen: number;
  damping: number;
  maxIter: number;
  rtol: number;
  batchSize: number | undefined;
  seed: number;
}

function parse(where: string, o: LissaOptions): Parsed {
  return {
    scale: checkNumber(where, 'scale', o.scale ?? 10, 0, true),
    dampen: checkNumber(where, 'dampen', o.dampen ?? 0, 0),
    damping: checkNumber(where, 'damping', o.damping ?? 0, 0),
    maxIter: checkInteger(where, 'maxIter', o.maxIter ?? 1000, 1),
    rtol: checkNumber(where, 'rtol', o.rtol ?? 1e-4, 0),
    batchSize: o.batchSize === undefined ? undefined : checkInteger(where, 'batchSize', o.batchSize, 1),
    seed: o.seed ?? 0,
  };
}

function* lissaGenerator(where: string, B: tf.Tensor2D, o: Parsed, callback?: LissaOptions['callback']): SolverGenerator<{ X: tf.Tensor2D; result: Omit<SolveResult, 'x'> }> {
  const rng = new Rng(o.seed);
  let H: tf.Tensor2D = tf.clone(B);
  let AH: tf.Tensor2D | undefined;
  let minUpdate = Infinity;
  const history: number[] = [];
  let rel = Infinity;
  let change: Float64Array = new Float64Array(B.shape[0]).fill(Infinity);
  let iterations = 0;
  let converged = false;
  try {
    while (iterations < o.maxIter) {
      AH = yield o.batchSize === undefined ? { V: H } : { V: H, sampled: { rng, batchSize: o.batchSize } };
      iterations++;
      const next = tf.tidy(() => {
        const Ah = o.damping === 0 ? (AH as tf.Tensor2D) : tf.add(AH as tf.Tensor2D, tf.mul(H, o.damping));
        return tf.sub(tf.add(B, tf.mul(H, 1 - o.dampen)), tf.div(Ah, o.scale)) as tf.Tensor2D;
      });
      AH.dispose();
      AH = undefined;
      const diff = tf.sub(next, H) as tf.Tensor2D;
      change = rowNorms(diff);
      diff.dispose();
      const norms = rowNorms(next);
      H = replace(H, next);
      const update = Math.max(...change);
      if (!Number.isFinite(update) || !norms.every(Number.isFinite)) {
        throw new Error(
          `${where}: the iterate became non-finite at iteration ${iterations}: either the operator returned NaN/Inf, or LiSSA diverged — it converges only if 0 < (λ_i(A) + damping)/scale + dampen < 2 for every eigenvalue: increase 'scale' above (λ_max + damping)/2 and make A + damping positive definite.`,
        );
      }
      if (update > 1e3 * minUpdate) {
        throw new Error(
          `${where}: diverged at iteration ${iterations} (the update norm grew from ${minUpdate.toExponential(2)} to ${update.toExponential(2)}): LiSSA converges only if 0 < (λ_i(A) + damping)/scale + dampen < 2 for every eigenvalue — increase 'scale' above (λ_max + damping)/2 (currently ${o.scale}), and add damping if A has negative eigenvalues.`,
        );
      }
      minUpdate = Math.min(minUpdate, update);
      rel = Math.max(...Array.from(change, (c, k) => ((norms[k] as number) > 0 ? c / (norms[k] as number) : c)));
      history.push(rel);
      callback?.(iterations, rel);
      if (rel <= o.rtol) {
        converged = true;
        break;
      }
    }
    const X = tf.div(H, o.scale) as tf.Tensor2D;
    return {
      X,
      result: {
        iterations,
        converged,
        residualNorm: Math.max(...change) / o.scale,
        relativeResidual: rel,
        residualNorms: change.map((c) => c / o.scale),
        history,
      },
    };
  } finally {
    H.dispose();
    AH?.dispose();
  }
}

function setup(where: string, op: OperatorLike, b: tf.Tensor, options: LissaOptions) {
  const o = parse(where, options);
  const B = rhsStack(where, b);
  try {
    const A = asOperator(op, B.shape[1], where);
    if (o.batchSize !== undefined && !isSampledOperator(A)) {
      throw new Error(`${where}: option 'batchSize' samples minibatches of the data, so the operator must be a curvature operator over data (hessianOperator, ggnOperator, …).`);
    }
    return { A, B, o };
  } catch (e) {
    B.dispose();
    throw e;
  }
}

/** Approximate `(A + λI + scale·dampen·I)⁻¹ b` by LiSSA (b `[D]` or `[K, D]`). */
export function lissa(op: OperatorLike, b: tf.Tensor, options: LissaOptions = {}): SolveResult {
  const where = 'lissa';
  const { A, B, o } = setup(where, op, b, options);
  try {
    const st = runSync(lissaGenerator(where, B, o, options.callback), A, where, 'lissaAsync');
    return { x: fromStack(st.X, b.rank), ...st.result };
  } finally {
    B.dispose();
  }
}

/** `lissa` for every operator, including those that stream a tf.data.Dataset (minibatches = the dataset's batches, cycled). */
export async function lissaAsync(op: OperatorLike, b: tf.Tensor, options: LissaOptions = {}): Promise<SolveResult> {
  const where = 'lissaAsync';
  const { A, B, o } = setup(where, op, b, options);
  try {
    const st = await runAsync(lissaGenerator(where, B, o, options.callback), A, where);
    return { x: fromStack(st.X, b.rank), ...st.result };
  } finally {
    B.dispose();
  }
}
