/**
 * The result of one `backward` call. The caller owns it: `dispose()` frees
 * every tensor (gradients, extension and hook results).
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ResultOf } from './extension';
import type { GroupHook, GroupResultOf } from './hook';
import type { ParamLayout, ParamRef } from './params';
import type { StepResults } from './backward';

type NameOf = string | { readonly name: string };

/**
 * Gradients keyed by variable name. Typed to satisfy every TF.js optimizer's
 * `applyGradients` (some, e.g. Adam, declare `NamedVariableMap` although they
 * only read the tensors).
 */
export type GradientMap = tf.NamedTensorMap & { [name: string]: tf.Variable };

function nameOf(x: NameOf): string {
  return typeof x === 'string' ? x : x.name;
}

export class BackwardResult {
  /** Loss value of the batch. */
  readonly loss: number;
  /** Gradients keyed by variable name: `optimizer.applyGradients(result.grads)`. */
  readonly grads: GradientMap;
  /** Gradient w.r.t. the model input (only with `inputGradient: true`). */
  readonly inputGradient: tf.Tensor | undefined;
  private disposed = false;

  constructor(
    private readonly raw: StepResults,
    private readonly layout: ParamLayout,
  ) {
    this.loss = raw.loss;
    this.grads = raw.grads as GradientMap;
    this.inputGradient = raw.inputGradient;
  }

  private check(): void {
    if (this.disposed) throw new Error('this BackwardResult was disposed; read results before calling dispose().');
  }

  private extensionResults(ext: NameOf): Record<string, tf.TensorContainer> {
    this.check();
    const r = this.raw.results[nameOf(ext)];
    if (r === undefined) {
      throw new Error(
        `no results for extension '${nameOf(ext)}'; this step computed: ${Object.keys(this.raw.results).join(', ') || 'no extensions'}.`,
      );
    }
    return r;
  }

  /** The result of an extension for one parameter. */
  get<E extends Extension<tf.TensorContainer>>(ext: E, param: ParamRef): ResultOf<E>;
  get<R extends tf.TensorContainer = tf.Tensor>(ext: string, param: ParamRef): R;
  get(ext: NameOf, param: ParamRef): tf.TensorContainer {
    const p = this.layout.resolve(param);
    const r = this.extensionResults(ext)[p.name];
    if (r === undefined) throw new Error(`extension '${nameOf(ext)}' stored no result for parameter '${p.name}'.`);
    return r;
  }

  /** Whether an extension stored a result for a parameter. */
  has(ext: NameOf, param: ParamRef): boolean {
    const r = this.raw.results[nameOf(ext)];
    return r !== undefined && r[this.layout.resolve(param).name] !== undefined;
  }

  /** The gradient of one parameter. */
  grad(param: ParamRef): tf.Tensor {
    this.check();
    const p = this.layout.resolve(param);
    return this.grads[p.name] as tf.Tensor;
  }

  /** All results of an extension, keyed by variable name, in flat order. */
  forExtension<E extends Extension<tf.TensorContainer>>(ext: E): Record<string, ResultOf<E>>;
  forExtension<R extends tf.TensorContainer = tf.Tensor>(ext: string): Record<string, R>;
  forExtension(ext: NameOf): Record<string, tf.TensorContainer> {
    const r = this.extensionResults(ext);
    const out: Record<string, tf.TensorContainer> = {};
    for (const p of this.layout.params) if (r[p.name] !== undefined) out[p.name] = r[p.name] as tf.TensorContainer;
    return out;
  }

  /** A list with one result per parameter in flat order (undefined where none was stored). */
  list<E extends Extension<tf.TensorContainer>>(ext: E): (ResultOf<E> | undefined)[];
  list<R extends tf.TensorContainer = tf.Tensor>(ext: string): (R | undefined)[];
  list(ext: NameOf): (tf.TensorContainer | undefined)[] {
    const r = this.extensionResults(ext);
    return this.layout.params.map((p) => r[p.name]);
  }

  /** Every extension's result for one parameter, keyed by extension name. */
  forParam(param: ParamRef): Record<string, tf.TensorContainer> {
    this.check();
    const p = this.layout.resolve(param);
    const out: Record<string, tf.TensorContainer> = {};
    for (const [ext, r] of Object.entries(this.raw.results)) if (r[p.name] !== undefined) out[ext] = r[p.name] as tf.TensorContainer;
    return out;
  }

  /** Results of a group hook, one per group (in the order the groups were given). */
  groups<H extends GroupHook>(hook: H): GroupResultOf<H>[];
  groups<G extends tf.TensorContainer = tf.TensorContainer>(hook: string): G[];
  groups(hook: NameOf): tf.TensorContainer[] {
    this.check();
    const r = this.raw.groupResults[nameOf(hook)];
    if (r === undefined) {
      throw new Error(
        `no results for hook '${nameOf(hook)}'; this step ran: ${Object.keys(this.raw.groupResults).join(', ') || 'no hooks'}.`,
      );
    }
    return r;
  }

  /** Free every tensor of this result. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose([
      ...Object.values(this.raw.grads),
      this.raw.results as unknown as tf.TensorContainer,
      this.raw.groupResults as unknown as tf.TensorContainer,
    ]);
    if (this.raw.inputGradient) this.raw.inputGradient.dispose();
  }
}
