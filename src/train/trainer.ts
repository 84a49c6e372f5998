/**
 * Trainer: a training loop around the extended model for custom training.
 * Each step is one `ext.backward` (forward, loss, one backward pass with the
 * requested extensions and hooks), then the optimizer update, then the
 * `stepEnd` event. Data: tensors `{ x, y }` (batched and optionally shuffled
 * here, with a seeded permutation) or a batched `tf.data.Dataset` of
 * `{ xs, ys }`.
 *
 * Non-finite loss: the step is not applied, a `warning` event is emitted and
 * `fit` rejects with the error (weights stay at the last finite step).
 */
import * as tf from '@tensorflow/tfjs';
import { EventEmitter } from 'eventemitter3';
import type { Extension } from '../engine/extension';
import type { ExtendedModel } from '../engine/extend';
import type { GroupHook } from '../engine/hook';
import type { BackwardResult } from '../engine/results';
import { Rng } from '../utils/random';
import {
  checkRequests,
  hookWarnings,
  isStepOptimizer,
  mergeRequests,
  StepHandle,
  type StepOptimizer,
  type TrainerEvents,
  type TrainingWarning,
} from './events';
import { checkPositiveInt } from './optimizers/common';
import { ProgressLine, resolveProgress, type ProgressOption } from './progress';

export interface TrainerOptions {
  /** A TF.js optimizer (applies `result.grads`) or a StepOptimizer (sees the whole result). */
  optimizer: tf.Optimizer | StepOptimizer;
  /** Extensions computed on the trainer's steps (every `every`-th). */
  extensions?: readonly Extension<tf.TensorContainer>[];
  /** Group hooks computed on the trainer's steps (every `every`-th). */
  hooks?: readonly GroupHook[];
  /** Compute the extensions and hooks every k-th step (0, k, 2k, …); the other steps compute the gradient only. Default 1. */
  every?: number;
  /** Base seed: step s uses seed + s (MC samples, dropout); epoch e's shuffle is seeded from it. Default 0. */
  seed?: number;
  /** Training mode of the forward pass (dropout active). Default true. */
  training?: boolean;
  /** Progress line: default `'auto'` (stdout when it is a TTY), `false` for none, or a TTY stream. */
  progress?: ProgressOption;
}

export interface TrainerFitOptions {
  /** Default 1. */
  epochs?: number;
  /** Batch size for tensor data (default 32); a Dataset must be batched already. */
  batchSize?: number;
  /** Shuffle tensor data every epoch (seeded; default true). */
  shuffle?: boolean;
}

/** Tensors (rows = samples) or a batched dataset of `{ xs, ys }`. */
export type TrainData = { x: tf.Tensor; y: tf.Tensor } | tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>;

export interface TrainHistory {
  /** Mean loss of each epoch run. */
  readonly loss: number[];
  readonly steps: number;
  readonly stopped: boolean;
}

/** Give the event loop a turn (timers, I/O, stop requests). */
function yieldToEventLoop(): Promise<void> {
  const si = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate;
  return new Promise((resolve) => (si ? si(resolve) : setTimeout(resolve, 0)));
}

function isDataset(d: unknown): d is tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }> {
  return d instanceof tf.data.Dataset || (d !== null && typeof d === 'object' && typeof (d as { iterator?: unknown }).iterator === 'function');
}

export class Trainer extends EventEmitter<TrainerEvents> {
  readonly optimizer: tf.Optimizer | StepOptimizer;
  readonly extensions: readonly Extension<tf.TensorContainer>[];
  readonly hooks: readonly GroupHook[];
  readonly every: number;
  readonly seed: number;
  readonly training: boolean;
  private readonly progress: ProgressLine;
  private stepCount = 0;
  private stopRequested = false;
  private running = false;

  constructor(
    readonly ext: ExtendedModel,
    options: TrainerOptions,
  ) {
    super();
    if (ext === undefined || ext === null || typeof (ext as { backward?: unknown }).backward !== 'function') {
      throw new Error('Trainer: the first argument must be an ExtendedModel: new Trainer(extend(model, { loss }), { optimizer }).');
    }
    const opt = options?.optimizer;
    // (tf.Optimizer's instanceof is duck-typed and throws on undefined.)
    const isTfOptimizer = opt !== null && typeof opt === 'object' && opt instanceof tf.Optimizer;
    if (!isTfOptimizer && !isStepOptimizer(opt)) {
      throw new Error(
        `Trainer: option 'optimizer' must be a tf.Optimizer (e.g. tf.train.sgd(0.1)) or a StepOptimizer with applyStep(result, context), got ${String(opt)}.`,
      );
    }
    this.optimizer = opt;
    this.every = checkPositiveInt('Trainer', 'every', options.every, 1);
    const seed = options.seed ?? 0;
    if (!Number.isFinite(seed)) throw new Error(`Trainer: option 'seed' must be a finite number, got ${String(seed)}.`);
    this.seed = seed;
    this.training = options.training ?? true;
    this.extensions = [...(options.extensions ?? [])];
    this.hooks = [...(options.hooks ?? [])];
    checkRequests('Trainer', ext, this.extensions, this.hooks);
    this.progress = new ProgressLine(resolveProgress(options.progress));
  }

