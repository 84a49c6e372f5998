/**
 * The per-module backward unit: derivatives → extensions → hooks.
 *
 * A BackwardStep owns everything of one step: the forward records, the
 * gradient and the backpropagated quantities at the current module output,
 * and the results. It can be driven module by module by the engine's own
 * loop (`ExtendedModel.backward`) or from inside TF.js's autodiff
 * (`tf.customGrad` wrappers that call `backwardModule(i, gradOut)`).
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardRecord, LinearModuleDerivatives, ModuleDerivatives } from '../derivatives/types';
import { isLinearModule } from '../derivatives/types';
import type { LossDerivatives } from '../derivatives/losses/types';
import { Rng } from '../utils/random';
import { keepAll } from '../utils/tensors';
import type { Extension, ParamContext, StepInfo } from './extension';
import type { GroupHook, ResolvedGroup } from './hook';
import type { ParamInfo } from './params';
import { paramProduct, type ProductKind } from './paramProducts';
import type { LossContext, Quantity } from './quantity';
import { samplesKey } from './quantity';

/** What the step needs to know about the model. */
export interface StepModel {
  readonly modules: readonly ModuleDerivatives[];
  readonly loss: LossDerivatives;
  /** Parameters of each module, in flat order. */
  readonly moduleParams: readonly (readonly ParamInfo[])[];
}

export interface StepPlan {
  readonly extensions: readonly Extension<tf.TensorContainer>[];
  readonly hooks: readonly { hook: GroupHook; groups: readonly ResolvedGroup[] }[];
  readonly training: boolean;
  /** Seed of this step's random streams (MC quantities without their own seed, dropout). */
  readonly seed: number;
  /** Also compute the gradient w.r.t. the model input. */
  readonly inputGradient: boolean;
  /**
   * Keep (`tf.keep`) every tensor the step stores between calls: records,
   * gradients, quantities and results. For drivers that call the step from
   * inside TF.js scopes that end between calls (`tf.customGrad` forward and
   * gradient functions, src/train/plugin.ts); the step still disposes its
   * intermediates itself, and the owner of `out` disposes the results.
   * Default false (the engine's own loop runs inside one `tf.tidy`).
   */
  readonly keepTensors?: boolean;
}

/** Raw results of a step (plain containers so that `tf.tidy` keeps their tensors). */
export interface StepResults {
  loss: number;
  grads: Record<string, tf.Tensor>;
  results: Record<string, Record<string, tf.TensorContainer>>;
  groupResults: Record<string, tf.TensorContainer[]>;
  inputGradient?: tf.Tensor;
}

interface LiveQuantity {
  readonly q: Quantity<tf.TensorContainer>;
  value: tf.TensorContainer;
}

export class BackwardStep {
  private readonly records: (ForwardRecord | undefined)[];
  private readonly subRecords = new Map<string, ForwardRecord>();
  private readonly quantities: LiveQuantity[] = [];
  private readonly firstParamModule: number;
  private grad: tf.Tensor | undefined;
  private batchSize = 0;
  private memo = new Map<string, tf.TensorContainer>();
  private readonly pending: Map<string, tf.TensorContainer>[]; // per hook: param name → contribution
  private gradOnly = false;
  readonly out: StepResults = { loss: NaN, grads: {}, results: {}, groupResults: {} };

  constructor(
    private readonly model: StepModel,
    private readonly plan: StepPlan,
  ) {
    this.records = new Array(model.modules.length).fill(undefined);
    this.firstParamModule = model.moduleParams.findIndex((ps) => ps.length > 0);
    const seen = new Map<string, Quantity<tf.TensorContainer>>();
    for (const owner of [...plan.extensions, ...plan.hooks.map((h) => h.hook)]) {
      for (const q of owner.quantities) if (!seen.has(q.key)) seen.set(q.key, q);
    }
    this.quantities = [...seen.values()].map((q) => ({ q, value: [] }));
    for (const e of plan.extensions) this.out.results[e.name] = {};
    this.pending = plan.hooks.map(() => new Map());
    for (const h of plan.hooks) this.out.groupResults[h.hook.name] = [];
  }

  /** Keep a stored value out of the enclosing scopes (with `plan.keepTensors`). */
  private own<T>(c: T): T {
    return this.plan.keepTensors === true ? keepAll(c) : c;
  }

