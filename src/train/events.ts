/**
 * Typed events of the training plugin and the Trainer, and the ownership
 * rule for the step results they carry.
 *
 * Ownership: an event's `result` is valid while the listener runs
 * (synchronously); it is disposed after the last listener returns, unless
 * one listener called `event.keep()`, which hands the result over to that
 * listener (it must `dispose()` it). Reading a disposed result throws. To
 * keep a single tensor, `tf.clone` it; to accumulate, pass it to an
 * `ExponentialMovingAverage` / `RunningSum` (they copy).
 */
import type * as tf from '@tensorflow/tfjs';
import type { BackwardResult } from '../engine/results';
import type { Extension } from '../engine/extension';
import type { GroupHook } from '../engine/hook';
import type { ExtendedModel } from '../engine/extend';

/** One training step, as delivered to listeners. */
export interface StepEvent {
  /** Step number, counted from 0 over the lifetime of the plugin / trainer. */
  readonly step: number;
  /** Epoch (0-based) and batch within the epoch (plugin explicit steps: the numbers given to `beginStep`, default 0 and the step). */
  readonly epoch: number;
  readonly batch: number;
  readonly batchSize: number;
  /** Loss of the batch (the extended model's loss and reduction), before the update. */
  readonly loss: number;
  /** Whether the requested extensions and hooks were computed at this step (`every`). */
  readonly computed: boolean;
  /** Gradients and the extension / hook results, at the weights before the update. See the ownership rule above. */
  readonly result: BackwardResult;
  /** Take ownership of `result` (call during the event); returns it. */
  keep(): BackwardResult;
}

/** A warning from a hook (e.g. ViViT's small-eigenvalue warning) or from the numerics (non-finite loss). */
export interface TrainingWarning {
  readonly step: number;
  readonly source: 'hook' | 'numerics';
  readonly message: string;
  /** The hook's own warning object, if any. */
  readonly detail?: unknown;
}

export interface EpochEvent {
  readonly epoch: number;
  /** Batch-size-weighted mean of the epoch's batch losses. */
  readonly meanLoss: number;
  /** Steps run in this epoch. */
  readonly steps: number;
}

export interface TrainEndEvent {
  readonly epochs: number;
  readonly steps: number;
  /** True when `stop()` ended the training early. */
  readonly stopped: boolean;
}

/** Events of `TrainingPlugin`. Only steps that computed the extensions (`computed: true`) are delivered. */
export interface PluginEvents {
  /**
   * At the end of TF.js's backward pass, before the optimizer applies the
   * gradients (also available as `plugin.current`). The result stays valid
   * until the step ends; `keep()` works as for `step`. Tensors a listener
   * creates here live in TF.js's gradient scope: keep what must survive
   * (the accumulators do). Do not start TF.js gradient computations here
   * (`tf.grad`, `optimizer.minimize`): TF.js is in the middle of one and its
   * tape bookkeeping does not nest at this point; `ext.backward` is fine.
   */
  backward: (event: StepEvent) => void;
  /** After the step (after the optimizer update in `model.fit`). */
  step: (event: StepEvent) => void;
  warning: (warning: TrainingWarning) => void;
}

/** Events of `Trainer`. */
export interface TrainerEvents {
  /** After every step (after the update); `computed` says whether the extensions ran. */
  stepEnd: (event: StepEvent) => void;
  epochEnd: (event: EpochEvent) => void;
  trainEnd: (event: TrainEndEvent) => void;
  warning: (warning: TrainingWarning) => void;
}

/** What a curvature optimizer receives with each step. */
export interface StepContext {
  readonly step: number;
  readonly epoch: number;
  readonly ext: ExtendedModel;
}

/** Extensions and hooks to compute at one step. */
export interface StepRequests {
  readonly extensions?: readonly Extension<tf.TensorContainer>[];
  readonly hooks?: readonly GroupHook[];
}

