/**
 * How to differentiate one module (a layer, or the linear / activation part of
 * a layer with a fused activation).
 *
 * Shapes: `N` batch, `V` a leading stack axis (V = 1 for the gradient, C for
 * the exact GGN square root, M for Monte-Carlo samples, ...). A *stack* is a
 * tensor `[V, N, ...shape]`: V matrices backpropagated together.
 */
import type * as tf from '@tensorflow/tfjs';

export type ParamRole = 'kernel' | 'bias';

/** What a module's forward pass saved for the backward pass. */
export interface ForwardRecord {
  /** Module input `[N, ...inShape]`. */
  readonly input: tf.Tensor;
  /** Module output `[N, ...outShape]`. */
  readonly output: tf.Tensor;
  /**
   * Per-sample saved tensors, each with the batch axis first (so the engine
   * can subsample a record by gathering rows), e.g. a dropout mask or a
   * max-pooling argmax.
   */
  readonly saved: Readonly<Record<string, tf.Tensor>>;
  /**
   * Saved tensors without a batch axis (e.g. a transposed kernel), shared by
   * subsampled records.
   */
  readonly constants: Readonly<Record<string, tf.Tensor>>;
}

export interface ForwardOptions {
  /** Training mode: dropout active (default in `backward`). */
  readonly training: boolean;
  /** Seed for random forward behaviour (dropout). */
  readonly seed?: number;
}

/** A trainable parameter owned by a module. */
export interface ModuleParam {
  readonly role: ParamRole;
  /** The TF.js variable (its `name` keys gradients for `optimizer.applyGradients`). */
  readonly variable: tf.Variable;
}

/** Derivatives of one module. Implementations: one small file per layer kind. */
export interface ModuleDerivatives {
  /** Kind for messages, e.g. `Dense`, `Activation(relu)`. */
  readonly kind: string;
  /** Trainable parameters of this module (empty for parameter-free modules). */
  readonly params: readonly ModuleParam[];
  /** Output shape (without the batch axis) for an input shape (without the batch axis). */
  outputShape(inShape: readonly number[]): number[];
  /** Forward pass, saving what the backward pass needs. */
  forward(x: tf.Tensor, opts: ForwardOptions): ForwardRecord;
  /** Backpropagate a stack: `[V, N, ...out] → [V, N, ...in]` (Jᵀ·mat per sample). */
  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor;
  /** Forward-mode product: `[V, N, ...in] → [V, N, ...out]` (J·mat per sample). */
  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor;
  /**
   * Diagonal of the second-derivative residual `Σ_c δ_c ∂²y_c/∂x²` for
   * elementwise modules: `[N, ...in]` given `gradOut` `[N, ...out]`.
   * `undefined` when the module is linear or piecewise linear (zero residual).
   */
  residualDiag?(rec: ForwardRecord, gradOut: tf.Tensor): tf.Tensor;
  /** True for elementwise modules (in and out shapes equal, Jacobian diagonal). */
  readonly elementwise?: boolean;
  /**
   * Elementwise modules: the derivative `φ'(x)` `[N, ...in]` (the diagonal of
   * the Jacobian). Used by KFRA and DiagHessian-style recursions.
   */
  jacobianDiag?(rec: ForwardRecord): tf.Tensor;
}

/**
 * Modules whose kernel enters linearly through input patches: Dense (one
 * patch per sample) and Conv2D (one patch per output position). With the
 * unfolded input `X [N, T, I]` and an output stack folded to patches
 * `D [V, N, T, O]`, the kernel Jacobian-transpose product of sample n is
 * `Σ_t X[n,t]ᵀ D[v,n,t]` (an `[I, O]` matrix = the kernel shape reshaped) and
 * the bias product is `Σ_t D[v,n,t]`.
 */
export interface LinearModuleDerivatives extends ModuleDerivatives {
  readonly linearInWeights: true;
  /** Kernel shape in TF.js layout (Dense `[in, out]`, Conv2D `[kh, kw, inC, outC]`). */
  readonly kernelShape: readonly number[];
  readonly hasBias: boolean;
  /** Unfolded input `X [N, T, I]` (Dense: T = 1, I = in; Conv2D: im2col patches). */
  unfoldInput(rec: ForwardRecord): tf.Tensor3D;
  /** Fold an output stack `[V, N, ...out]` into `[V, N, T, O]`. */
  foldOutput(mat: tf.Tensor): tf.Tensor4D;
  /** Inverse of `foldOutput`: `[V, N, T, O] → [V, N, ...out]`. */
  unfoldOutput(mat: tf.Tensor4D, outShape: readonly number[]): tf.Tensor;
  /**
   * Optional fast path for the summed kernel product (the gradient for
   * V = 1): `Σ_n Jᵀ_kernel · mat[v, n]` for a stack `[V, N, ...out]` →
   * `[V, ...kernelShape]`, without the unfolded input (Conv2D: one
   * convolution instead of im2col + matMul). Equal to the generic product
   * on `unfoldInput(rec)` and `foldOutput(mat)`.
   */
  summedKernelProduct?(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor;
  /** Forward-mode parameter product: `[V, ...paramShape] → [V, N, ...out]`. */
  paramJacMatProd(rec: ForwardRecord, role: ParamRole, v: tf.Tensor): tf.Tensor;
  /**
   * `jacTMatProd` with the kernel replaced by `kernel` (same shape, no bias):
   * the input Jacobian is linear in the kernel, so this is the derivative of
   * `Jᵀ·mat` along a kernel direction — the cross term of exact
   * Hessian-vector products (R-operator).
   */
  jacTMatProdWithKernel(rec: ForwardRecord, mat: tf.Tensor, kernel: tf.Tensor): tf.Tensor;
}

export function isLinearModule(m: ModuleDerivatives): m is LinearModuleDerivatives {
  return (m as Partial<LinearModuleDerivatives>).linearInWeights === true;
}