  get stepInfo(): StepInfo {
    return { batchSize: this.batchSize };
  }

  /** Forward through module i, recording what its backward pass needs. */
  forwardModule(i: number, x: tf.Tensor): tf.Tensor {
    const m = this.model.modules[i] as ModuleDerivatives;
    if (i === 0) this.batchSize = x.shape[0] as number;
    let rec = m.forward(x, { training: this.plan.training, seed: this.plan.seed + i });
    // A record must own its output: never alias the input.
    if (rec.output === x) rec = { ...rec, output: tf.clone(x) };
    // The record owns output, saved and constants (never its input).
    this.own([rec.output, rec.saved, rec.constants]);
    this.records[i] = rec;
    return rec.output;
  }

  /**
   * Loss at the model output: value (checked finite), gradient and the
   * initial value of every quantity. Returns the loss.
   */
  beginLoss(output: tf.Tensor, targets: tf.Tensor): number {
    const loss = this.model.loss;
    if (output.rank !== 2) {
      throw new Error(
        `the model output has shape [${output.shape.join(', ')}]; curvpack's losses need outputs [N, C] (end the model with a Dense layer).`,
      );
    }
    const out2 = output as tf.Tensor2D;
    const t = loss.prepareTargets(out2, targets);
    this.targets = this.own(t);
    const value = tf.tidy(() => tf.sum(loss.perSampleLoss(out2, t)));
    const v = value.dataSync()[0] as number;
    value.dispose();
    if (!Number.isFinite(v)) {
      throw new Error(
        `the loss is ${v} (not finite) at this step: check the inputs and targets for NaN/Inf and lower the learning rate if the weights diverged.`,
      );
    }
    this.out.loss = v;
    this.grad = this.own(loss.gradient(out2, t));
    const rngs = new Map<number, Rng>();
    for (const live of this.quantities) {
      const samples = live.q.samples;
      const ctx: LossContext = {
        loss,
        output: samples ? (tf.gather(out2, samples as number[]) as tf.Tensor2D) : out2,
        targets: samples ? (tf.gather(t, samples as number[]) as tf.Tensor2D) : t,
        batchSize: this.batchSize,
        rng: (seed) => {
          const s = seed ?? this.plan.seed;
          let r = rngs.get(s);
          if (r === undefined) {
            r = new Rng(s);
            rngs.set(s, r);
          }
          return r;
        },
      };
      live.value = this.own(live.q.init(ctx));
      if (samples) tf.dispose([ctx.output, ctx.targets]);
    }
    return v;
  }

  private targets: tf.Tensor | undefined;

  /**
   * From now on compute gradients only (no extensions, hooks or quantities):
   * for drivers that must finish a step whose loss was not recorded (the
   * training plugin completes TF.js's backward pass, then reports the error).
   */
  gradientsOnly(): void {
    this.gradOnly = true;
    for (const live of this.quantities) {
      tf.dispose(live.value);
      live.value = [];
    }
  }

  /** The gradient w.r.t. the current module output (after `beginLoss`). */
  get currentGradient(): tf.Tensor | undefined {
    return this.grad;
  }

  private record(i: number, samples: readonly number[] | undefined): ForwardRecord {
    const rec = this.records[i];
    if (rec === undefined) throw new Error(`module ${i} has no forward record (forwardModule was not called).`);
    if (samples === undefined) return rec;
    const key = `${i}${samplesKey(samples)}`;
    let sub = this.subRecords.get(key);
    if (sub === undefined) {
      const idx = tf.tensor1d(samples as number[], 'int32');
      const g = (t: tf.Tensor) => tf.gather(t, idx);
      const saved: Record<string, tf.Tensor> = {};
      for (const [k, v] of Object.entries(rec.saved)) saved[k] = g(v);
      sub = keepAll({ input: g(rec.input), output: g(rec.output), saved, constants: rec.constants });
      idx.dispose();
      this.subRecords.set(key, sub);
    }
    return sub;
  }

  private gradRows(samples: readonly number[] | undefined): tf.Tensor {
    const g = this.grad as tf.Tensor;
    if (samples === undefined) return g;
    return this.memoize(`grad${samplesKey(samples)}`, () => tf.gather(g, samples as number[]));
  }

