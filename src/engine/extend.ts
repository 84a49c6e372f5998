/**
 * `extend(model, { loss, reduction })`: a TF.js LayersModel (Sequential, or a
 * functional model whose layers form a chain) turned into an extended model
 * whose `backward` runs forward → loss → one backward pass through the
 * module derivatives, computing the requested extensions and hooks.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModuleDerivatives } from '../derivatives/types';
import { isLinearModule } from '../derivatives/types';
import { modulesForLayer } from '../derivatives/index';
import { createLoss } from '../derivatives/losses/index';
import type { LossDerivatives, LossName, Reduction } from '../derivatives/losses/types';
import { BackwardStep, type StepModel, type StepPlan, type StepResults } from './backward';
import type { Extension, ModelInfo } from './extension';
import { checkSubsampling } from './extension';
import type { GroupHook, ParamGroupSpec, ResolvedGroup } from './hook';
import { ParamLayout, type ParamInfo, type ParamRef } from './params';
import { BackwardResult } from './results';

export interface ExtendOptions {
  /** `mse`, `softmaxCrossEntropy` or `sigmoidCrossEntropy`, or a LossDerivatives. */
  loss: LossName | LossDerivatives;
  /** `mean` (default) or `sum` (FORMAT.md §4). Ignored when `loss` is an object. */
  reduction?: Reduction;
}

export interface BackwardOptions {
  /** Extensions to compute (per parameter). */
  extensions?: readonly Extension<tf.TensorContainer>[];
  /** Group hooks to compute (per parameter group). */
  hooks?: readonly GroupHook[];
  /** Training mode (dropout active). Default true, as in `model.fit`. */
  training?: boolean;
  /** Seed for this step's random quantities (MC samples, dropout). */
  seed?: number;
  /** Require a seed for every random quantity (throws if none is given). */
  deterministic?: boolean;
  /** Also return the gradient w.r.t. the input (`result.inputGradient`). */
  inputGradient?: boolean;
}

/** Options of `ExtendedModel.createStep` (a step driven from outside the engine's loop). */
export interface StepOptions extends BackwardOptions {
  /** Keep every tensor the step stores (`StepPlan.keepTensors`); default false. */
  keepTensors?: boolean;
}

export interface ModuleEntry {
  readonly derivatives: ModuleDerivatives;
  /** Index of the owning layer among the model's layers (InputLayer excluded). */
  readonly layerIndex: number;
  readonly layerName: string;
  readonly inShape: readonly number[];
  readonly outShape: readonly number[];
}

type Layer = tf.layers.Layer;

/** The model's layers as a chain; throws for anything else. */
function chainLayers(model: tf.LayersModel): Layer[] {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new Error(
      `curvpack needs a model with one input and one output; this model has ${model.inputs.length} inputs and ${model.outputs.length} outputs.`,
    );
  }
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  if (layers.length === 0) throw new Error('the model has no layers.');
  if (model.getClassName() === 'Sequential') return layers;
  // Functional model: every layer must take exactly the previous layer's output.
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i] as Layer;
    const nodes = layer.inboundNodes.filter((n) => n.inboundLayers.length > 0);
    const prev = i === 0 ? undefined : layers[i - 1];
    const ok = nodes.some(
      (n) =>
        n.inboundLayers.length === 1 &&
        (prev === undefined ? n.inboundLayers[0]?.getClassName() === 'InputLayer' : n.inboundLayers[0] === prev),
    );
    if (!ok) {
      const from = nodes.flatMap((n) => n.inboundLayers.map((l) => l.name));
      throw new Error(
        `curvpack supports Sequential models and functional models whose layers form a chain; layer '${layer.name}' takes its input from [${from.join(', ')}] instead of ${prev ? `'${prev.name}'` : 'the model input'} alone.`,
      );
    }
  }
  const last = layers[layers.length - 1] as Layer;
  if (model.outputLayers[0] !== last) {
    throw new Error(`curvpack needs the model output to be the last layer of the chain ('${last.name}').`);
  }
  return layers;
}

let seedCounter = 0x5eed;

export class ExtendedModel {
  readonly loss: LossDerivatives;
  readonly modules: readonly ModuleEntry[];
  readonly layout: ParamLayout;
  /** Input shape without the batch axis. */
  readonly inputShape: readonly number[];
  /** Number of model outputs C. */
  readonly numOutputs: number;
  private readonly stepModel: StepModel;

