/**
 * EKFAC (George et al. 2018): the eigenbasis of Kronecker factors with a
 * corrected diagonal. With `A = UA diag(evalsA) UAᵀ`, `G = UG diag(evalsG) UGᵀ`
 * (KFLR's factors by default) and `Q = kron(UA, UG)`, the kernel's curvature
 * block is approximated by `Q diag(vec(lambda)) Qᵀ` with (FORMAT.md §6.3)
 *
 *   lambda[i][j] = Σ_{n,v} (UAᵀ S_vn UG)[i][j]²  = diag(Qᵀ GGN_block Q)
 *
 * `S_vn = Σ_t x_nt s_vntᵀ` (`[I, O]`) the per-sample kernel products of the
 * exact GGN square root (`correction: 'ggn'`, default) or of the per-sample
 * gradients (`correction: 'empiricalFisher'`, V = 1). It is computed without
 * forming any S_vn: rotate the unfolded input `X̃ = X·UA` and the stack
 * `s̃ = s·UG`, then `lambda = Σ_n Σ_v (X̃_nᵀ s̃_vn)²` (Dense: one matMul
 * `(X̃²)ᵀ Σ_v s̃²`). In the basis Q, lambda is the best diagonal (Frobenius
 * norm), so EKFAC is at least as close to the block as `kron(A, G)`.
 *
 * Results (tensors): kernel `{ UA [I, I], UG [O, O], lambda [I, O], evalsA [I],
 * evalsG [O] }` (I, O as for the Kronecker factors; Conv2D I = kh·kw·inC);
 * bias `{ UG, lambda [O], evalsG }`: the bias block `Σ b bᵀ` has only an
 * output side, its lambda is `Σ_{n,v} (UGᵀ b_vn)²` (with the default
 * options G is exactly the bias block, so lambda = evalsG up to rounding).
 * Eigenvalues ascending, eigenvectors in columns (float64 `eigh` on the CPU:
 * O(I³ + O³) per layer and step).
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ModelInfo, ParamContext } from '../../src/engine/extension';
import { checkMonteCarlo, validateBackprop } from './common';
import { SqrtGgnExactQuantity, SqrtGgnMcQuantity, type Quantity } from '../../src/engine/quantity';
import { sumSquaredKernelProduct } from '../../src/derivatives/weightProducts';
import {
  applyInBasis,
  asStack,
  checkDamping,
  inputFactor,
  outputFactor,
  positionSums,
  symmetricEigen,
} from './kroneckerFactors';

export type EkfacKernel = {
  UA: tf.Tensor2D;
  UG: tf.Tensor2D;
  lambda: tf.Tensor2D;
  evalsA: tf.Tensor1D;
  evalsG: tf.Tensor1D;
};
export type EkfacBias = { UG: tf.Tensor2D; lambda: tf.Tensor1D; evalsG: tf.Tensor1D };
export type EkfacResult = EkfacKernel | EkfacBias;

export type EkfacBasis = 'kflr' | 'kfac';
export type EkfacCorrection = 'ggn' | 'empiricalFisher';

export interface EKFACOptions {
  /** Factors whose eigenbasis is used: `kflr` (exact, default) or `kfac` (Monte-Carlo G). */
  basis?: EkfacBasis;
  /** Diagonal correction from the exact GGN square root (`ggn`, default) or per-sample gradients (`empiricalFisher`). */
  correction?: EkfacCorrection;
  /** `basis: 'kfac'` only: MC samples per data point (default 1). */
  mcSamples?: number;
  /** `basis: 'kfac'` only: seed (default: the step's seed). */
  seed?: number;
  /** Result name (default `EKFAC`). */
  name?: string;
}

export class EKFAC implements Extension<EkfacResult> {
  readonly name: string;
  readonly basis: EkfacBasis;
  readonly correction: EkfacCorrection;
  readonly quantities: readonly Quantity<tf.Tensor>[];
  private readonly basisStack: SqrtGgnExactQuantity | SqrtGgnMcQuantity;
  private readonly exact: SqrtGgnExactQuantity | undefined;

  constructor(options: EKFACOptions = {}) {
    this.name = options.name ?? 'EKFAC';
    const basis = options.basis ?? 'kflr';
    const correction = options.correction ?? 'ggn';
    if (basis !== 'kflr' && basis !== 'kfac') {
      throw new Error(`${this.name}: option 'basis' must be 'kflr' or 'kfac', got '${String(basis)}'.`);
    }
    if (correction !== 'ggn' && correction !== 'empiricalFisher') {
      throw new Error(`${this.name}: option 'correction' must be 'ggn' or 'empiricalFisher', got '${String(correction)}'.`);
    }
    if (basis === 'kflr' && (options.mcSamples !== undefined || options.seed !== undefined)) {
      throw new Error(`${this.name}: options 'mcSamples' and 'seed' apply to basis 'kfac' only; pass basis: 'kfac' or drop them.`);
    }
    this.basis = basis;
    this.correction = correction;
    const needExact = basis === 'kflr' || correction === 'ggn';
    this.exact = needExact ? new SqrtGgnExactQuantity() : undefined;
    this.basisStack =
      basis === 'kflr'
        ? (this.exact as SqrtGgnExactQuantity)
        : (() => {
            const { mcSamples, seed } = checkMonteCarlo(this.name, options);
            return new SqrtGgnMcQuantity(mcSamples, seed);
          })();
    this.quantities = [...new Set<Quantity<tf.Tensor>>([this.basisStack, ...(this.exact ? [this.exact] : [])])];
  }