/**
 * An optimizer that updates the weights from a whole step result (gradients
 * plus curvature), for `Trainer` (a `tf.Optimizer` only sees the gradients).
 * Second-order optimizers (K-FAC, damped Newton along GGN eigenvectors)
 * implement this.
 */
export interface StepOptimizer {
  /** Extensions / hooks this optimizer needs at `step` (merged with the trainer's own; same objects are run once). */
  requests?(step: number): StepRequests | undefined;
  /** Update the model's variables from the step's result (do not dispose `result`). */
  applyStep(result: BackwardResult, context: StepContext): void;
}

export function isStepOptimizer(o: unknown): o is StepOptimizer {
  return o !== null && typeof o === 'object' && typeof (o as { applyStep?: unknown }).applyStep === 'function';
}

/**
 * The ownership bookkeeping of one step's result: `event()` builds the
 * payload; `settle()` disposes the result unless a listener kept it.
 */
export class StepHandle {
  private kept = false;
  private open = true;

  constructor(
    readonly info: Omit<StepEvent, 'result' | 'keep'>,
    readonly result: BackwardResult,
    /** Why `keep()` is refused (e.g. the caller of `endStep` owns the result), or undefined. */
    private readonly keepRefusal?: string,
  ) {}

  get isKept(): boolean {
    return this.kept;
  }

  event(): StepEvent {
    const keep = (): BackwardResult => {
      if (this.keepRefusal !== undefined) throw new Error(this.keepRefusal);
      if (!this.open) {
        throw new Error(
          `keep() was called after step ${this.info.step}'s event ended and its result was disposed; call event.keep() synchronously inside the listener.`,
        );
      }
      this.kept = true;
      return this.result;
    };
    return { ...this.info, result: this.result, keep };
  }

  /** End of the event: dispose unless kept. */
  settle(): void {
    if (!this.open) return;
    this.open = false;
    if (!this.kept && this.keepRefusal === undefined) this.result.dispose();
  }
}

/**
 * Warnings carried in hook results: any group result with a `warnings`
 * array of `{ message }` objects (ViViT hooks list theirs there).
 */
export function hookWarnings(result: BackwardResult, hooks: readonly GroupHook[], step: number): TrainingWarning[] {
  const out: TrainingWarning[] = [];
  for (const h of hooks) {
    for (const g of result.groups(h)) {
      const ws = (g as { warnings?: unknown } | undefined)?.warnings;
      if (!Array.isArray(ws)) continue;
      for (const w of ws) {
        const message = typeof w === 'string' ? w : (w as { message?: unknown })?.message;
        if (typeof message === 'string') out.push({ step, source: 'hook', message, detail: w });
      }
    }
  }
  return out;
}

/**
 * Validate extensions and hooks once, up front: unique names, model support
 * (`validate`) and parameter groups. Batch-dependent checks run per step.
 */
export function checkRequests(
  owner: string,
  ext: ExtendedModel,
  extensions: readonly Extension<tf.TensorContainer>[],
  hooks: readonly GroupHook[],
): void {
  const names = new Set<string>();
  for (const e of [...extensions, ...hooks]) {
    if (e === null || typeof e !== 'object' || typeof e.name !== 'string' || typeof e.computeParam !== 'function') {
      throw new Error(`${owner}: every entry of 'extensions' and 'hooks' must be an extension / hook object (e.g. new BatchGrad()), got ${String(e)}.`);
    }
    if (names.has(e.name)) {
      throw new Error(`${owner}: two extensions or hooks are named '${e.name}'; give one of them a different 'name' option.`);
    }
    names.add(e.name);
    e.validate?.(ext.info);
  }
  for (const h of hooks) ext.resolveGroups(h.name, h.groups);
}

/** Union by identity (the same extension object requested twice runs once). */
export function mergeRequests<T>(a: readonly T[], b: readonly T[] | undefined): T[] {
  const out = [...a];
  for (const x of b ?? []) if (!out.includes(x)) out.push(x);
  return out;
}
