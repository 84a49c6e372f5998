/**
 * The layer registry: every supported class maps to its modules, unsupported
 * classes raise an error naming the class and the supported list, and a CNN
 * with every layer kind gives the gradients of TF.js autodiff through the
 * model (cpu backend: the reference needs Conv2DBackpropFilter, absent on
 * wasm). Tolerance 1e-4 relative (float32, a few layers deep).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAYER_DERIVATIVES, modulesForLayer, SUPPORTED_LAYERS } from '../../src/derivatives/index';
import { extend } from '../../src/engine/extend';
import { BatchGrad } from '../../extensions/firstorder/index';
import { expectNoLeak, maxRelErr } from './helpers';

describe('layer registry (cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  it('lists every supported layer class', () => {
    expect([...SUPPORTED_LAYERS].sort()).toEqual(
      [
        'Activation',
        'AveragePooling2D',
        'Conv2D',
        'Dense',
        'Dropout',
        'Flatten',
        'GlobalAveragePooling2D',
        'LeakyReLU',
        'MaxPooling2D',
        'Reshape',
        'ZeroPadding2D',
      ].sort(),
    );
    expect(Object.keys(LAYER_DERIVATIVES)).toContain('InputLayer');
  });

  it('rejects unsupported classes naming the class and the supported list', () => {
    const bn = tf.layers.batchNormalization({ inputShape: [4], name: 'bn1' });
    tf.sequential({ layers: [bn] });
    expect(() => modulesForLayer(bn)).toThrow(
      /layer 'bn1' of class BatchNormalization is not supported by curvpack; supported layers: Dense, Activation, LeakyReLU, Conv2D, MaxPooling2D/,
    );
    const inner = tf.sequential({ name: 'inner', layers: [tf.layers.dense({ inputShape: [3], units: 2 })] });
    const outer = tf.sequential({ layers: [inner, tf.layers.dense({ units: 1 })] });
    expect(() => extend(outer, { loss: 'mse' })).toThrow(/layer 'inner' of class Sequential is not supported by curvpack; supported layers: /);
    outer.dispose();
    bn.dispose();
  });

  it('differentiates a CNN with every layer kind like TF.js autodiff', () => {
    const model = tf.sequential({
      layers: [
        tf.layers.zeroPadding2d({ inputShape: [7, 6, 2], padding: [[1, 0], [0, 1]] }),
        tf.layers.conv2d({ filters: 3, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', biasInitializer: 'randomNormal' }),
        tf.layers.maxPooling2d({ poolSize: 2, strides: 1, padding: 'same' }),
        tf.layers.conv2d({ filters: 4, kernelSize: [2, 3], padding: 'same', useBias: false, activation: 'tanh' }),
        tf.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'valid' }),
        tf.layers.dropout({ rate: 0.5 }),
        tf.layers.reshape({ targetShape: [9, 4] }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 3, biasInitializer: 'randomNormal' }),
      ],
    });
    const gap = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [5, 5, 2], filters: 3, kernelSize: 3, activation: 'sigmoid' }),
        tf.layers.leakyReLU({ alpha: 0.1 }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 2 }),
      ],
    });
    for (const [m, inShape] of [
      [model, [7, 6, 2]],
      [gap, [5, 5, 2]],
    ] as [tf.Sequential, number[]][]) {
      const ext = extend(m, { loss: 'mse', reduction: 'sum' });
      const C = ext.numOutputs;
      const x = tf.randomNormal([3, ...inShape], 0, 1, 'float32', 1);
      const y = tf.randomNormal([3, C], 0, 1, 'float32', 2);
      expectNoLeak(() => {
        const bg = new BatchGrad();
        const r = ext.backward(x, y, { extensions: [bg], training: false });
        const vars = m.trainableWeights.map((w) => w.read() as tf.Variable);
        const { value, grads } = tf.variableGrads(() => tf.sum(tf.squaredDifference(m.apply(x) as tf.Tensor, y)) as tf.Scalar, vars);
        for (const p of ext.params) {
          const want = grads[p.variable.name] as tf.Tensor;
          expect(maxRelErr(r.grad(p), want), `${p.name}`).toBeLessThan(1e-4);
          // Per-sample gradients sum to the gradient.
          const sum = tf.sum(r.get(bg, p), 0);
          expect(maxRelErr(sum, want), `${p.name} Σ batch_grad`).toBeLessThan(1e-4);
          sum.dispose();
        }
        tf.dispose(grads);
        value.dispose();
        r.dispose();
      });
      tf.dispose([x, y]);
      m.dispose();
    }
  });
});
