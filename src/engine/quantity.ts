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
    return ctx.loss.sqrtHessian(ctx.output, ctx.targets);
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
    return ctx.loss.sqrtHessianSampled(ctx.output, ctx.targets, this.mcSamples, ctx.rng(this.seed));
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
