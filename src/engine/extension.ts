/**
 * Extensions: *what* to compute per parameter during the backward pass.
 * An extension never touches layer internals: it receives a ParamContext
 * that exposes the backpropagated quantities at the module output and the
 * module's parameter products (via its derivatives).
 */
import type * as tf from '@tensorflow/tfjs';
import type { ForwardRecord, LinearModuleDerivatives, ModuleDerivatives } from '../derivatives/types';
import type { LossDerivatives } from '../derivatives/losses/types';
import type { ParamInfo } from './params';
import type { Quantity } from './quantity';

/** One module (derivative unit) of the extended model, for validation. */
export interface ModuleInfo {
  readonly derivatives: ModuleDerivatives;
  /** Index of the owning layer among the model's layers (InputLayer excluded). */
  readonly layerIndex: number;
  readonly layerName: string;
}

/** Facts about the extended model that extensions may validate against. */
export interface ModelInfo {
  readonly loss: LossDerivatives;
  readonly params: readonly ParamInfo[];
  /** Module kinds in forward order, e.g. `Dense`, `Activation(tanh)`. */
  readonly moduleKinds: readonly string[];
  /** The modules in forward order (same length as `moduleKinds`). */
  readonly modules?: readonly ModuleInfo[];
}

/** Per-step facts an extension may validate against (batch size, ...). */
export interface StepInfo {
  readonly batchSize: number;
}

export interface ParamContext {
  readonly param: ParamInfo;
  /** The derivatives of the module that owns the parameter. */
  readonly module: LinearModuleDerivatives;
  readonly loss: LossDerivatives;
  /** Batch size of the step. */
  readonly batchSize: number;
  /** Gradient of the loss w.r.t. the module output `[N, ...out]`. */
  readonly gradOutput: tf.Tensor;
  /** The parameter's gradient (already computed; do not dispose). */
  readonly gradient: tf.Tensor;
  /** Value of a backpropagated quantity at the module output (do not dispose). */
  value<T extends tf.TensorContainer>(q: Quantity<T>): T;
  /** The module's forward record, subsampled to `samples` rows (do not dispose). */
  record(samples?: readonly number[]): ForwardRecord;
  /** The gradient w.r.t. the module output as a stack `[1, n, ...out]` (do not dispose). */
  gradStack(samples?: readonly number[]): tf.Tensor;
  /**
   * Parameter products of an output stack `[V, n, ...out]` (n = rows of
   * `samples`, default the whole batch). Results are new tensors.
   */
  /** `[V, n, ...paramShape]`: per-sample products Jᵀ_p · stack. */
  perSample(stack: tf.Tensor, samples?: readonly number[]): tf.Tensor;
  /** `[V, ...paramShape]`: products summed over samples. */
  summed(stack: tf.Tensor, samples?: readonly number[]): tf.Tensor;
  /** `[...paramShape]`: `Σ_{v,n} (Jᵀ_p · stack[v,n])²`. */
  sumSquared(stack: tf.Tensor, samples?: readonly number[]): tf.Tensor;
  /** `[n, ...paramShape]`: `Σ_v (Jᵀ_p · stack[v,n])²`. */
  perSampleSumSquared(stack: tf.Tensor, samples?: readonly number[]): tf.Tensor;
  /** `[V, n]`: `‖Jᵀ_p · stack[v,n]‖²`. */
  perSampleSquaredNorm(stack: tf.Tensor, samples?: readonly number[]): tf.Tensor;
  /**
   * Kernel only: the unfolded input `X [n, T, I]` (Dense T = 1; Conv2D im2col
   * patches), memoised per module (do not dispose).
   */
  unfoldedInput(samples?: readonly number[]): tf.Tensor3D;
  /** Memoise a value for the rest of this module (shared by its parameters and extensions; disposed after the module). */
  memo<T extends tf.TensorContainer>(key: string, make: () => T): T;
}

export interface Extension<R extends tf.TensorContainer = tf.Tensor> {
  /** Unique name; results are stored under it (e.g. `BatchGrad`). */
  readonly name: string;
  /** Quantities this extension needs at each module output. */
  readonly quantities: readonly Quantity<tf.TensorContainer>[];
  /** Throw a clear error if the model or loss is not supported. */
  validate?(model: ModelInfo): void;
  /** Throw a clear error if the step is not supported (e.g. subsampling out of range). */
  validateStep?(step: StepInfo): void;
  /** The result for one parameter, or undefined to store nothing. */
  computeParam(ctx: ParamContext): R | undefined;
}

/** The result type of an extension. */
export type ResultOf<E> = E extends Extension<infer R> ? R : never;

/** Check `subsampling` indices against a batch size; throws naming the option. */
export function checkSubsampling(
  extension: string,
  samples: readonly number[] | undefined,
  batchSize: number,
): void {
  if (samples === undefined) return;
  if (samples.length === 0) throw new Error(`${extension}: option 'subsampling' is empty; pass at least one index.`);
  for (const i of samples) {
    if (!Number.isInteger(i) || i < 0 || i >= batchSize) {
      throw new Error(
        `${extension}: option 'subsampling' has index ${i}, outside the batch of ${batchSize} samples (valid: 0..${batchSize - 1}).`,
      );
    }
  }
}