  /** Steps run so far (over all `fit`/`step` calls). */
  get steps(): number {
    return this.stepCount;
  }

  /** Stop `fit` after the current step. */
  stop(): void {
    this.stopRequested = true;
  }

  /**
   * One training step on a batch: backward with the requested extensions
   * (if this step computes them), optimizer update, `stepEnd`. Returns the loss.
   */
  step(x: tf.Tensor, y: tf.Tensor, where: { epoch?: number; batch?: number } = {}): number {
    const index = this.stepCount;
    const computed = index % this.every === 0;
    const opt = this.optimizer;
    const req = isStepOptimizer(opt) ? opt.requests?.(index) : undefined;
    const extensions = mergeRequests(computed ? this.extensions : [], req?.extensions);
    const hooks = mergeRequests(computed ? this.hooks : [], req?.hooks);
    let result: BackwardResult;
    try {
      result = this.ext.backward(x, y, { extensions, hooks, seed: this.seed + index, training: this.training });
    } catch (e) {
      if (e instanceof Error && /not finite/.test(e.message)) {
        this.emitWarning({ step: index, source: 'numerics', message: `step ${index}: ${e.message}` });
      }
      throw e;
    }
    this.stepCount += 1;
    const handle = new StepHandle(
      {
        step: index,
        epoch: where.epoch ?? 0,
        batch: where.batch ?? index,
        batchSize: x.shape[0] as number,
        loss: result.loss,
        computed,
      },
      result,
    );
    try {
      if (isStepOptimizer(opt)) opt.applyStep(result, { step: index, epoch: where.epoch ?? 0, ext: this.ext });
      else opt.applyGradients(result.grads as Parameters<tf.Optimizer['applyGradients']>[0]);
      for (const w of hookWarnings(result, hooks, index)) this.emitWarning(w);
      this.emit('stepEnd', handle.event());
    } finally {
      handle.settle();
    }
    return handle.info.loss;
  }

  private emitWarning(w: TrainingWarning): void {
    this.emit('warning', w);
  }

  /** Train for `epochs` over tensors `{ x, y }` or a batched dataset of `{ xs, ys }`. */
  async fit(data: TrainData, options: TrainerFitOptions = {}): Promise<TrainHistory> {
    if (this.running) throw new Error('Trainer.fit: this trainer is already running a fit; await it first.');
    const epochs = checkPositiveInt('Trainer.fit', 'epochs', options.epochs, 1);
    const batchSize = checkPositiveInt('Trainer.fit', 'batchSize', options.batchSize, 32);
    const shuffle = options.shuffle ?? true;
    let source: (epoch: number) => AsyncGenerator<{ x: tf.Tensor; y: tf.Tensor }>;
    let stepsPerEpoch: number | undefined;
    if (isDataset(data)) {
      source = (epoch) => this.datasetBatches(data, epoch);
    } else {
      const { x, y } = this.checkTensors(data);
      const N = x.shape[0] as number;
      stepsPerEpoch = Math.ceil(N / batchSize);
      source = (epoch) => this.tensorBatches(x, y, batchSize, shuffle, epoch);
    }
    this.running = true;
    this.stopRequested = false;
    const history: number[] = [];
    const start = this.stepCount;
    let lastYield = Date.now();
    try {
      for (let epoch = 0; epoch < epochs && !this.stopRequested; epoch++) {
        let sum = 0;
        let count = 0;
        let batch = 0;
        const t0 = Date.now();
        for await (const { x, y } of source(epoch)) {
          let loss: number;
          try {
            loss = this.step(x, y, { epoch, batch });
          } finally {
            tf.dispose([x, y]);
          }
          const n = x.shape[0] as number;
          sum += loss * n;
          count += n;
          batch += 1;
          if (this.progress.enabled) {
            const rate = batch / Math.max(1e-3, (Date.now() - t0) / 1000);
            this.progress.update(
              `epoch ${epoch + 1}/${epochs}  step ${batch}${stepsPerEpoch !== undefined ? `/${stepsPerEpoch}` : ''}  loss ${loss.toPrecision(5)}  ${rate.toFixed(1)} steps/s`,
            );
          }
          if (this.stopRequested) break;
          if (Date.now() - lastYield > 100) {
            await yieldToEventLoop();
            lastYield = Date.now();
          }
        }
        if (count === 0) throw new Error('Trainer.fit: the data produced no batches.');
        const meanLoss = sum / count;
        history.push(meanLoss);
        this.progress.end(
          `epoch ${epoch + 1}/${epochs}  ${batch} steps  mean loss ${meanLoss.toPrecision(5)}  ${((Date.now() - t0) / 1000).toFixed(1)} s`,
        );
        this.emit('epochEnd', { epoch, meanLoss, steps: batch });
      }
      const out: TrainHistory = { loss: history, steps: this.stepCount - start, stopped: this.stopRequested };
      this.emit('trainEnd', { epochs: history.length, steps: out.steps, stopped: out.stopped });
      return out;
    } finally {
      this.running = false;
    }
  }

