/**
 * Backpropagated quantities: what the engine carries backwards alongside the
 * gradient, once per step, shared by every extension that asks for the same
 * `key` (e.g. DiagGGNExact, KFLR and SqrtGGNExact all consume `sqrtGgnExact`).
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardRecord, ModuleDerivatives } from '../derivatives/types';
import type { LossDerivatives } from '../derivatives/losses/types';
import { Rng } from '../utils/random';

/** What a quantity's initial value (at the model output) may use. */
export interface LossContext {
  readonly loss: LossDerivatives;
  /** Model output `[n, C]` (rows of the quantity's samples). */
  readonly output: tf.Tensor2D;
  /** Prepared targets `[n, C]` (rows of the quantity's samples). */
  readonly targets: tf.Tensor2D;
  /** Batch size of the whole step (normalisers use it, not n). */
  readonly batchSize: number;
  /** Random stream for Monte-Carlo quantities (seeded per step). */
  rng(seed: number | undefined): Rng;
}

export interface PropagateContext {
  /** Gradient w.r.t. the module output, rows of the quantity's samples. */
  readonly gradOutput: tf.Tensor;
  readonly batchSize: number;
}

export interface Quantity<T extends tf.TensorContainer = tf.Tensor> {
  /** Sharing key: equal keys are backpropagated once. */
  readonly key: string;
  /** Batch rows this quantity is computed for (undefined: all). */
  readonly samples?: readonly number[];
  /** Value at the model output. */
  init(ctx: LossContext): T;
  /** Value at the module input from the value at its output. */
  propagate(module: ModuleDerivatives, rec: ForwardRecord, value: T, ctx: PropagateContext): T;
}

export function samplesKey(samples: readonly number[] | undefined): string {
  return samples === undefined ? '' : `@${samples.join(',')}`;
}

/**
 * A loss square-root factor `[V, n, C]` computed on the n subsampled rows is
 * normalised with `norm(n, C)`; the per-sample terms ℓ_n of the step are
 * normalised with the whole batch's `norm(N, C)` (FORMAT.md §4), so that a
 * subsampled quantity equals the rows of the full one. Rescale by
 * `√(norm(n, C) / norm(N, C))` (1 for reduction `sum` or n = N). Consumes `factor`.
 */
export function toBatchNormalization(ctx: LossContext, factor: tf.Tensor): tf.Tensor {
  const [n, C] = ctx.output.shape;
  if (n === ctx.batchSize) return factor;
  const scale = Math.sqrt(ctx.loss.normalizer(n, C) / ctx.loss.normalizer(ctx.batchSize, C));
  if (scale === 1) return factor;
  const out = tf.mul(factor, scale);
  factor.dispose();
  return out;
}

/** A stack `[V, n, ...]` backpropagated with Jᵀ. */
abstract class StackQuantity implements Quantity<tf.Tensor> {
  abstract readonly key: string;
  constructor(readonly samples?: readonly number[]) {}
  abstract init(ctx: LossContext): tf.Tensor;
  propagate(module: ModuleDerivatives, rec: ForwardRecord, value: tf.Tensor): tf.Tensor {
    return module.jacTMatProd(rec, value);
  }
}

/** BackPACK's exact GGN square root: `S_n J_n`, stack `[C, n, ...]`. */
export class SqrtGgnExactQuantity extends StackQuantity {
  readonly key: string;
  constructor(samples?: readonly number[]) {
    super(samples);
    this.key = `sqrtGgnExact${samplesKey(samples)}`;
  }
  init(ctx: LossContext): tf.Tensor {
    return toBatchNormalization(ctx, ctx.loss.sqrtHessian(ctx.output, ctx.targets));
  }
}

/** Monte-Carlo GGN square root: stack `[M, n, ...]`. */
export class SqrtGgnMcQuantity extends StackQuantity {
  readonly key: string;
  constructor(
    readonly mcSamples: number,
    readonly seed: number | undefined,
    samples?: readonly number[],
  ) {
    super(samples);
    if (!Number.isInteger(mcSamples) || mcSamples < 1) {
      throw new Error(`option 'mcSamples' must be an integer ≥ 1, got ${mcSamples}.`);
    }
    this.key = `sqrtGgnMc:${mcSamples}:${seed ?? 'step'}${samplesKey(samples)}`;
  }
  init(ctx: LossContext): tf.Tensor {
    return toBatchNormalization(
      ctx,
      ctx.loss.sqrtHessianSampled(ctx.output, ctx.targets, this.mcSamples, ctx.rng(this.seed)),
    );
  }
}

/** The output Jacobian: identity stack `[C, n, C]` backpropagated (unscaled). */
export class OutputJacobianQuantity extends StackQuantity {
  readonly key: string;
  constructor(samples?: readonly number[]) {
    super(samples);
    this.key = `outputJacobian${samplesKey(samples)}`;
  }
  init(ctx: LossContext): tf.Tensor {
    const [n, C] = ctx.output.shape;
    return tf.tidy(() => tf.mul(tf.reshape(tf.eye(C), [C, 1, C]), tf.ones([1, n, 1])));
  }
}
