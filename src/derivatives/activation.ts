/**
 * Elementwise activations: y = φ(x). Jacobian diag(φ'(x)); the DiagHessian /
 * Hessian-vector residual is φ''(x) ⊙ δ (zero for piecewise-linear φ).
 *
 * To add an activation: one entry in ACTIVATIONS with φ, φ' and φ'' (or
 * `piecewiseLinear: true`).
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, ModuleDerivatives, ModuleParam } from './types';
import { makeRecord } from './record';

export interface ActivationSpec {
  forward(x: tf.Tensor): tf.Tensor;
  /** φ'(x) given x and y = φ(x). */
  d1(x: tf.Tensor, y: tf.Tensor): tf.Tensor;
  /** φ''(x); omitted for piecewise-linear activations (zero almost everywhere). */
  d2?(x: tf.Tensor, y: tf.Tensor): tf.Tensor;
}

// SELU constants (Klambauer et al. 2017; the values TF.js uses).
export const SELU_ALPHA = 1.6732632423543772848170429916717;
export const SELU_SCALE = 1.0507009873554804934193349852946;

// [x > 0] as float: one Step kernel (wasm: ~4× faster than Greater + Cast; NaN stays NaN).
const pos = (x: tf.Tensor) => tf.step(x);

export const ACTIVATIONS: Readonly<Record<string, ActivationSpec>> = {
  linear: { forward: (x) => tf.clone(x), d1: (x) => tf.onesLike(x) },
  relu: { forward: (x) => tf.relu(x), d1: (x) => pos(x) },
  relu6: {
    forward: (x) => tf.relu6(x),
    d1: (x) => tf.cast(tf.logicalAnd(tf.greater(x, 0), tf.less(x, 6)), 'float32'),
  },
  // tanh' = 1 − y², tanh'' = −2y(1 − y²)
  tanh: {
    forward: (x) => tf.tanh(x),
    d1: (_x, y) => tf.sub(1, tf.square(y)),
    d2: (_x, y) => tf.mul(-2, tf.mul(y, tf.sub(1, tf.square(y)))),
  },
  // σ' = y(1 − y), σ'' = y(1 − y)(1 − 2y)
  sigmoid: {
    forward: (x) => tf.sigmoid(x),
    d1: (_x, y) => tf.mul(y, tf.sub(1, y)),
    d2: (_x, y) => tf.mul(tf.mul(y, tf.sub(1, y)), tf.sub(1, tf.mul(2, y))),
  },
  // elu (α = 1): x > 0 ? x : eˣ − 1; φ' = x > 0 ? 1 : eˣ; φ'' = x > 0 ? 0 : eˣ
  elu: {
    forward: (x) => tf.elu(x),
    d1: (x) => tf.where(tf.greater(x, 0), tf.onesLike(x), tf.exp(x)),
    d2: (x) => tf.where(tf.greater(x, 0), tf.zerosLike(x), tf.exp(x)),
  },
  // selu: s·(x > 0 ? x : α(eˣ − 1)); φ' = s·(x > 0 ? 1 : αeˣ); φ'' = s·(x > 0 ? 0 : αeˣ)
  selu: {
    forward: (x) => tf.selu(x),
    d1: (x) =>
      tf.where(tf.greater(x, 0), tf.fill(x.shape, SELU_SCALE), tf.mul(SELU_SCALE * SELU_ALPHA, tf.exp(x))),
    d2: (x) => tf.where(tf.greater(x, 0), tf.zerosLike(x), tf.mul(SELU_SCALE * SELU_ALPHA, tf.exp(x))),
  },
  // softplus = log(1 + eˣ); φ' = σ(x); φ'' = σ(x)(1 − σ(x))
  softplus: {
    forward: (x) => tf.softplus(x),
    d1: (x) => tf.sigmoid(x),
    d2: (x) => {
      const s = tf.sigmoid(x);
      return tf.mul(s, tf.sub(1, s));
    },
  },
  // softsign = x / (1 + |x|); φ' = 1/(1 + |x|)²; φ'' = −2·sign(x)/(1 + |x|)³
  softsign: {
    forward: (x) => tf.div(x, tf.add(1, tf.abs(x))),
    d1: (x) => tf.reciprocal(tf.square(tf.add(1, tf.abs(x)))),
    d2: (x) => tf.div(tf.mul(-2, tf.sign(x)), tf.pow(tf.add(1, tf.abs(x)), 3)),
  },
};

export const SUPPORTED_ACTIVATIONS: readonly string[] = Object.keys(ACTIVATIONS);

export function activationSpec(name: string, where: string): ActivationSpec {
  const spec = ACTIVATIONS[name];
  if (!spec) {
    const hint =
      name === 'softmax'
        ? ' The losses take logits: remove the softmax activation and use loss softmaxCrossEntropy.'
        : '';
    throw new Error(
      `${where}: activation '${name}' is not supported; supported activations: ${SUPPORTED_ACTIVATIONS.join(', ')}.${hint}`,
    );
  }
  return spec;
}

/** Derivatives of an elementwise module given φ, φ', φ''. */
export class ElementwiseDerivatives implements ModuleDerivatives {
  readonly params: readonly ModuleParam[] = [];
  readonly elementwise = true;

  constructor(
    readonly kind: string,
    private readonly spec: ActivationSpec,
  ) {
    if (spec.d2 === undefined) this.residualDiag = undefined;
  }

  outputShape(inShape: readonly number[]): number[] {
    return [...inShape];
  }

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    // tidy: composite φ (softsign) must not leave intermediates behind.
    return makeRecord(x, tf.tidy(() => this.spec.forward(x)));
  }

  jacobianDiag(rec: ForwardRecord): tf.Tensor {
    return tf.tidy(() => this.spec.d1(rec.input, rec.output));
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.mul(mat, tf.expandDims(this.spec.d1(rec.input, rec.output), 0)));
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    return this.jacTMatProd(rec, mat);
  }

  residualDiag?(rec: ForwardRecord, gradOut: tf.Tensor): tf.Tensor {
    const d2 = this.spec.d2 as NonNullable<ActivationSpec['d2']>;
    return tf.tidy(() => tf.mul(d2(rec.input, rec.output), gradOut));
  }
}

export function activationDerivatives(name: string, where = 'Activation'): ElementwiseDerivatives {
  return new ElementwiseDerivatives(`Activation(${name})`, activationSpec(name, where));
}
