/**
 * The training plugin: curvpack's extensions and hooks computed inside
 * TF.js's own training (`model.fit`, or `optimizer.minimize` loops), in the
 * same backward pass — as BackPACK's module hooks do in PyTorch.
 *
 * `attach()` replaces each layer's `call` (an instance property, restored by
 * `detach()`) by a `tf.customGrad` wrapper whose inputs are the layer input
 * and the layer's trainable variables. During a plugin step:
 *   forward  — the wrapper runs the layer's modules through a BackwardStep
 *              (`forwardModule`, recording what the backward pass needs);
 *   loss     — `plugin.loss` (given to `model.compile`) starts the step's
 *              backward quantities (`beginLoss`: gradient, GGN square roots);
 *   backward — TF.js calls each wrapper's gradient function with
 *              dy = ∂L/∂(layer output); it runs `backwardModule` for the
 *              layer's modules in reverse (parameter gradients, extensions,
 *              hooks, the propagated quantities) and returns
 *              [∂L/∂x, ∂L/∂(each variable)] to TF.js, whose optimizer applies them.
 * Outside a step (predict, evaluate, validation) the layers run their own
 * `call` unchanged. The model's variables are updated by TF.js's optimizer
 * exactly as without the plugin; only the gradient arithmetic differs
 * (curvpack's derivatives instead of TF.js's kernels: equal to float32
 * rounding — and available where a backend lacks a gradient kernel, e.g.
 * Conv2DBackpropFilter on wasm).
 */
import * as tf from '@tensorflow/tfjs';
import { EventEmitter } from 'eventemitter3';
import type { BackwardStep } from '../engine/backward';
import type { Extension } from '../engine/extension';
import type { ExtendedModel } from '../engine/extend';
import type { GroupHook } from '../engine/hook';
import { BackwardResult } from '../engine/results';
import { checkRequests, hookWarnings, StepHandle, type PluginEvents, type TrainingWarning } from './events';
import { checkPositiveInt } from './optimizers/common';

type Layer = tf.layers.Layer;
type CallFn = Layer['call'];
type Kwargs = Parameters<CallFn>[1];

export interface PluginOptions {
  /** Extensions computed on the plugin's steps. */
  extensions?: readonly Extension<tf.TensorContainer>[];
  /** Group hooks computed on the plugin's steps. */
  hooks?: readonly GroupHook[];
  /** Compute the extensions and hooks every k-th step (steps 0, k, 2k, …). Default 1. */
  every?: number;
  /**
   * How the other steps get their gradients: `engine` (default) through the
   * same wrappers with nothing extra computed (works where TF.js lacks a
   * gradient kernel, same arithmetic on every step), or `tfjs`: TF.js's own
   * autodiff, untouched (no overhead at all on those steps).
   */
  plainSteps?: 'engine' | 'tfjs';
  /** Base seed of the steps' random streams (MC samples, dropout): step s uses `seed + s`. Default 0. */
  seed?: number;
}

/** What `endStep()` / `step()` return. */
export interface PluginStepResult {
  readonly step: number;
  readonly computed: boolean;
  /** The loss of the batch (undefined for a `plainSteps: 'tfjs'` step, which curvpack does not see). */
  readonly loss: number | undefined;
  /** Gradients and results (undefined for a `plainSteps: 'tfjs'` step). The caller owns it: `dispose()` it. */
  readonly result: BackwardResult | undefined;
}

/** One layer the plugin wraps. */
interface Slot {
  readonly layer: Layer;
  readonly modules: readonly number[];
  readonly variables: readonly tf.Variable[];
  readonly hadOwnCall: boolean;
  readonly ownCall: CallFn | undefined;
}

