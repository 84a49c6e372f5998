/**
 * Group hooks: computations over parameter groups (one group = one curvature
 * block). During the backward pass each group parameter contributes a
 * per-parameter value; once the group's last parameter has been processed,
 * `finishGroup` turns the contributions into the group's result and the
 * contributions are freed (so per-parameter buffers live only as long as
 * the group needs them).
 */
import type * as tf from '@tensorflow/tfjs';
import type { ParamContext, ModelInfo, StepInfo } from './extension';
import type { ParamInfo, ParamRef } from './params';
import type { Quantity } from './quantity';

/** A user-facing parameter group: which parameters form one block. */
export interface ParamGroupSpec {
  readonly params: readonly ParamRef[];
}

/** A resolved group: parameters in flat order. */
export interface ResolvedGroup {
  readonly index: number;
  readonly params: readonly ParamInfo[];
  /** Size of the group's flat vector. */
  readonly size: number;
}

export interface GroupHook<P extends tf.TensorContainer = tf.TensorContainer, G extends tf.TensorContainer = tf.TensorContainer> {
  /** Unique name; group results are stored under it. */
  readonly name: string;
  readonly quantities: readonly Quantity<tf.TensorContainer>[];
  /** The groups, as given by the user (resolved by the engine). */
  readonly groups: readonly ParamGroupSpec[];
  validate?(model: ModelInfo): void;
  validateStep?(step: StepInfo): void;
  /** The contribution of one group parameter (kept until the group is complete). */
  computeParam(ctx: ParamContext, group: ResolvedGroup): P;
  /**
   * The group's result from its parameters' contributions (in flat order).
   * The contributions are disposed by the engine afterwards: keep nothing
   * from them that is not returned as a new tensor.
   */
  finishGroup(group: ResolvedGroup, contributions: readonly P[], step: StepInfo): G;
}

/** The result type of a group hook. */
export type GroupResultOf<H> = H extends GroupHook<tf.TensorContainer, infer G> ? G : never;
