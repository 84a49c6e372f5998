/**
 * Dropout (inverted): in training `y = x ⊙ m` with `m = 0` (probability
 * rate) or `1/(1 − rate)`, drawn from `new Rng(seed)` (the step's seed for
 * this module); the mask is saved (batch-first) and is the Jacobian
 * diagonal. Not training (or rate 0): the identity (the output is a copy).
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, ModuleDerivatives, ModuleParam } from './types';
import { makeRecord } from './record';
import { Rng } from '../utils/random';

export class DropoutDerivatives implements ModuleDerivatives {
  readonly kind: string;
  readonly params: readonly ModuleParam[] = [];
  readonly elementwise = true;

  constructor(
    readonly rate: number,
    private readonly where = 'Dropout',
  ) {
    if (!(typeof rate === 'number' && rate >= 0 && rate < 1)) {
      throw new Error(`${where}: option rate must be in [0, 1), got ${String(rate)}.`);
    }
    this.kind = `Dropout(${rate})`;
  }

  outputShape(inShape: readonly number[]): number[] {
    return [...inShape];
  }

  forward(x: tf.Tensor, opts: ForwardOptions): ForwardRecord {
    if (!opts.training || this.rate === 0) return makeRecord(x, tf.clone(x));
    if (opts.seed === undefined) {
      throw new Error(`${this.where}: training mode needs a seed for the dropout mask (ForwardOptions.seed).`);
    }
    const rng = new Rng(opts.seed);
    const keep = 1 / (1 - this.rate);
    const m = new Float32Array(x.size);
    for (let i = 0; i < m.length; i++) m[i] = rng.uniform() < this.rate ? 0 : keep;
    const mask = tf.tensor(m, x.shape);
    return makeRecord(x, tf.mul(x, mask), { mask });
  }

  jacobianDiag(rec: ForwardRecord): tf.Tensor {
    const mask = rec.saved.mask;
    return mask === undefined ? tf.onesLike(rec.input) : tf.clone(mask);
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    const mask = rec.saved.mask;
    return mask === undefined ? tf.clone(mat) : tf.tidy(() => tf.mul(mat, tf.expandDims(mask, 0)));
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    return this.jacTMatProd(rec, mat);
  }
}