  constructor(
    readonly model: tf.LayersModel,
    options: ExtendOptions,
  ) {
    if (options === undefined || options.loss === undefined) {
      throw new Error(`extend(model, { loss }): option 'loss' is required (mse, softmaxCrossEntropy or sigmoidCrossEntropy).`);
    }
    this.loss = typeof options.loss === 'string' ? createLoss(options.loss, options.reduction ?? 'mean') : options.loss;
    const layers = chainLayers(model);
    const inShape = (model.inputs[0] as tf.SymbolicTensor).shape.slice(1);
    if (inShape.some((d) => d === null)) {
      throw new Error(`the model input shape [${inShape.join(', ')}] has unknown dimensions; give inputShape fully.`);
    }
    this.inputShape = inShape as number[];
    const modules: ModuleEntry[] = [];
    const params: ParamInfo[] = [];
    const moduleParams: ParamInfo[][] = [];
    let shape = [...this.inputShape];
    let offset = 0;
    layers.forEach((layer, layerIndex) => {
      for (const derivatives of modulesForLayer(layer)) {
        const outShape = derivatives.outputShape(shape);
        const moduleIndex = modules.length;
        modules.push({ derivatives, layerIndex, layerName: layer.name, inShape: shape, outShape });
        const mine: ParamInfo[] = [];
        for (const mp of derivatives.params) {
          if (!mp.variable.trainable) continue;
          const size = mp.variable.size;
          const info: ParamInfo = {
            index: params.length,
            name: mp.variable.name,
            shortName: `${layerIndex}/${mp.role}`,
            role: mp.role,
            layerIndex,
            layerName: layer.name,
            moduleIndex,
            shape: mp.variable.shape,
            size,
            offset,
            variable: mp.variable,
          };
          offset += size;
          params.push(info);
          mine.push(info);
        }
        moduleParams.push(mine);
        if (mine.length > 0 && !isLinearModule(derivatives)) {
          throw new Error(`${derivatives.kind}: curvpack handles parameters of modules linear in their weights only.`);
        }
        shape = outShape;
      }
    });
    if (shape.length !== 1) {
      throw new Error(
        `the model output has shape [null, ${shape.join(', ')}]; curvpack's losses need outputs [N, C] (end the model with a Dense layer).`,
      );
    }
    this.numOutputs = shape[0] as number;
    this.modules = modules;
    this.layout = new ParamLayout(params);
    this.stepModel = { modules: modules.map((m) => m.derivatives), loss: this.loss, moduleParams };
  }

  /** Trainable parameters in flat order. */
  get params(): readonly ParamInfo[] {
    return this.layout.params;
  }

  /** Number of trainable parameters D. */
  get numParams(): number {
    return this.layout.size;
  }

  /** Facts for extensions' validation. */
  get info(): ModelInfo {
    return {
      loss: this.loss,
      params: this.params,
      moduleKinds: this.modules.map((m) => m.derivatives.kind),
      modules: this.modules,
    };
  }

  /** The parameters of one layer (by index among the model's layers, or name). */
  layerParams(layer: number | string): ParamInfo[] {
    return this.params.filter((p) => (typeof layer === 'number' ? p.layerIndex === layer : p.layerName === layer));
  }

  /** Resolve user groups `[{params}]` into disjoint groups in flat order. */
  resolveGroups(hookName: string, groups: readonly ParamGroupSpec[]): ResolvedGroup[] {
    if (!Array.isArray(groups) || groups.length === 0) {
      throw new Error(`${hookName}: option 'groups' must list at least one parameter group [{ params: [...] }].`);
    }
    const owner = new Map<string, number>();
    return groups.map((g, index) => {
      if (!g || !Array.isArray(g.params) || g.params.length === 0) {
        throw new Error(`${hookName}: parameter group ${index} has no parameters; give { params: [...] } with at least one.`);
      }
      const ps: ParamInfo[] = (g.params as readonly ParamRef[]).map((r) => this.layout.resolve(r));
      for (const p of ps) {
        const prev = owner.get(p.name);
        if (prev !== undefined) {
          throw new Error(
            `${hookName}: parameter '${p.name}' is in group ${prev} and group ${index}; each parameter may belong to one group only.`,
          );
        }
        owner.set(p.name, index);
      }
      const sorted: ParamInfo[] = [...new Set(ps)].sort((a, b) => a.index - b.index);
      return { index, params: sorted, size: sorted.reduce((s, p) => s + p.size, 0) };
    });
  }

