/**
 * KFRA (Botev et al. 2017; BackPACK's KFRA): Kronecker factors whose output
 * side comes from a recursion on batch-averaged matrices instead of
 * backpropagated square roots. Start with `Ḡ = Σ_n H_n` (`[C, C]`) at the model
 * output; through every module (FORMAT.md §6.2)
 *
 *   Ḡ_in = (1/N) Σ_n J_nᵀ Ḡ_out J_n      (`[d_in, d_in]`, TF.js flatten order)
 *
 * with `J_n` the module's input Jacobian for sample n (second-derivative terms
 * of activations dropped). A Dense layer's G is Ḡ at its output; a Conv2D
 * layer's G is Ḡ reshaped `[T, O, T, O]` and summed over both position axes.
 * Kernel → `{ A, G }` (A as in KFLR), bias → `{ G }`.
 *
 * Propagation, cheapest first:
 *  - elementwise modules (activations): `Ḡ ⊙ mean_n φ'_n φ'_nᵀ` (one matMul);
 *  - modules whose input Jacobian does not depend on the sample (Dense,
 *    Conv2D, Flatten, Reshape, ZeroPadding2D, (Global)AveragePooling2D): `Jᵀ Ḡ J` from two
 *    `jacTMatProd` passes on one sample's record (Dense: `W Ḡ Wᵀ`);
 *  - anything else (MaxPooling2D, ...): the same two passes on all samples,
 *    in chunks that bound the memory to ~2^23 floats per pass.
 * Max pooling routes to the first maximal element of each window (as the
 * pooling derivative does), matching BackPACK.
 *
 * Scope: BackPACK defines KFRA only for ReLU/Sigmoid/Tanh networks with MSE or
 * softmax cross-entropy. The recursion is well defined for every module and
 * loss curvpack supports (ELU, SELU, LeakyReLU, ..., sigmoid cross-entropy), so
 * curvpack computes it there too, with the same formula; those results have no
 * BackPACK counterpart (the fixtures omit `kfra` there).
 *
 * Cost: Ḡ is `d × d` for every intermediate width d (Conv2D: d = H·W·C, so
 * KFRA on wide conv nets needs d² memory and `d_out·d_in·(d_out + d_in)` per
 * generic pass — use KFAC/KFLR there).
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ModelInfo, ParamContext } from '../../src/engine/extension';
import { validateBackprop } from './common';
import type { LossContext, PropagateContext, Quantity } from '../../src/engine/quantity';
import type { ForwardRecord, ModuleDerivatives } from '../../src/derivatives/types';
import { isLinearModule } from '../../src/derivatives/types';
import { factorsResult, type KroneckerFactors } from './kroneckerFactors';

/** Module kinds (prefix before `(`) whose input Jacobian is the same for every sample. */
export const SAMPLE_INDEPENDENT_KINDS: readonly string[] = [
  'Flatten',
  'ZeroPadding2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'Reshape',
];

/** Floats per generic pass chunk (32 MiB). */
const CHUNK_FLOATS = 1 << 23;

function baseKind(kind: string): string {
  const i = kind.indexOf('(');
  return i < 0 ? kind : kind.slice(0, i);
}

function sampleIndependent(m: ModuleDerivatives): boolean {
  return isLinearModule(m) || SAMPLE_INDEPENDENT_KINDS.includes(baseKind(m.kind));
}

/** Rows `[start, start + count)` of every per-sample tensor of a record (new tensors). */
function sliceRecord(rec: ForwardRecord, start: number, count: number): ForwardRecord {
  const rows = (t: tf.Tensor) => tf.slice(t, [start, ...t.shape.slice(1).map(() => 0)], [count, ...t.shape.slice(1).map(() => -1)]);
  const saved: Record<string, tf.Tensor> = {};
  for (const [k, v] of Object.entries(rec.saved)) saved[k] = rows(v);
  return { input: rows(rec.input), output: rows(rec.output), saved, constants: rec.constants };
}

/**
 * `Σ_n J_nᵀ Ḡ J_n` over the record's samples, by two `jacTMatProd` passes:
 * `P[a, n] = (Ḡ J_n)[a, :]`, then `Q[i, n] = (J_nᵀ (Ḡ J_n)[:, i])`.
 */
function sandwich(module: ModuleDerivatives, rec: ForwardRecord, Gbar: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const n = rec.input.shape[0] as number;
    const outShape = rec.output.shape.slice(1);
    const inShape = rec.input.shape.slice(1);
    const dOut = Gbar.shape[0];
    const dIn = inShape.reduce((a, b) => a * b, 1);
    const tile = (m: tf.Tensor2D, rowsOf: number) =>
      n === 1 ? tf.reshape(m, [rowsOf, 1, ...outShape]) : tf.mul(tf.reshape(m, [rowsOf, 1, ...outShape]), tf.ones([1, n, ...outShape]));
    const P = tf.reshape(module.jacTMatProd(rec, tile(Gbar, dOut)), [dOut, n, dIn]); // [a, n, i] = (Ḡ J_n)[a, i]
    const Pt = tf.transpose(P, [2, 1, 0]); // [i, n, a]
    const Q = tf.reshape(module.jacTMatProd(rec, tf.reshape(Pt, [dIn, n, ...outShape])), [dIn, n, dIn]);
    return (n === 1 ? tf.reshape(Q, [dIn, dIn]) : tf.sum(Q, 1)) as tf.Tensor2D;
  });
}

