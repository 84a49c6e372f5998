/**
 * Parameters in flat order (FORMAT.md §5): layer order, kernel before bias,
 * each flattened row-major in its TF.js layout.
 */
import * as tf from '@tensorflow/tfjs';
import type { ParamRole } from '../derivatives/types';

export interface ParamInfo {
  /** Position in the flat order. */
  readonly index: number;
  /** The TF.js variable name (keys `grads` for `optimizer.applyGradients`). */
  readonly name: string;
  /** `<layerIndex>/<role>`, the fixtures' naming. */
  readonly shortName: string;
  readonly role: ParamRole;
  /** Index among the model's layers (InputLayer excluded). */
  readonly layerIndex: number;
  readonly layerName: string;
  /** Index of the module (derivative unit) that owns the parameter. */
  readonly moduleIndex: number;
  readonly shape: readonly number[];
  readonly size: number;
  /** Offset of the first entry in the flat parameter vector. */
  readonly offset: number;
  readonly variable: tf.Variable;
}

/** Anything that names a parameter: variable name, short name, flat index, the variable, or its info. */
export type ParamRef = string | number | ParamInfo | { name: string };

export class ParamLayout {
  readonly size: number;
  private readonly byName = new Map<string, ParamInfo>();

  constructor(readonly params: readonly ParamInfo[]) {
    this.size = params.reduce((s, p) => s + p.size, 0);
    for (const p of params) {
      this.byName.set(p.name, p);
      this.byName.set(p.shortName, p);
    }
  }

  /** Resolve a reference; throws naming the known parameters. */
  resolve(ref: ParamRef): ParamInfo {
    let p: ParamInfo | undefined;
    if (typeof ref === 'number') p = this.params[ref];
    else if (typeof ref === 'string') p = this.byName.get(ref);
    else p = this.byName.get(ref.name);
    if (p === undefined) {
      const what = typeof ref === 'object' ? ref.name : String(ref);
      throw new Error(
        `unknown parameter '${what}'; the model's trainable parameters are: ${this.params.map((q) => q.name).join(', ')}.`,
      );
    }
    return p;
  }

  /** Concatenate per-parameter tensors (each of its parameter's shape, optionally with leading axes `lead`) into `[...lead, D]`. */
  flatten(tensors: readonly tf.Tensor[], lead: readonly number[] = []): tf.Tensor {
    if (tensors.length !== this.params.length) {
      throw new Error(`flatten: expected ${this.params.length} tensors (one per parameter), got ${tensors.length}.`);
    }
    return tf.tidy(() =>
      tf.concat(
        tensors.map((t) => tf.reshape(t, [...lead, t.size / Math.max(1, lead.reduce((a, b) => a * b, 1))])),
        lead.length,
      ),
    );
  }

  /** Split `[...lead, D]` into per-parameter tensors `[...lead, ...shape]`. */
  unflatten(vec: tf.Tensor): tf.Tensor[] {
    const lead = vec.shape.slice(0, -1);
    if (vec.shape[vec.rank - 1] !== this.size) {
      throw new Error(`unflatten: last axis has ${vec.shape[vec.rank - 1]} entries, the model has ${this.size} parameters.`);
    }
    return tf.tidy(() => {
      const parts = tf.split(vec, this.params.map((p) => p.size), vec.rank - 1);
      return parts.map((t, i) => tf.reshape(t, [...lead, ...(this.params[i] as ParamInfo).shape]));
    });
  }
}
