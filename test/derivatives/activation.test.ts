/**
 * Elementwise activations vs TF.js: forward vs tf.layers.activation, Jᵀ and
 * J (diagonal, so J·v equals the autodiff VJP of v) vs autodiff, the
 * derivative φ' vs autodiff of Σφ, and the residual φ''⊙δ vs extrapolated
 * differences of the autodiff φ'. Inputs stay ≥ 0.1 away from the kinks of piecewise
 * activations. Tolerances: 1e-5 for first derivatives (float32 formulas with
 * a few roundings); 1e-4 for second derivatives (see secondDerivative).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ACTIVATIONS, activationDerivatives, SUPPORTED_ACTIVATIONS } from '../../src/derivatives/activation';
import { modulesForLayer } from '../../src/derivatives/index';
import { autodiffVjp, checkModule, disposeRecord, expectClose, expectNoLeak } from './helpers';

/** Values with |x| ≥ 0.1 and away from relu6's kink at 6. */
function input(shape: number[], seed: number): tf.Tensor {
  return tf.tidy(() => {
    const z = tf.randomNormal(shape, 0, 1.5, 'float32', seed);
    return tf.mul(tf.sign(z), tf.add(tf.abs(z), 0.1));
  });
}

/**
 * φ''(x) from TF.js autodiff φ' = ∇ₓΣφ: central differences with Richardson
 * extrapolation, (4·D(h/2) − D(h))/3 with D(h) = (φ'(x+h) − φ'(x−h))/2h, h = 0.04
 * (truncation O(h⁴) ~ 1e-7, float32 rounding ~6e-8·|φ'|/h ~ 2e-6). Nested
 * autodiff is no option: TF.js cannot differentiate the gradients of tanh,
 * sigmoid (saved outputs) or elu/selu (Greater).
 */
function secondDerivative(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const g = tf.grad((z: tf.Tensor) => tf.sum(f(z)));
    const D = (h: number) => tf.div(tf.sub(g(tf.add(x, h)), g(tf.sub(x, h))), 2 * h);
    return tf.div(tf.sub(tf.mul(D(0.02), 4), D(0.04)), 3);
  });
}

const PIECEWISE_LINEAR = ['linear', 'relu', 'relu6'];

describe('Activation derivatives', () => {
  it('covers the documented activations', () => {
    expect([...SUPPORTED_ACTIVATIONS].sort()).toEqual(
      ['elu', 'linear', 'relu', 'relu6', 'selu', 'sigmoid', 'softplus', 'softsign', 'tanh'].sort(),
    );
  });

  for (const name of Object.keys(ACTIVATIONS)) {
    it(name, () => {
      const layer = tf.layers.activation({ activation: name as 'relu', inputShape: [3, 4] });
      tf.sequential({ layers: [layer] });
      const [m] = modulesForLayer(layer);
      if (m === undefined) throw new Error('no module');
      expect(m.kind).toBe(`Activation(${name})`);
      expect(m.elementwise).toBe(true);
      const ref = (z: tf.Tensor) => layer.apply(z) as tf.Tensor;
      for (const N of [1, 3]) {
        const x = input([N, 3, 4], N);
        // J·v by central differences (ε = 1e-3: truncation ~1e-6·φ''', rounding ~1e-4 relative).
        checkModule(m, x, ref, { V: 2, tol: 1e-5, eps: 1e-3, jvpTol: 2e-3 });
        expectNoLeak(() => {
          const rec = m.forward(x, { training: false });
          tf.tidy(() => {
            const mat = tf.randomNormal([3, ...x.shape], 0, 1, 'float32', 9);
            expectClose(m.jacMatProd(rec, mat), autodiffVjp(ref, x, mat), 1e-5, 'jacMatProd = diagonal VJP');
            expectClose(m.jacobianDiag?.(rec) as tf.Tensor, tf.grad((z: tf.Tensor) => tf.sum(ref(z)))(x), 1e-5, 'jacobianDiag');
            const delta = tf.randomNormal(x.shape, 0, 1, 'float32', 10);
            if (PIECEWISE_LINEAR.includes(name)) {
              expect(m.residualDiag).toBeUndefined();
            } else {
              expectClose(m.residualDiag?.(rec, delta) as tf.Tensor, tf.mul(secondDerivative(ref, x), delta), 1e-4, 'residualDiag');
            }
          });
          disposeRecord(rec);
        });
        x.dispose();
      }
    });
  }

  it('rejects unknown activations, with a hint for softmax', () => {
    expect(() => activationDerivatives('softmax', "Dense layer 'd'")).toThrow(
      /Dense layer 'd': activation 'softmax' is not supported; supported activations: .*relu.*remove the softmax activation and use loss softmaxCrossEntropy/,
    );
    expect(() => activationDerivatives('swish')).toThrow(/activation 'swish' is not supported; supported activations: linear, relu/);
  });
});