/**
 * One step of the KFRA recursion through a module: `(1/N) Σ_n J_nᵀ Ḡ J_n`
 * (`Ḡ [d_out, d_out] → [d_in, d_in]`). `chunkFloats` bounds the entries of one
 * generic pass over a chunk of samples.
 */
export function kfraPropagate(
  module: ModuleDerivatives,
  rec: ForwardRecord,
  Gbar: tf.Tensor2D,
  chunkFloats: number = CHUNK_FLOATS,
): tf.Tensor2D {
  const N = rec.input.shape[0] as number;
  const dIn = rec.input.size / N;
  const dOut = rec.output.size / N;
  if (Gbar.rank !== 2 || Gbar.shape[0] !== dOut || Gbar.shape[1] !== dOut) {
    throw new Error(`KFRA: ${module.kind} expects Ḡ of shape [${dOut}, ${dOut}] at its output, got [${Gbar.shape.join(', ')}].`);
  }
  if (module.elementwise && module.jacobianDiag) {
    return tf.tidy(() => {
      const d = tf.reshape(module.jacobianDiag!(rec), [N, dIn]) as tf.Tensor2D;
      const F = tf.div(tf.matMul(tf.transpose(d), d), N); // mean_n φ'_n φ'_nᵀ
      return tf.mul(Gbar, F) as tf.Tensor2D;
    });
  }
  if (sampleIndependent(module)) {
    const one = N === 1 ? rec : sliceRecord(rec, 0, 1);
    try {
      return sandwich(module, one, Gbar);
    } finally {
      if (one !== rec) tf.dispose([one.input, one.output, ...Object.values(one.saved)]);
    }
  }
  const perSample = dOut * dOut + 2 * dIn * dOut + dIn * dIn;
  const chunk = Math.max(1, Math.min(N, Math.floor(chunkFloats / perSample)));
  let acc: tf.Tensor2D | undefined;
  for (let s = 0; s < N; s += chunk) {
    const count = Math.min(chunk, N - s);
    const part = count === N ? rec : sliceRecord(rec, s, count);
    try {
      const q = sandwich(module, part, Gbar);
      if (acc === undefined) acc = q;
      else {
        const next = tf.add(acc, q) as tf.Tensor2D;
        tf.dispose([acc, q]);
        acc = next;
      }
    } finally {
      if (part !== rec) tf.dispose([part.input, part.output, ...Object.values(part.saved)]);
    }
  }
  const sum = acc as tf.Tensor2D;
  const out = tf.div(sum, N) as tf.Tensor2D;
  sum.dispose();
  return out;
}

/** The KFRA matrix Ḡ `[d_out, d_out]` at each module output. */
export class KfraQuantity implements Quantity<tf.Tensor2D> {
  readonly key = 'kfraGbar';
  readonly samples = undefined;
  init(ctx: LossContext): tf.Tensor2D {
    return ctx.loss.sumHessian(ctx.output, ctx.targets);
  }
  propagate(module: ModuleDerivatives, rec: ForwardRecord, value: tf.Tensor2D, _ctx: PropagateContext): tf.Tensor2D {
    return kfraPropagate(module, rec, value);
  }
}

/**
 * `Ḡ [d, d]` at a module output of shape `outShape` → `[O, O]` summed over
 * output positions on both sides (via the module's own `foldOutput`).
 */
export function sumOverPositions(ctx: ParamContext, Gbar: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const outShape = ctx.record().output.shape.slice(1);
    const d = Gbar.shape[0];
    const fold = (m: tf.Tensor2D, rows: number) => {
      const D = ctx.module.foldOutput(tf.reshape(m, [rows, 1, ...outShape])); // [rows, 1, T, O]
      const [, , T, O] = D.shape;
      return tf.reshape(T === 1 ? D : tf.sum(D, 2), [rows, O]) as tf.Tensor2D;
    };
    const R = fold(Gbar, d); // [d, O]
    const O = R.shape[1];
    return fold(tf.transpose(R) as tf.Tensor2D, O);
  });
}

export interface KFRAOptions {
  /** Result name (default `KFRA`). */
  name?: string;
}

export class KFRA implements Extension<KroneckerFactors> {
  readonly name: string;
  private readonly gbar = new KfraQuantity();
  readonly quantities = [this.gbar];

  constructor(options: KFRAOptions = {}) {
    this.name = options.name ?? 'KFRA';
  }

  validate(model: ModelInfo): void {
    if (typeof model.loss.sumHessian !== 'function') {
      throw new Error(`${this.name}: the loss '${model.loss.name}' has no sumHessian(); KFRA starts its recursion from Σ_n H_n.`);
    }
    validateBackprop(this.name, model, undefined);
  }

  computeParam(ctx: ParamContext): KroneckerFactors {
    const G = ctx.memo(`kronecker:G:${this.gbar.key}`, () => sumOverPositions(ctx, ctx.value(this.gbar)));
    return factorsResult(ctx, G);
  }
}
