/**
 * Shared pieces of the curvature optimizers: option checks (also used by
 * the Trainer, the TrainingPlugin and the CurvatureMonitor), learning-rate
 * schedules, and the bridge that runs a StepOptimizer inside `model.fit`
 * through the TrainingPlugin.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../../engine/extend';
import { checkInteger, checkNumber } from '../../utils/options';
import type { ParamInfo } from '../../engine/params';
import type { StepEvent, StepOptimizer, StepRequests } from '../events';
import type { TrainingPlugin } from '../plugin';

/** A learning rate: a number > 0, or a schedule `step → lr` (values must be finite and ≥ 0). */
export type LearningRate = number | ((step: number) => number);

export function checkLearningRate(owner: string, lr: unknown, dflt?: number): LearningRate {
  const v = lr ?? dflt;
  if (typeof v === 'function') return v as (step: number) => number;
  if (typeof v !== 'number' || !Number.isFinite(v) || !(v > 0)) {
    throw new Error(`${owner}: option 'lr' must be a finite number > 0 or a schedule (step) => lr, got ${String(v)}.`);
  }
  return v;
}

/** The learning rate at `step` (a schedule's value is checked). */
export function learningRateAt(owner: string, lr: LearningRate, step: number): number {
  if (typeof lr === 'number') return lr;
  const v = lr(step);
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new Error(`${owner}: the learning-rate schedule returned ${String(v)} at step ${step}; it must return a finite number ≥ 0.`);
  }
  return v;
}

/** Option `name` (default `dflt`) as a finite number > 0. */
export function checkPositive(owner: string, name: string, v: unknown, dflt: number, why = ''): number {
  return checkNumber(owner, name, v ?? dflt, 0, true, why);
}

/** Option `name` (default `dflt`) as an integer ≥ 1. */
export function checkPositiveInt(owner: string, name: string, v: unknown, dflt: number, why = ''): number {
  return checkInteger(owner, name, v ?? dflt, 1, why);
}

export function checkUnitInterval(owner: string, name: string, v: unknown, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !(x >= 0 && x < 1)) {
    throw new Error(`${owner}: option '${name}' must be a number in [0, 1), got ${String(x)}.`);
  }
  return x;
}

export function checkExtendedModel(owner: string, ext: unknown): asserts ext is ExtendedModel {
  if (ext === undefined || ext === null || typeof (ext as { backward?: unknown }).backward !== 'function') {
    throw new Error(`${owner}: the first argument must be the ExtendedModel being trained: new ${owner}(extend(model, { loss }), options).`);
  }
}

/** Reject unknown option names (a misspelt option is never silently ignored). */
export function checkOptionNames(owner: string, options: object | undefined, known: readonly string[]): void {
  if (options === undefined || options === null) return;
  if (typeof options !== 'object') throw new Error(`${owner}: options must be an object, got ${typeof options}.`);
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) throw new Error(`${owner}: unknown option '${k}'; known options: ${known.join(', ')}.`);
  }
}

/** Throw unless `applyStep` is given the model the optimizer was built for. */
export function checkSameModel(owner: string, mine: ExtendedModel, theirs: ExtendedModel): void {
  if (mine !== theirs) {
    throw new Error(`${owner}: applyStep received a step of a different extended model than the one given to the constructor; build one optimizer per model.`);
  }
}

/** `θ ← θ + Δ` for one parameter (Δ computed by `delta` inside a tidy scope). */
export function addToVariable(p: ParamInfo, delta: () => tf.Tensor): void {
  tf.tidy(() => {
    p.variable.assign(tf.add(p.variable, delta()));
  });
}

/** A StepOptimizer that can say, once, everything it may ever request (for the plugin, whose requests are fixed). */
export interface FixedRequests {
  /** The union of what `requests(step)` returns over all steps. */
  readonly allRequests: StepRequests;
}