  private checkInput(x: tf.Tensor): void {
    const want = this.inputShape;
    if (x.rank !== want.length + 1 || x.shape.slice(1).some((d, i) => d !== want[i])) {
      throw new Error(
        `input of shape [${x.shape.join(', ')}] does not fit the model input [N, ${want.join(', ')}].`,
      );
    }
    if (x.shape[0] === 0) throw new Error('the input batch is empty (N = 0).');
  }

  /** Forward pass through the module derivatives (no records kept). */
  forward(x: tf.Tensor, options: { training?: boolean; seed?: number } = {}): tf.Tensor {
    this.checkInput(x);
    return tf.tidy(() => {
      let h = x;
      this.modules.forEach((m, i) => {
        const rec = m.derivatives.forward(h, { training: options.training ?? false, seed: (options.seed ?? 0) + i });
        h = rec.output;
      });
      return h;
    });
  }

  /**
   * A BackwardStep for one batch of `batchSize` samples, with the options
   * validated as in `backward` (names, model support, subsampling, seeds).
   * For drivers that run the per-module steps themselves (e.g. the training
   * plugin's `tf.customGrad` wrappers); `backward` uses it too. The caller
   * calls `forwardModule`/`beginLoss`/`backwardModule`, then
   * `disposeIntermediates()`, and owns `step.out` (wrap it with
   * `new BackwardResult(step.out, ext.layout)`).
   */
  createStep(batchSize: number, options: StepOptions = {}): BackwardStep {
    const extensions = options.extensions ?? [];
    const hooks = options.hooks ?? [];
    const names = new Set<string>();
    for (const e of [...extensions, ...hooks]) {
      if (names.has(e.name)) {
        throw new Error(
          `two extensions or hooks are named '${e.name}'; results are stored by name: give one of them a different 'name' option.`,
        );
      }
      names.add(e.name);
    }
    const info = this.info;
    for (const e of [...extensions, ...hooks]) {
      e.validate?.(info);
      e.validateStep?.({ batchSize });
      // Extensions that subsample declare it in a `subsampling` field.
      checkSubsampling(e.name, (e as { subsampling?: readonly number[] }).subsampling, batchSize);
      for (const q of e.quantities) {
        checkSubsampling(e.name, q.samples, batchSize);
        if (options.deterministic && 'seed' in q && (q as { seed?: number }).seed === undefined && options.seed === undefined) {
          throw new Error(
            `${e.name}: deterministic mode needs a seed for Monte-Carlo sampling; pass { seed } to backward() or to the extension.`,
          );
        }
      }
    }
    const plan: StepPlan = {
      extensions,
      hooks: hooks.map((hook) => ({ hook, groups: this.resolveGroups(hook.name, hook.groups) })),
      training: options.training ?? true,
      seed: options.seed ?? (seedCounter = (seedCounter * 1103515245 + 12345) >>> 0),
      inputGradient: options.inputGradient ?? false,
      ...(options.keepTensors ? { keepTensors: true } : {}),
    };
    return new BackwardStep(this.stepModel, plan);
  }

  /**
   * One training step's backward pass with extensions and hooks:
   * forward (recording each module), loss, backward. The caller disposes the
   * result (`result.dispose()`).
   */
  backward(x: tf.Tensor, y: tf.Tensor, options: BackwardOptions = {}): BackwardResult {
    this.checkInput(x);
    const raw = tf.tidy(() => {
      const step = this.createStep(x.shape[0] as number, options);
      try {
        let h = x;
        for (let i = 0; i < this.modules.length; i++) h = step.forwardModule(i, h);
        step.beginLoss(h, y);
        for (let i = this.modules.length - 1; i >= 0; i--) step.backwardModule(i);
        return step.out as unknown as tf.TensorContainer;
      } finally {
        step.disposeIntermediates();
      }
    });
    return new BackwardResult(raw as unknown as StepResults, this.layout);
  }

  /** Loss of a batch (no gradients). */
  lossValue(x: tf.Tensor, y: tf.Tensor): number {
    const out = this.forward(x, { training: false });
    try {
      const t = this.loss.prepareTargets(out as tf.Tensor2D, y);
      const v = tf.tidy(() => tf.sum(this.loss.perSampleLoss(out as tf.Tensor2D, t)));
      t.dispose();
      const r = v.dataSync()[0] as number;
      v.dispose();
      return r;
    } finally {
      out.dispose();
    }
  }
}

/** Extend a TF.js LayersModel (Sequential or a functional chain) for curvpack. */
export function extend(model: tf.LayersModel, options: ExtendOptions): ExtendedModel {
  return new ExtendedModel(model, options);
}