  private checkTensors(data: unknown): { x: tf.Tensor; y: tf.Tensor } {
    const d = data as { x?: unknown; y?: unknown } | null;
    if (d === null || typeof d !== 'object' || !(d.x instanceof tf.Tensor) || !(d.y instanceof tf.Tensor)) {
      throw new Error('Trainer.fit: data must be { x: tf.Tensor, y: tf.Tensor } (rows are samples) or a batched tf.data.Dataset of { xs, ys }.');
    }
    const { x, y } = d as { x: tf.Tensor; y: tf.Tensor };
    if (x.shape[0] !== y.shape[0]) {
      throw new Error(
        `Trainer.fit: x has ${x.shape[0]} samples (shape [${x.shape.join(', ')}]) but y has ${y.shape[0]} (shape [${y.shape.join(', ')}]); give one target row per sample.`,
      );
    }
    if (x.shape[0] === 0) throw new Error('Trainer.fit: the data has no samples.');
    return { x, y };
  }

  /** Batches of tensor data; epoch e's permutation comes from a seeded Rng. */
  private async *tensorBatches(
    x: tf.Tensor,
    y: tf.Tensor,
    batchSize: number,
    shuffle: boolean,
    epoch: number,
  ): AsyncGenerator<{ x: tf.Tensor; y: tf.Tensor }> {
    const N = x.shape[0] as number;
    let order: Int32Array | undefined;
    if (shuffle) {
      const rng = new Rng((this.seed * 7919 + 104729 * (epoch + 1)) >>> 0);
      order = new Int32Array(N);
      for (let i = 0; i < N; i++) order[i] = i;
      for (let i = N - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        const t = order[i] as number;
        order[i] = order[j] as number;
        order[j] = t;
      }
    }
    for (let start = 0; start < N; start += batchSize) {
      const n = Math.min(batchSize, N - start);
      if (order === undefined) {
        yield { x: tf.slice(x, start, n), y: tf.slice(y, start, n) };
      } else {
        const idx = tf.tensor1d(order.subarray(start, start + n), 'int32');
        const batch = { x: tf.gather(x, idx), y: tf.gather(y, idx) };
        idx.dispose();
        yield batch;
      }
    }
  }

  private async *datasetBatches(
    ds: tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>,
    epoch: number,
  ): AsyncGenerator<{ x: tf.Tensor; y: tf.Tensor }> {
    const it = await ds.iterator();
    const rank = this.ext.inputShape.length + 1;
    for (;;) {
      const { value, done } = await it.next();
      if (done) return;
      const el = value as { xs?: unknown; ys?: unknown } | null;
      if (el === null || typeof el !== 'object' || !(el.xs instanceof tf.Tensor) || !(el.ys instanceof tf.Tensor)) {
        tf.dispose(value as tf.TensorContainer);
        throw new Error(`Trainer.fit: dataset elements must be { xs: tf.Tensor, ys: tf.Tensor } (as for model.fitDataset); epoch ${epoch} produced ${JSON.stringify(Object.keys(el ?? {}))}.`);
      }
      if (el.xs.rank !== rank) {
        const shape = el.xs.shape.slice();
        tf.dispose([el.xs, el.ys]);
        throw new Error(
          `Trainer.fit: dataset element xs has shape [${shape.join(', ')}], expected a batch [N, ${this.ext.inputShape.join(', ')}]; batch the dataset first (dataset.batch(batchSize)).`,
        );
      }
      yield { x: el.xs, y: el.ys };
    }
  }
}