  validate(model: ModelInfo): void {
    if (this.exact) validateBackprop(this.name, model, 'sqrtHessian');
    if (this.basis === 'kfac') validateBackprop(this.name, model, 'sqrtHessianSampled');
  }

  computeParam(ctx: ParamContext): EkfacResult {
    const key = this.basisStack.key;
    const G = outputFactor(ctx, key, () => ctx.value(this.basisStack));
    const eigG = ctx.memo(`kronecker:eigG:${key}`, () => symmetricEigen(G, `${this.name}: G of '${ctx.param.name}'`));
    const stack = this.correction === 'ggn' ? ctx.value(this.exact as SqrtGgnExactQuantity) : ctx.gradStack();
    if (ctx.param.role === 'bias') {
      const lambda = ekfacScaling(ctx, stack, undefined, eigG.U) as tf.Tensor1D;
      return { UG: tf.clone(eigG.U), lambda, evalsG: tf.clone(eigG.evals) };
    }
    const A = inputFactor(ctx);
    const eigA = ctx.memo('kronecker:eigA', () => symmetricEigen(A, `${this.name}: A of '${ctx.param.name}'`));
    const lambda = ekfacScaling(ctx, stack, eigA.U, eigG.U) as tf.Tensor2D;
    return { UA: tf.clone(eigA.U), UG: tf.clone(eigG.U), lambda, evalsA: tf.clone(eigA.evals), evalsG: tf.clone(eigG.evals) };
  }
}

/**
 * The EKFAC diagonal of one parameter in fixed eigenbases, from a stack
 * `[V, N, ...out]` at its module's output: kernel `Σ_{n,v} (UAᵀ S_vn UG)²`
 * `[I, O]` (X̃ = X·UA, s̃ = s·UG, no S_vn formed), bias `Σ_{n,v} (UGᵀ b_vn)²`
 * `[O]` (UA unused).
 */
export function ekfacScaling(ctx: ParamContext, stack: tf.Tensor, UA: tf.Tensor2D | undefined, UG: tf.Tensor2D): tf.Tensor {
  return tf.tidy(() => {
    if (ctx.param.role === 'bias') return tf.sum(tf.square(tf.matMul(positionSums(ctx.module, stack), UG)), 0);
    const X = ctx.unfoldedInput();
    const [N, T, I] = X.shape;
    const Xr = tf.reshape(tf.matMul(tf.reshape(X, [N * T, I]), UA as tf.Tensor2D), [N, T, I]) as tf.Tensor3D;
    const D = ctx.module.foldOutput(stack);
    const [V, , , O] = D.shape;
    const Dr = tf.reshape(tf.matMul(tf.reshape(D, [V * N * T, O]), UG), [V, N, T, O]) as tf.Tensor4D;
    return sumSquaredKernelProduct(Xr, Dr);
  });
}

function checkResult(fn: string, r: EkfacResult | undefined): void {
  if (r === undefined || r === null || r.UG === undefined || r.lambda === undefined) {
    throw new Error(`${fn}: expected an EKFAC result { UA?, UG, lambda, ... }, got ${JSON.stringify(r)}.`);
  }
}

function stackOf(fn: string, r: EkfacResult, v: tf.Tensor): tf.Tensor3D {
  const I = 'UA' in r && r.UA ? (r.UA.shape[0] as number) : 1;
  return asStack(fn, v, I, r.UG.shape[0] as number);
}

/**
 * The EKFAC approximation applied to `v` in the parameter's layout (kernel:
 * `UA (lambda ⊙ (UAᵀ V UG)) UGᵀ` per `V [I, O]`; bias: `UG (lambda ⊙ UGᵀ v)`).
 * `v`: the parameter's shape or `[K, ...paramShape]`; result has v's shape.
 */
export function ekfacApply(result: EkfacResult, v: tf.Tensor): tf.Tensor {
  checkResult('ekfacApply', result);
  const UA = 'UA' in result ? result.UA : undefined;
  return tf.tidy(() => {
    const V = stackOf('ekfacApply', result, v);
    const scale = tf.reshape(result.lambda, [V.shape[1], V.shape[2]]);
    return tf.reshape(applyInBasis(UA, result.UG, scale, V), v.shape);
  });
}

/** `(Q diag(lambda + damping) Qᵀ)⁻¹ v`: the damped inverse of the EKFAC approximation (damping > 0). */
export function ekfacInverseApply(result: EkfacResult, v: tf.Tensor, damping: number): tf.Tensor {
  checkResult('ekfacInverseApply', result);
  checkDamping('ekfacInverseApply', damping);
  const UA = 'UA' in result ? result.UA : undefined;
  return tf.tidy(() => {
    const V = stackOf('ekfacInverseApply', result, v);
    const scale = tf.reciprocal(tf.add(tf.reshape(result.lambda, [V.shape[1], V.shape[2]]), damping));
    return tf.reshape(applyInBasis(UA, result.UG, scale, V), v.shape);
  });
}
