/**
 * Per-sample gradients of the single-sample loss and the mixed input
 * gradients of perturbation influence on a small CNN (Conv2D + tanh +
 * AveragePooling2D + Flatten + Dense), against TF.js autodiff on the cpu
 * backend of the same network written in plain ops (tanh = sinh/cosh so that
 * it can be differentiated twice):
 *
 *   g_j = ∇_θ ℓ_j (one tf.grad per sample, N = 1 normaliser),
 *   ∇_{x_j} ⟨v, ∇_θ ℓ_j⟩ (nested tf.grad: outer over x, inner over θ).
 *
 * Tolerance 1e-4 relative to the largest entry (float32, a handful of ops).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import { mixedInputGradients, perSampleGradients } from '../../src/influence/gradients';
import { selectParams } from '../../src/operators/curvature';
import { maxRelErr } from './reference';

let model: tf.Sequential;
let ext: ExtendedModel;
let x: tf.Tensor4D;
let y: tf.Tensor2D;
const C = 3;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed: 1 }), biasInitializer: tf.initializers.randomNormal({ stddev: 0.3, seed: 2 }) }),
      tf.layers.averagePooling2d({ poolSize: 2, strides: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: C, kernelInitializer: tf.initializers.glorotNormal({ seed: 3 }), biasInitializer: tf.initializers.randomNormal({ stddev: 0.3, seed: 4 }) }),
    ],
  });
  ext = extend(model, { loss: 'mse', reduction: 'mean' });
  x = tf.randomNormal([4, 6, 6, 1], 0, 1, 'float32', 5) as tf.Tensor4D;
  y = tf.randomNormal([4, C], 0, 1, 'float32', 6) as tf.Tensor2D;
});
afterAll(() => {
  tf.dispose([x, y]);
  model.dispose();
});

/**
 * ℓ(θ; x, y) of one sample in plain ops: mse with N = 1, i.e.
 * (1/C) Σ_c (f_c − y_c)². The convolution is written as patches (slices) ×
 * kernel and the pooling as a reshape + mean (TF.js has no second
 * derivative of conv2d's filter gradient nor of avgPool's gradient).
 */
function loss(theta: tf.Tensor1D, xj: tf.Tensor, yj: tf.Tensor): tf.Scalar {
  const [W, b, V, c] = tf.split(theta, [18, 2, 8 * C, C]);
  const cols: tf.Tensor[] = [];
  for (let dh = 0; dh < 3; dh++) for (let dw = 0; dw < 3; dw++) cols.push(tf.reshape(tf.slice(xj, [0, dh, dw, 0], [1, 4, 4, 1]), [16, 1]));
  const patches = tf.concat(cols, 1); // [16 positions, 9] in (kh, kw, inC) order
  const z = tf.add(tf.matMul(patches, tf.reshape(W as tf.Tensor, [9, 2]) as tf.Tensor2D), b as tf.Tensor); // [16, 2]
  const h = tf.div(tf.sinh(z), tf.cosh(z));
  const pooled = tf.mean(tf.reshape(h, [2, 2, 2, 2, 2]), [1, 3]); // [hBlock, wBlock, channel]
  const f = tf.add(tf.matMul(tf.reshape(pooled, [1, 8]), tf.reshape(V as tf.Tensor, [8, C]) as tf.Tensor2D), c as tf.Tensor);
  return tf.div(tf.sum(tf.square(tf.sub(f, yj))), C) as tf.Scalar;
}

function theta(): tf.Tensor1D {
  return tf.tidy(() => tf.concat(model.trainableWeights.map((w) => tf.reshape(w.read(), [-1]))) as tf.Tensor1D);
}

describe('per-sample gradients and mixed input gradients (CNN, mse mean)', () => {
  it('perSampleGradients = ∇_θ ℓ_j by autodiff', () => {
    const t = theta();
    const sel = selectParams(ext, undefined, 'test');
    const before = tf.memory().numTensors;
    const G = perSampleGradients(ext, sel, { x, y });
    expect(G.shape).toEqual([4, 18 + 2 + 8 * C + C]);
    expect(tf.memory().numTensors).toBe(before + 1);
    const expected: number[] = [];
    for (let j = 0; j < 4; j++) {
      const g = tf.tidy(() => tf.grad((th: tf.Tensor) => loss(th as tf.Tensor1D, tf.slice(x, j, 1), tf.slice(y, j, 1)))(t));
      expected.push(...g.dataSync());
      g.dispose();
    }
    expect(maxRelErr(G.dataSync(), expected)).toBeLessThan(1e-4);
    tf.dispose([G, t]);
  });

  it('mixedInputGradients = ∇_x ⟨v, ∇_θ ℓ⟩ by nested autodiff (every module, a subset of parameters)', () => {
    const t = theta();
    const D = t.size;
    const V = tf.randomNormal([2, D], 0, 1, 'float32', 7) as tf.Tensor2D;
    for (const params of [undefined, ['0/kernel', '3/bias']] as const) {
      const sel = selectParams(ext, params, 'test');
      // The selection's coordinates of V (all, or the two chosen parameters).
      const Vsel = params === undefined ? tf.clone(V) : tf.concat([tf.slice(V, [0, 0], [2, 18]), tf.slice(V, [0, D - C], [2, C])], 1);
      const Vfull = params === undefined ? tf.clone(V) : tf.concat([tf.slice(V, [0, 0], [2, 18]), tf.zeros([2, D - 18 - C]), tf.slice(V, [0, D - C], [2, C])], 1);
      const before = tf.memory().numTensors;
      const R = mixedInputGradients(ext, sel, { x, y }, Vsel as tf.Tensor2D);
      expect(R.shape).toEqual([2, 4, 6, 6, 1]);
      expect(tf.memory().numTensors).toBe(before + 1);
      const expected: number[] = [];
      for (let k = 0; k < 2; k++) {
        const v = tf.squeeze(tf.slice(Vfull, k, 1));
        for (let j = 0; j < 4; j++) {
          const gx = tf.tidy(() => {
            const yj = tf.slice(y, j, 1);
            return tf.grad((xj: tf.Tensor) => tf.sum(tf.mul(v, tf.grad((th: tf.Tensor) => loss(th as tf.Tensor1D, xj, yj))(t))))(tf.slice(x, j, 1));
          });
          expected.push(...gx.dataSync());
          gx.dispose();
        }
        v.dispose();
      }
      expect(maxRelErr(R.dataSync(), expected), `params ${String(params)}`).toBeLessThan(1e-4);
      tf.dispose([R, Vsel, Vfull]);
    }
    tf.dispose([V, t]);
  });
});
