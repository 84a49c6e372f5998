/**
 * DiagHessian / BatchDiagHessian: the diagonal of the Hessian of the loss
 * w.r.t. each parameter `[...paramShape]` (per sample `[n, ...paramShape]`:
 * the Hessian of ℓ_n), by BackPACK's method.
 *
 * The Hessian w.r.t. a module input is `Jᵀ H_out J + diag(r)` for
 * elementwise modules, with the residual `r = φ''(x) ⊙ δ_out` (δ_out the
 * gradient w.r.t. the module output; per sample). Writing every curvature
 * term as a signed sum of squares `Σ_k σ_k F_k F_kᵀ`, it suffices to
 * backpropagate the factors F_k with Jᵀ:
 *   - at the model output: the loss's square root `S [C, n, C]` (σ = +1);
 *   - at each module with a residual (tanh, sigmoid, elu, …; not relu,
 *     leaky relu, pooling, Dense): `diag(√max(r, 0))` (σ = +1) and
 *     `diag(√max(−r, 0))` (σ = −1), as stacks `[P, n, ...in]`, P = number of
 *     input features.
 * A parameter's diagonal is then `Σ_k σ_k Σ_{v,n} (J_pᵀ F_k[v, n])²`.
 * The factors of each sign are kept concatenated in one stack.
 *
 * Cost: a residual module with P input features adds 2P stack rows, which
 * are backpropagated through all modules below it (memory 2P·n·features
 * floats per module): cheap for relu nets (no residual), expensive for wide
 * tanh/sigmoid layers, as in BackPACK.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardRecord, ModuleDerivatives } from '../../src/derivatives/types';
import type { ModelInfo, ParamContext } from '../../src/engine/extension';
import type { LossContext, PropagateContext, Quantity } from '../../src/engine/quantity';
import { samplesKey, toBatchNormalization } from '../../src/engine/quantity';
import { ensureFits, shapeSize, StackExtension, validateResiduals, type SecondOrderOptions } from './common';

/** Signed square-root factors at a module output: `Σ F Fᵀ` over `plus` minus over `minus`; each stack `[V, n, ...]`. */
export type SignedFactors = { plus: tf.Tensor[]; minus: tf.Tensor[] };

/** Concatenate the stacks of one sign into one (at most one tensor). */
function merge(stacks: tf.Tensor[]): tf.Tensor[] {
  return stacks.length <= 1 ? stacks : [tf.concat(stacks, 0)];
}

/** `diag(√d)` per sample as a stack `[P, n, ...shape]` for `d [n, ...shape]` (P = prod(shape)). */
function diagonalStack(d: tf.Tensor): tf.Tensor {
  const n = d.shape[0] as number;
  const P = d.size / n;
  const eye = tf.reshape(tf.eye(P), [P, 1, P]);
  return tf.reshape(tf.mul(eye, tf.reshape(tf.sqrt(d), [1, n, P])), [P, n, ...d.shape.slice(1)]);
}

/** The backpropagated signed factors of the loss Hessian (shared by DiagHessian and BatchDiagHessian). */
export class DiagHessianQuantity implements Quantity<SignedFactors> {
  readonly key: string;

  /** `owner` names the extension in error messages. */
  constructor(
    readonly samples: readonly number[] | undefined,
    private readonly owner = 'DiagHessian',
  ) {
    this.key = `diagHessian${samplesKey(samples)}`;
  }

  init(ctx: LossContext): SignedFactors {
    return { plus: [toBatchNormalization(ctx, ctx.loss.sqrtHessian(ctx.output, ctx.targets))], minus: [] };
  }

  propagate(module: ModuleDerivatives, rec: ForwardRecord, value: SignedFactors, ctx: PropagateContext): SignedFactors {
    const n = rec.input.shape[0] as number;
    const inShape = rec.input.shape.slice(1);
    const P = shapeSize(inShape);
    const residual = typeof module.residualDiag === 'function';
    const rows = [...value.plus, ...value.minus].reduce((s, f) => s + (f.shape[0] as number), 0) + (residual ? 2 * P : 0);
    // Peak: the propagated and new factors, and their concatenation.
    ensureFits(
      this.owner,
      `the Hessian factors at the input of ${module.kind} (${rows} stack rows × ${n} samples × ${P} features)`,
      2 * rows * n * P,
      `Pass fewer samples (option 'subsampling'), or use DiagGGNExact (no residual terms).`,
      rows * n * P,
    );
    return tf.tidy(() => {
      const plus = value.plus.map((f) => module.jacTMatProd(rec, f));
      const minus = value.minus.map((f) => module.jacTMatProd(rec, f));
      if (residual) {
        const r = (module.residualDiag as NonNullable<ModuleDerivatives['residualDiag']>)(rec, ctx.gradOutput); // [n, ...in]
        plus.push(diagonalStack(tf.relu(r)));
        minus.push(diagonalStack(tf.relu(tf.neg(r))));
      }
      return { plus: merge(plus), minus: merge(minus) };
    });
  }
}

/** `Σ_plus − Σ_minus` of a parameter product of the factors. */
function signedSum(value: SignedFactors, product: (stack: tf.Tensor) => tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const terms = value.plus.map(product);
    let out = terms.length === 1 ? (terms[0] as tf.Tensor) : tf.addN(terms);
    for (const f of value.minus) out = tf.sub(out, product(f));
    return out;
  });
}

/** The frame of DiagHessian and BatchDiagHessian: the signed factors for `subsampling`, and the residual checks. */
abstract class DiagHessianExtension extends StackExtension<DiagHessianQuantity> {
  protected constructor(defaultName: string, options: SecondOrderOptions) {
    const name = options.name ?? defaultName;
    super(name, options, (s) => new DiagHessianQuantity(s, name), 'sqrtHessian');
  }

  override validate(model: ModelInfo): void {
    super.validate(model);
    validateResiduals(this.name, model);
  }
}

export class DiagHessian extends DiagHessianExtension {
  constructor(options: SecondOrderOptions = {}) {
    super('DiagHessian', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const s = this.subsampling;
    return signedSum(ctx.value(this.quantity), (f) => ctx.sumSquared(f, s));
  }
}

export class BatchDiagHessian extends DiagHessianExtension {
  constructor(options: SecondOrderOptions = {}) {
    super('BatchDiagHessian', options);
  }

  computeParam(ctx: ParamContext): tf.Tensor {
    const s = this.subsampling;
    const n = s?.length ?? ctx.batchSize;
    ensureFits(
      this.name,
      `parameter '${ctx.param.name}' (shape [${ctx.param.shape.join(', ')}]) with n = ${n} samples`,
      2 * n * ctx.param.size,
      `Pass fewer samples (option 'subsampling').`,
      n * ctx.param.size,
    );
    return signedSum(ctx.value(this.quantity), (f) => ctx.perSampleSumSquared(f, s));
  }
}
