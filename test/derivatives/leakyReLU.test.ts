/**
 * LeakyReLU derivatives vs TF.js autodiff of tf.layers.leakyReLU and central
 * differences (piecewise linear; inputs ≥ 0.1 from the kink, ε·|v| ≤ 0.05:
 * exact up to rounding). The residual is zero (residualDiag undefined).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { modulesForLayer } from '../../src/derivatives/index';
import { leakyReLUDerivatives } from '../../src/derivatives/leakyReLU';
import { checkModule, disposeRecord, expectClose, expectNoLeak } from './helpers';

describe('LeakyReLU derivatives', () => {
  for (const alpha of [0.2, undefined]) {
    it(`alpha ${alpha ?? 'default (0.3)'}`, () => {
      const layer = tf.layers.leakyReLU({ inputShape: [2, 5], ...(alpha === undefined ? {} : { alpha }) });
      tf.sequential({ layers: [layer] });
      const [m] = modulesForLayer(layer);
      if (m === undefined) throw new Error('no module');
      expect(m.kind).toBe(`LeakyReLU(${alpha ?? 0.3})`);
      expect(m.residualDiag).toBeUndefined();
      for (const N of [1, 4]) {
        const x = tf.tidy(() => {
          const z = tf.randomNormal([N, 2, 5], 0, 1, 'float32', N);
          return tf.mul(tf.sign(z), tf.add(tf.abs(z), 0.1));
        });
        checkModule(m, x, (z) => layer.apply(z) as tf.Tensor, { V: 3, tol: 1e-6, eps: 0.05, jvpTol: 1e-5 });
        expectNoLeak(() => {
          const rec = m.forward(x, { training: false });
          tf.tidy(() => {
            const want = tf.where(tf.greater(x, 0), tf.onesLike(x), tf.fill(x.shape, alpha ?? 0.3));
            expectClose(m.jacobianDiag?.(rec) as tf.Tensor, want, 0, 'jacobianDiag');
          });
          disposeRecord(rec);
        });
        x.dispose();
      }
    });
  }

  it('builds directly from alpha', () => {
    expect(leakyReLUDerivatives(0.1).kind).toBe('LeakyReLU(0.1)');
  });
});