  /**
   * Values memoised for the current module. They may be created lazily
   * inside an extension's own `tf.tidy`, so they are kept out of every tidy
   * scope and disposed explicitly when the module is done.
   */
  private memoize<T extends tf.TensorContainer>(key: string, make: () => T): T {
    let v = this.memo.get(key);
    if (v === undefined) {
      v = keepAll(make());
      this.memo.set(key, v);
    }
    return v as T;
  }

  /** The unfolded input of module i (rows of `samples`), memoised for the module (shared by the gradient and every extension). */
  private unfolded(i: number, samples: readonly number[] | undefined): tf.Tensor3D {
    const module = this.model.modules[i] as LinearModuleDerivatives;
    return this.memoize(`X${samplesKey(samples)}`, () => module.unfoldInput(this.record(i, samples)));
  }

  /**
   * A parameter product of an output stack (rows of `samples`): the one place
   * that decides how. X is made only when a product needs it; the summed
   * kernel product uses the module's own `summedKernelProduct` from the
   * record where it has one (Conv2D: one convolution instead of im2col).
   */
  private product(i: number, param: ParamInfo, kind: ProductKind, stack: tf.Tensor, samples?: readonly number[]): tf.Tensor {
    const module = this.model.modules[i] as LinearModuleDerivatives;
    const kernel = param.role === 'kernel';
    const fromRecord = kernel && kind === 'summed' && module.summedKernelProduct !== undefined;
    return paramProduct(
      kind,
      module,
      param.role,
      param.shape,
      kernel ? () => this.unfolded(i, samples) : undefined,
      stack,
      fromRecord ? this.record(i, samples) : undefined,
    );
  }

  private paramContext(i: number, param: ParamInfo, gradient: tf.Tensor): ParamContext {
    const module = this.model.modules[i] as LinearModuleDerivatives;
    const product = (kind: ProductKind) => (stack: tf.Tensor, samples?: readonly number[]) =>
      this.product(i, param, kind, stack, samples);
    return {
      param,
      module,
      loss: this.model.loss,
      batchSize: this.batchSize,
      gradOutput: this.grad as tf.Tensor,
      gradient,
      value: <T extends tf.TensorContainer>(q: Quantity<T>): T => {
        const live = this.quantities.find((l) => l.q.key === q.key);
        if (live === undefined) throw new Error(`quantity '${q.key}' was not requested by any extension of this step.`);
        return live.value as T;
      },
      record: (samples) => this.record(i, samples),
      gradStack: (samples) =>
        this.memoize(`gradStack${samplesKey(samples)}`, () => tf.expandDims(this.gradRows(samples), 0)),
      perSample: product('perSample'),
      summed: product('summed'),
      sumSquared: product('sumSquared'),
      perSampleSumSquared: product('perSampleSumSquared'),
      perSampleSquaredNorm: product('perSampleSquaredNorm'),
      unfoldedInput: (samples) => this.unfolded(i, samples),
      memo: (key, make) => this.memoize(`user:${key}`, make),
    };
  }