/** Throw if the model is compiled with an optimizer that would update the weights itself; returns whether it is compiled. */
function checkCompiledOptimizer(model: tf.LayersModel): boolean {
  const compiled = (model as unknown as { optimizer?: unknown }).optimizer as { learningRate?: unknown; getClassName?: () => string } | undefined | null;
  if (compiled === undefined || compiled === null) return false;
  const isSgd = typeof compiled.getClassName === 'function' && compiled.getClassName() === 'SGD';
  if (!isSgd || compiled.learningRate !== 0) {
    throw new Error(
      'useWithPlugin: the model is compiled with an optimizer that updates the weights itself; compile it with model.compile({ optimizer: tf.train.sgd(0), loss: plugin.loss }) so that only the curvature optimizer updates them.',
    );
  }
  return true;
}

/**
 * Run a StepOptimizer inside `model.fit` via the TrainingPlugin.
 *
 * TF.js's `model.fit` applies only gradients, through the compiled
 * tf.Optimizer, while the TF.js backward pass runs. A curvature optimizer
 * needs the whole step result, which is complete only at the end of that
 * pass. So: compile the model with `tf.train.sgd(0)` (its update is then a
 * no-op), build the plugin with the optimizer's requests (`every: 1`), and
 * let the plugin's `step` event (after TF.js's own no-op update) apply the
 * curvature step. Returns a function that removes the listener.
 *
 * ```ts
 * const opt = new DampedNewton(ext, { lr: 1, damping: 1 });
 * const plugin = new TrainingPlugin(ext, { ...opt.allRequests });
 * model.compile({ optimizer: tf.train.sgd(0), loss: plugin.loss });
 * plugin.attach();
 * const stop = useWithPlugin(plugin, opt);
 * await model.fit(x, y, { batchSize: 64, epochs: 1, callbacks: [plugin] });
 * stop(); plugin.detach();
 * ```
 *
 * Checks: the plugin computes its requests on every step (`every: 1`) and
 * includes everything the optimizer may request; a compiled optimizer other
 * than SGD with learning rate 0 is refused (it would apply the plain
 * gradient on top of the curvature step) — here if the model is compiled
 * already, else at the first step (compile first: an error thrown inside
 * model.fit leaves TF.js's batch-log tensor behind).
 */
export function useWithPlugin(plugin: TrainingPlugin, optimizer: StepOptimizer & Partial<FixedRequests>): () => void {
  if (plugin === undefined || plugin === null || typeof (plugin as { on?: unknown }).on !== 'function') {
    throw new Error('useWithPlugin: the first argument must be a TrainingPlugin.');
  }
  if (optimizer === undefined || optimizer === null || typeof optimizer.applyStep !== 'function') {
    throw new Error('useWithPlugin: the second argument must be a StepOptimizer (e.g. new DampedNewton(ext, ...)).');
  }
  if (plugin.every !== 1) {
    throw new Error(
      `useWithPlugin: the plugin computes its extensions every ${plugin.every} steps; a curvature optimizer needs them on every step: new TrainingPlugin(ext, { ...optimizer.allRequests }) (every: 1).`,
    );
  }
  const wanted = optimizer.allRequests ?? optimizer.requests?.(0) ?? {};
  for (const e of [...(wanted.extensions ?? []), ...(wanted.hooks ?? [])]) {
    const has = (plugin.extensions as readonly unknown[]).includes(e) || (plugin.hooks as readonly unknown[]).includes(e);
    if (!has) {
      throw new Error(
        `useWithPlugin: the plugin does not compute '${e.name}', which the optimizer needs; build it with new TrainingPlugin(ext, { extensions: [...opt.allRequests.extensions, ...yours], hooks: [...opt.allRequests.hooks, ...yours] }).`,
      );
    }
  }
  // Checked now if the model is compiled already, else at the first step.
  let checked = checkCompiledOptimizer(plugin.ext.model);
  const listener = (e: StepEvent): void => {
    if (!checked) checked = checkCompiledOptimizer(plugin.ext.model);
    optimizer.applyStep(e.result, { step: e.step, epoch: e.epoch, ext: plugin.ext });
  };
  plugin.on('step', listener);
  return () => {
    plugin.off('step', listener);
  };
}