/** The step in progress. */
interface ActiveStep {
  readonly index: number;
  readonly computed: boolean;
  readonly mode: 'fit' | 'explicit';
  readonly epoch: number;
  readonly batch: number;
  readonly training: boolean;
  step: BackwardStep | undefined;
  batchSize: number;
  /** Next slot expected in the forward pass. */
  nextSlot: number;
  /** The tensor the last slot returned to TF.js (the model output). */
  output: tf.Tensor | undefined;
  lossDone: boolean;
  backwardDone: boolean;
  /** Kept clones of the slots' inputs (records never own their input). */
  readonly inputs: tf.Tensor[];
  /**
   * Misuse found inside TF.js's gradient computation (wrong loss, second
   * forward pass): TF.js leaks its saved tensors when a gradient function
   * throws, so the step is completed (gradients only) and the error is
   * thrown when the step ends.
   */
  failure: string | undefined;
  handle: StepHandle | undefined;
}

const WRAPPED = Symbol('curvpack.pluginWrapper');
const attachedTo = new WeakMap<tf.LayersModel, TrainingPlugin>();

function lossName(loss: unknown): string {
  if (typeof loss === 'string') return `'${loss}'`;
  if (typeof loss === 'function') return `function ${loss.name || '(anonymous)'}`;
  if (loss === undefined || loss === null) return 'no loss';
  return JSON.stringify(loss);
}

/**
 * Plugin for `model.fit` (a `tf.Callback`) and for `optimizer.minimize` loops.
 *
 * ```ts
 * const ext = extend(model, { loss: 'softmaxCrossEntropy' });
 * const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad(), new DiagGGNExact()], every: 10 });
 * model.compile({ optimizer: tf.train.sgd(0.1), loss: plugin.loss });
 * plugin.attach();
 * plugin.on('step', (e) => console.log(e.step, e.loss, e.result.get('DiagGGNExact', 0)));
 * await model.fit(x, y, { batchSize: 32, epochs: 2, callbacks: [plugin] });
 * plugin.detach();
 * ```
 */
export class TrainingPlugin extends tf.Callback {
  readonly ext: ExtendedModel;
  readonly extensions: readonly Extension<tf.TensorContainer>[];
  readonly hooks: readonly GroupHook[];
  readonly every: number;
  readonly plainSteps: 'engine' | 'tfjs';
  readonly seed: number;
  private readonly emitter = new EventEmitter<PluginEvents>();
  private slots: Slot[] = [];
  private firstParamSlot = -1;
  private active: ActiveStep | undefined;
  private stepCount = 0;
  private epochNow = 0;
  private isAttached = false;
  /** An explicit step that TF.js runs alone (`plainSteps: 'tfjs'`), until endStep(). */
  private pendingPlain: number | undefined;
  /** The running step's result, between the end of its backward pass and the end of the step. */
  current: BackwardResult | undefined;

  constructor(ext: ExtendedModel, options: PluginOptions = {}) {
    super();
    if (ext === undefined || ext === null || typeof (ext as { createStep?: unknown }).createStep !== 'function') {
      throw new Error('TrainingPlugin: the first argument must be an ExtendedModel: new TrainingPlugin(extend(model, { loss }), options).');
    }
    this.ext = ext;
    this.every = checkPositiveInt('TrainingPlugin', 'every', options.every, 1, ' (compute every k-th step)');
    const plain = options.plainSteps ?? 'engine';
    if (plain !== 'engine' && plain !== 'tfjs') {
      throw new Error(`TrainingPlugin: option 'plainSteps' must be 'engine' or 'tfjs', got ${String(plain)}.`);
    }
    this.plainSteps = plain;
    const seed = options.seed ?? 0;
    if (!Number.isFinite(seed)) throw new Error(`TrainingPlugin: option 'seed' must be a finite number, got ${String(seed)}.`);
    this.seed = seed;
    this.extensions = [...(options.extensions ?? [])];
    this.hooks = [...(options.hooks ?? [])];
    // Fail early: names, model support and groups (batch-size checks run per step).
    checkRequests('TrainingPlugin', ext, this.extensions, this.hooks);
    // TF.js may hand the callback methods around unbound (CustomCallback wraps plain objects).
    this.onTrainBegin = this.onTrainBegin.bind(this);
    this.onTrainEnd = this.onTrainEnd.bind(this);
    this.onEpochBegin = this.onEpochBegin.bind(this);
    this.onBatchBegin = this.onBatchBegin.bind(this);
    this.onBatchEnd = this.onBatchEnd.bind(this);
  }

