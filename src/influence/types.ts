/**
 * Options, events and results shared by every influence model.
 */
import type { ParamGroupSpec } from '../engine/hook';
import type { BlockMode } from '../operators/blocks';
import type { ProgressOption } from '../train/progress';

/** `up`: g_testᵀ (M+λI)⁻¹ g_train; `perturbation`: its gradient w.r.t. the training input. */
export type InfluenceMode = 'up' | 'perturbation';

/** The curvature M: Hessian, generalized Gauss–Newton, or empirical Fisher of the mean training loss. */
export type CurvatureMode = 'hessian' | 'ggn' | 'empiricalFisher';

/** Blocks of M: the whole matrix, one per layer, one per parameter, or custom parameter groups. */
export type BlockSpec = BlockMode | readonly ParamGroupSpec[];

export interface InfluenceOptions {
  /**
   * λ in (M + λI)⁻¹: one number, or one per block (in block order). Required.
   * Methods with a closed-form inverse of a singular approximation need λ > 0.
   */
  regularization: number | readonly number[];
  /**
   * Block-diagonal M: `full` (default for most methods), `layer` (kernel and
   * bias of each layer together), `param`, or custom groups
   * `[{ params: [...] }, …]` (parameters in no group are left out of the influence).
   */
  blocks?: BlockSpec;
  /** Rows per chunk when streaming in-memory data (default 256). */
  chunkSize?: number;
  /** Progress line on the terminal: 'auto'/true (stdout if a TTY, default), false, or a stream. */
  progress?: ProgressOption;
}

/** Options of the methods built on curvature operators (everything but EKFAC and IHM). */
export interface CurvatureInfluenceOptions extends InfluenceOptions {
  /** M: `ggn` (default), `hessian` or `empiricalFisher`. */
  curvature?: CurvatureMode;
}

export type InfluenceStage = 'fit' | 'factors' | 'influences' | 'selfInfluence' | 'topK';

export interface InfluenceProgress {
  readonly stage: InfluenceStage;
  /** Units done (data points, or blocks while fitting). */
  readonly done: number;
  /** Units in total, when known (undefined while streaming a dataset). */
  readonly total: number | undefined;
  readonly unit: 'points' | 'blocks';
  readonly elapsedMs: number;
}

export interface InfluenceWarning {
  readonly stage: InfluenceStage;
  readonly message: string;
}

export interface StageEnd {
  readonly stage: InfluenceStage;
  readonly elapsedMs: number;
  /** Data points processed (training points for fit/influences/selfInfluence/topK, test points for factors). */
  readonly points: number | undefined;
}

/** Events of every influence model (eventemitter3). */
export interface InfluenceEvents {
  progress: (e: InfluenceProgress) => void;
  stageEnd: (e: StageEnd) => void;
  warning: (w: InfluenceWarning) => void;
}

export interface TopKEntries {
  /** `[nTest][k]` training-point indices (position in the training data). */
  readonly indices: number[][];
  /** `[nTest][k]` their influences. */
  readonly influences: number[][];
}

export interface TopKResult {
  readonly k: number;
  readonly nTrain: number;
  /** Per test point the k training points with the largest influence, descending. */
  readonly most: TopKEntries;
  /** Per test point the k training points with the smallest influence, ascending. */
  readonly least: TopKEntries;
  /** Self-influence g_jᵀ (M+λI)⁻¹ g_j of every training point (absent with `selfInfluence: false`). */
  readonly selfInfluence?: Float32Array;
}

export interface TopKOptions {
  /** Also compute every training point's self-influence (default true). */
  selfInfluence?: boolean;
}