  /**
   * Backward through module i: parameter gradients, extensions, hooks, then
   * the gradient and quantities at the module input. `gradOut` (optional)
   * replaces the gradient at the module output (customGrad drivers pass
   * TF.js's). Returns the gradient w.r.t. the module input, or undefined
   * where nothing upstream needs it.
   */
  backwardModule(i: number, gradOut?: tf.Tensor): tf.Tensor | undefined {
    const module = this.model.modules[i] as ModuleDerivatives;
    const rec = this.records[i];
    if (rec === undefined) throw new Error(`module ${i} (${module.kind}) has no forward record.`);
    if (gradOut !== undefined) {
      if (this.grad !== undefined && this.grad !== gradOut) this.grad.dispose();
      this.grad = gradOut;
    }
    const grad = this.grad;
    if (grad === undefined) {
      // Below the first module with parameters nothing is propagated (unless inputGradient).
      if (i < this.firstParamModule && !this.plan.inputGradient && !Number.isNaN(this.out.loss)) {
        this.disposeRecord(i);
        return undefined;
      }
      throw new Error('backwardModule called before beginLoss.');
    }
    const params = this.model.moduleParams[i] as readonly ParamInfo[];
    if (params.length > 0) {
      if (!isLinearModule(module)) throw new Error(`${module.kind}: modules with parameters must be linear in their weights.`);
      for (const p of params) this.processParam(i, p);
    }
    // Propagate to the module input (not needed below the first module with parameters).
    let gradIn: tf.Tensor | undefined;
    if (this.plan.inputGradient || i > this.firstParamModule) {
      gradIn = tf.tidy(() => {
        const s = module.jacTMatProd(rec, tf.expandDims(grad, 0));
        return tf.reshape(s, rec.input.shape);
      });
    }
    if (this.gradOnly) {
      // nothing to propagate
    } else if (i > this.firstParamModule) {
      for (const live of this.quantities) {
        const samples = live.q.samples;
        const next = live.q.propagate(module, this.record(i, samples), live.value, {
          gradOutput: this.gradRows(samples),
          batchSize: this.batchSize,
        });
        tf.dispose(live.value);
        live.value = this.own(next);
      }
    } else {
      for (const live of this.quantities) {
        tf.dispose(live.value);
        live.value = [];
      }
    }
    // Free this module's buffers.
    for (const v of this.memo.values()) tf.dispose(v);
    this.memo.clear();
    for (const [key, sub] of this.subRecords) {
      if (key.startsWith(`${i}@`)) {
        tf.dispose([sub.input, sub.output, ...Object.values(sub.saved)]);
        this.subRecords.delete(key);
      }
    }
    if (gradOut === undefined) grad.dispose();
    this.grad = this.own(gradIn);
    if (i === 0 && gradIn !== undefined && this.plan.inputGradient) this.out.inputGradient = gradIn;
    this.disposeRecord(i);
    return gradIn;
  }

  /**
   * A record owns its output, saved tensors and constants; never its input
   * (the previous module's output, or the user's x).
   */
  private disposeRecord(i: number): void {
    const rec = this.records[i];
    if (rec === undefined) return;
    tf.dispose([rec.output, ...Object.values(rec.saved), ...Object.values(rec.constants)]);
    this.records[i] = undefined;
  }

  private processParam(i: number, p: ParamInfo): void {
    const gradient = tf.tidy(() =>
      tf.reshape(this.product(i, p, 'summed', tf.expandDims(this.grad as tf.Tensor, 0)), p.shape as number[]),
    );
    this.out.grads[p.variable.name] = this.own(gradient);
    if (this.gradOnly) return;
    const ctx = this.paramContext(i, p, gradient);
    for (const e of this.plan.extensions) {
      const r = e.computeParam(ctx);
      if (r !== undefined) (this.out.results[e.name] as Record<string, tf.TensorContainer>)[p.name] = this.own(r);
    }
    this.plan.hooks.forEach(({ hook, groups }, h) => {
      const group = groups.find((g) => g.params.some((q) => q.name === p.name));
      if (group === undefined) return;
      const pending = this.pending[h] as Map<string, tf.TensorContainer>;
      pending.set(p.name, this.own(hook.computeParam(ctx, group)));
      if (group.params.every((q) => pending.has(q.name))) {
        const contributions = group.params.map((q) => pending.get(q.name) as tf.TensorContainer);
        const result = hook.finishGroup(group, contributions, this.stepInfo);
        for (const q of group.params) pending.delete(q.name);
        tf.dispose(contributions);
        (this.out.groupResults[hook.name] as tf.TensorContainer[])[group.index] = this.own(result);
      }
    });
  }

  /** Dispose everything the step still holds (records, quantities, pending contributions), except results. */
  disposeIntermediates(): void {
    for (let i = this.records.length - 1; i >= 0; i--) this.disposeRecord(i);
    for (const sub of this.subRecords.values()) tf.dispose([sub.input, sub.output, ...Object.values(sub.saved)]);
    this.subRecords.clear();
    for (const live of this.quantities) tf.dispose(live.value);
    for (const v of this.memo.values()) tf.dispose(v);
    this.memo.clear();
    for (const p of this.pending) for (const v of p.values()) tf.dispose(v);
    if (this.targets) this.targets.dispose();
    if (this.grad && this.grad !== this.out.inputGradient) this.grad.dispose();
  }
}