  // ---------------------------------------------------------------- events

  on<K extends keyof PluginEvents>(event: K, listener: PluginEvents[K]): this {
    this.emitter.on(event, listener as never);
    return this;
  }

  once<K extends keyof PluginEvents>(event: K, listener: PluginEvents[K]): this {
    this.emitter.once(event, listener as never);
    return this;
  }

  off<K extends keyof PluginEvents>(event: K, listener?: PluginEvents[K]): this {
    this.emitter.off(event, listener as never);
    return this;
  }

  private warn(w: TrainingWarning): void {
    this.emitter.emit('warning', w);
  }

  // ---------------------------------------------------------- attach/detach

  /** Whether the plugin's wrappers are installed. */
  get attached(): boolean {
    return this.isAttached;
  }

  /** Steps started so far (model.fit batches and explicit steps). */
  get steps(): number {
    return this.stepCount;
  }

  /**
   * The recording loss for `model.compile({ optimizer, loss: plugin.loss })`:
   * the extended model's loss (name and reduction of `extend`), reduced to a
   * scalar. Inside a plugin step it starts the step's backward quantities;
   * elsewhere (evaluate, validation, `plainSteps: 'tfjs'`) it is an ordinary
   * differentiable TF.js loss with the same value.
   */
  readonly loss = (yTrue: tf.Tensor, yPred: tf.Tensor): tf.Tensor => {
    const a = this.active;
    if (a === undefined || a.lossDone || a.step === undefined || a.output === undefined) {
      return this.plainLoss(yTrue, yPred);
    }
    if (yPred !== a.output) {
      a.failure ??= `plugin.loss: in step ${a.index} the loss received a tensor that is not the model output recorded by the plugin; pass the output of the model's forward pass directly (in optimizer.minimize loops use model.apply(x, { training: true }) — model.predict splits the batch and copies its output).`;
      return this.plainLoss(yTrue, yPred);
    }
    const step = a.step;
    const ytShape = yTrue.shape.slice();
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const yt = args[0] as tf.Tensor;
      const yp = args[1] as tf.Tensor;
      let value: number;
      try {
        value = step.beginLoss(yp, yt);
      } catch (e) {
        if (e instanceof Error && /not finite/.test(e.message)) this.warn({ step: a.index, source: 'numerics', message: e.message });
        this.abort(a);
        throw e;
      }
      a.lossDone = true;
      return {
        value: tf.scalar(value),
        // ∂L/∂yPred = dy · (the loss gradient); targets get zeros (never requested by TF.js).
        gradFunc: (dy: tf.Tensor) => [tf.zeros(ytShape), tf.mul(step.currentGradient as tf.Tensor, dy)],
      };
    });
    return f(yTrue, yPred);
  };

  private plainLoss(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Tensor {
    const loss = this.ext.loss;
    if (yPred.rank !== 2) {
      throw new Error(`plugin.loss: the model output has shape [${yPred.shape.join(', ')}]; curvpack's losses need outputs [N, C].`);
    }
    return tf.tidy(() => {
      const t = loss.prepareTargets(yPred as tf.Tensor2D, yTrue);
      return tf.sum(loss.perSampleLoss(yPred as tf.Tensor2D, t));
    });
  }

  /**
   * Install the wrappers into the model's layers. Throws if a plugin is
   * already attached to the model, or if the model was compiled with a loss
   * other than `plugin.loss`. Returns the plugin.
   */
  attach(): this {
    if (this.isAttached) throw new Error('TrainingPlugin.attach: this plugin is already attached; call detach() first.');
    const model = this.ext.model;
    const other = attachedTo.get(model);
    if (other !== undefined) {
      throw new Error(
        'TrainingPlugin.attach: another plugin is already attached to this model; call detach() on it first (one plugin per model: give it all the extensions and hooks).',
      );
    }
    if (model.optimizer !== undefined && model.optimizer !== null) this.checkLoss(model);
    const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
    const slots: Slot[] = [];
    const byLayer = new Map<number, number[]>();
    this.ext.modules.forEach((m, i) => {
      const list = byLayer.get(m.layerIndex) ?? [];
      list.push(i);
      byLayer.set(m.layerIndex, list);
    });
    for (const [layerIndex, modules] of [...byLayer.entries()].sort((p, q) => p[0] - q[0])) {
      const layer = layers[layerIndex];
      if (layer === undefined || layer.name !== this.ext.modules[modules[0] as number]?.layerName) {
        throw new Error(
          `TrainingPlugin.attach: the model's layers changed since extend() (layer ${layerIndex} is '${layer?.name}'); extend the model again.`,
        );
      }
      if ((layer.call as unknown as Record<symbol, unknown>)[WRAPPED] !== undefined) {
        throw new Error(`TrainingPlugin.attach: layer '${layer.name}' is already wrapped by another plugin; detach it first.`);
      }
      const variables = this.ext.params.filter((p) => p.layerIndex === layerIndex).map((p) => p.variable);
      const hadOwnCall = Object.prototype.hasOwnProperty.call(layer, 'call');
      slots.push({ layer, modules, variables, hadOwnCall, ownCall: hadOwnCall ? layer.call : undefined });
    }
    this.slots = slots;
    const firstParamModule = this.ext.params[0]?.moduleIndex ?? 0;
    this.firstParamSlot = slots.findIndex((s) => s.modules.includes(firstParamModule));
    slots.forEach((slot, k) => {
      const original = slot.layer.call;
      const wrapper = ((inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs) => {
        const a = this.capture(k, kwargs);
        if (a === undefined) return original.call(slot.layer, inputs, kwargs);
        return this.forwardSlot(a, k, Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs);
      }) as CallFn;
      (wrapper as unknown as Record<symbol, unknown>)[WRAPPED] = this;
      slot.layer.call = wrapper;
    });
    attachedTo.set(model, this);
    this.isAttached = true;
    return this;
  }

  /**
   * Remove the wrappers (each layer's `call` is restored exactly) and free
   * any unfinished step. Idempotent.
   */
  detach(): void {
    if (this.active !== undefined) this.abort(this.active);
    for (const s of this.slots) {
      if (s.hadOwnCall) s.layer.call = s.ownCall as CallFn;
      else delete (s.layer as unknown as { call?: CallFn }).call;
    }
    this.slots = [];
    if (this.isAttached) attachedTo.delete(this.ext.model);
    this.isAttached = false;
  }

  private checkLoss(model: tf.LayersModel): void {
    const loss = (model as unknown as { loss: unknown }).loss;
    const fns = (model as unknown as { lossFunctions?: unknown[] }).lossFunctions;
    const ok = loss === this.loss || (Array.isArray(loss) && loss.length === 1 && loss[0] === this.loss) || (fns?.length === 1 && fns[0] === this.loss);
    if (!ok) {
      throw new Error(
        `TrainingPlugin: the model is compiled with ${lossName(loss)}, not with the plugin's recording loss; compile it with model.compile({ optimizer, loss: plugin.loss }) — plugin.loss is the extended model's '${this.ext.loss.name}' loss (reduction '${this.ext.loss.reduction}', as given to extend()).`,
      );
    }
  }

  private isOurModel(m: unknown): boolean {
    const model = this.ext.model;
    return m === model || (model as unknown as { model?: unknown }).model === m;
  }

  // ----------------------------------------------------- tf.Callback methods

  override async onTrainBegin(): Promise<void> {
    if (this.active !== undefined) this.abort(this.active);
    if (!this.isAttached) {
      throw new Error('TrainingPlugin: model.fit started but the plugin is not attached; call plugin.attach() before model.fit.');
    }
    const m = (this as unknown as { model?: tf.LayersModel }).model;
    if (m !== undefined && m !== null) {
      if (!this.isOurModel(m)) {
        throw new Error('TrainingPlugin: model.fit was called on a different model than the one given to extend(); pass the plugin to the fit of that model.');
      }
      this.checkLoss(m);
    }
  }

  override async onTrainEnd(): Promise<void> {
    if (this.active !== undefined) this.abort(this.active);
  }

  override async onEpochBegin(epoch: number): Promise<void> {
    this.epochNow = epoch;
  }

  override async onBatchBegin(batch: number): Promise<void> {
    if (this.active !== undefined) this.abort(this.active);
    this.start('fit', this.epochNow, batch, true);
  }

  override async onBatchEnd(): Promise<void> {
    const a = this.active;
    if (a !== undefined) this.finish(a);
  }

  /** Discard an unfinished step (e.g. after a model.fit call that failed outside curvpack's code), freeing its tensors. */
  reset(): void {
    if (this.active !== undefined) this.abort(this.active);
    this.pendingPlain = undefined;
  }

  // ------------------------------------------------------ explicit steps

  /**
   * Start a step for an `optimizer.minimize` loop (or `model.trainOnBatch`):
   * the next forward pass through the model (`model.apply(x, { training:
   * true })`; not `model.predict`, which splits and copies) and `plugin.loss`
   * on its output are recorded, and the gradient computation of `minimize`
   * runs the extensions. End it with `endStep()`.
   */
  beginStep(options: { training?: boolean; epoch?: number; batch?: number } = {}): void {
    if (!this.isAttached) throw new Error('TrainingPlugin.beginStep: the plugin is not attached; call plugin.attach() first.');
    if (this.pendingPlain !== undefined) {
      throw new Error(`TrainingPlugin.beginStep: step ${this.pendingPlain} was not ended; call endStep() first.`);
    }
    if (this.active !== undefined) {
      throw new Error(
        this.active.mode === 'fit'
          ? 'TrainingPlugin.beginStep: a model.fit step of this plugin is in progress; explicit steps are for optimizer.minimize loops (if a model.fit call failed, call plugin.reset() first).'
          : `TrainingPlugin.beginStep: step ${this.active.index} was not ended; call endStep() first.`,
      );
    }
    const index = this.stepCount;
    this.start('explicit', options.epoch ?? 0, options.batch ?? index, options.training ?? true);
    if (this.active === undefined) this.pendingPlain = index;
  }

  /** End the step begun by `beginStep()`; the caller owns the returned result. */
  endStep(): PluginStepResult {
    const a = this.active;
    if (a === undefined || a.mode !== 'explicit') {
      if (this.pendingPlain !== undefined) {
        const step = this.pendingPlain;
        this.pendingPlain = undefined;
        return { step, computed: false, loss: undefined, result: undefined };
      }
      throw new Error('TrainingPlugin.endStep: no step is running; call beginStep() first.');
    }
    const result = this.finish(a);
    return { step: a.index, computed: a.computed, loss: result.loss, result };
  }

  /**
   * Run `fn` (typically `() => optimizer.minimize(() => plugin.loss(y, model.apply(x)), true)`)
   * as one plugin step. Returns fn's value and the step's result (the caller
   * owns both). If fn throws, the step is discarded and the error rethrown.
   */
  step<T>(fn: () => T, options: { training?: boolean; epoch?: number; batch?: number } = {}): PluginStepResult & { value: T } {
    this.beginStep(options);
    let value: T;
    try {
      value = fn();
    } catch (e) {
      if (this.active !== undefined) this.abort(this.active);
      this.pendingPlain = undefined;
      throw e;
    }
    return { ...this.endStep(), value };
  }

  // --------------------------------------------------------------- the step

  private start(mode: 'fit' | 'explicit', epoch: number, batch: number, training: boolean): void {
    const index = this.stepCount++;
    const computed = index % this.every === 0;
    if (!computed && this.plainSteps === 'tfjs') return;
    this.active = {
      index,
      computed,
      mode,
      epoch,
      batch,
      training,
      step: undefined,
      batchSize: 0,
      nextSlot: 0,
      output: undefined,
      lossDone: false,
      backwardDone: false,
      inputs: [],
      handle: undefined,
      failure: undefined,
    };
  }

  /** The active step if this layer call belongs to its forward pass. */
  private capture(slot: number, kwargs: Kwargs): ActiveStep | undefined {
    const a = this.active;
    if (a === undefined || a.lossDone) return undefined;
    if (a.mode === 'fit' && (kwargs as { training?: unknown } | undefined)?.training !== true) return undefined;
    if (a.failure !== undefined) return undefined;
    if (slot !== a.nextSlot) {
      // Run it plainly; the step fails when it ends (see ActiveStep.failure).
      const name = (i: number) => (i < this.slots.length ? `'${(this.slots[i] as Slot).layer.name}'` : 'the loss (plugin.loss)');
      a.failure =
        a.nextSlot === this.slots.length && slot === 0
          ? `TrainingPlugin: the model was called a second time in step ${a.index} before plugin.loss; a plugin step records exactly one forward pass followed by plugin.loss on its output.`
          : `TrainingPlugin: layer '${(this.slots[slot] as Slot).layer.name}' was called out of order in step ${a.index}; the next expected was ${name(a.nextSlot)} (the plugin records one forward pass through the whole model, in layer order).`;
      return undefined;
    }
    return a;
  }

  private forwardSlot(a: ActiveStep, k: number, x: tf.Tensor): tf.Tensor {
    const slot = this.slots[k] as Slot;
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const xin = args[0] as tf.Tensor;
      const xShape = xin.shape.slice();
      let out: tf.Tensor;
      try {
        if (k === 0) {
          a.batchSize = xin.shape[0] as number;
          a.step = this.ext.createStep(a.batchSize, {
            extensions: a.computed ? this.extensions : [],
            hooks: a.computed ? this.hooks : [],
            training: a.training,
            seed: this.seed + a.index,
            keepTensors: true,
          });
        }
        const step = a.step as BackwardStep;
        // TF.js disposes the layer input after its forward scope: the record gets a kept clone.
        const xk = tf.keep(tf.clone(xin));
        a.inputs.push(xk);
        let h = xk;
        for (const i of slot.modules) h = step.forwardModule(i, h);
        out = tf.clone(h); // TF.js owns this one; the record keeps h
      } catch (e) {
        this.abort(a);
        throw e;
      }
      a.nextSlot = k + 1;
      if (a.nextSlot === this.slots.length) a.output = out;
      return { value: out, gradFunc: (dy: tf.Tensor) => this.backwardSlot(a, k, dy, xShape) };
    });
    return f(x, ...slot.variables);
  }

  private backwardSlot(a: ActiveStep, k: number, dy: tf.Tensor, xShape: number[]): tf.Tensor[] {
    const slot = this.slots[k] as Slot;
    try {
      if (this.active !== a) throw new Error(`TrainingPlugin: step ${a.index} was already ended or discarded when TF.js ran its backward pass.`);
      const step = a.step as BackwardStep;
      if (!a.lossDone && a.failure === undefined) {
        a.failure = `TrainingPlugin: step ${a.index} reached the backward pass without the plugin's loss (the gradients were applied, no extension was computed); compute the loss with plugin.loss(yTrue, yPred) directly on the model output (model.compile({ loss: plugin.loss }) for model.fit).`;
      }
      if (a.failure !== undefined) step.gradientsOnly();
      if (k < this.firstParamSlot) {
        throw new Error(
          `TrainingPlugin: TF.js asked for the gradient w.r.t. the input of layer '${slot.layer.name}' (below the first layer with parameters); plugin steps do not compute gradients w.r.t. the model input — use ext.backward(x, y, { inputGradient: true }).`,
        );
      }
      let g: tf.Tensor | undefined;
      for (let j = slot.modules.length - 1; j >= 0; j--) {
        g = step.backwardModule(slot.modules[j] as number, j === slot.modules.length - 1 ? dy : undefined);
      }
      // TF.js owns (and disposes) what it receives: hand it clones.
      const dx = g !== undefined ? tf.clone(g) : tf.zeros(xShape);
      const grads = slot.variables.map((v) => {
        const gv = step.out.grads[v.name];
        if (gv === undefined) throw new Error(`TrainingPlugin: no gradient was computed for variable '${v.name}'.`);
        return tf.clone(gv);
      });
      if (k === this.firstParamSlot) this.backwardComplete(a);
      return [dx, ...grads];
    } catch (e) {
      if (this.active === a) this.abort(a);
      throw e;
    }
  }

  private backwardComplete(a: ActiveStep): void {
    const step = a.step as BackwardStep;
    a.backwardDone = true;
    const result = new BackwardResult(step.out, this.ext.layout);
    a.handle = new StepHandle(
      { step: a.index, epoch: a.epoch, batch: a.batch, batchSize: a.batchSize, loss: step.out.loss, computed: a.computed },
      result,
      a.mode === 'explicit' ? 'this step was run with plugin.step()/endStep(), whose caller owns the result; clone the tensors you need instead of keep().' : undefined,
    );
    if (a.failure !== undefined) return;
    this.current = result;
    if (a.computed) this.emitter.emit('backward', a.handle.event());
  }

  /** End a step normally: free intermediates, deliver events, return the result. */
  private finish(a: ActiveStep): BackwardResult {
    this.active = undefined;
    this.current = undefined;
    const step = a.step;
    if (a.failure !== undefined) {
      this.release(a);
      throw new Error(a.failure);
    }
    if (step === undefined || !a.backwardDone || a.handle === undefined) {
      this.release(a);
      const why =
        step === undefined
          ? 'no forward pass through the model was recorded (is the plugin attached to the model being trained, and does the forward run with training: true?)'
          : !a.lossDone
            ? 'the loss was not computed with plugin.loss on the model output'
            : 'the backward pass did not run (compute the loss inside optimizer.minimize / model.fit)';
      throw new Error(`TrainingPlugin: step ${a.index} did not complete: ${why}.`);
    }
    step.disposeIntermediates();
    tf.dispose(a.inputs);
    const handle = a.handle;
    if (a.computed) {
      for (const w of hookWarnings(handle.result, this.hooks, a.index)) this.warn(w);
      try {
        this.emitter.emit('step', handle.event());
      } finally {
        handle.settle();
      }
    } else {
      handle.settle();
    }
    return handle.result;
  }

  /** Discard a step (errors, stale steps): free everything it holds. */
  private abort(a: ActiveStep): void {
    if (this.active === a) {
      this.active = undefined;
      this.current = undefined;
    }
    this.release(a);
  }

  private release(a: ActiveStep): void {
    const step = a.step;
    a.step = undefined;
    if (step !== undefined) {
      step.disposeIntermediates();
      if (a.handle === undefined) new BackwardResult(step.out, this.ext.layout).dispose();
      else if (!a.handle.isKept) a.handle.result.dispose();
    }
    tf.dispose(a.inputs.splice(0));
  }
}
