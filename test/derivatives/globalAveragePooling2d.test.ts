/**
 * GlobalAveragePooling2D derivatives vs TF.js autodiff of the layer and
 * central differences (a linear map: ε = 1 is exact up to rounding).
 * Tolerance 1e-5: means of ≤ 30 float32 numbers.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { modulesForLayer } from '../../src/derivatives/index';
import { GlobalAveragePooling2DDerivatives } from '../../src/derivatives/globalAveragePooling2d';
import { checkModule, disposeRecord, expectNoLeak } from './helpers';

describe('GlobalAveragePooling2D derivatives', () => {
  for (const [inShape, N, V] of [
    [[5, 6, 3], 2, 3],
    [[1, 4, 2], 1, 2],
    [[3, 3, 1], 3, 1],
  ] as [[number, number, number], number, number][]) {
    it(`input [${inShape}], N = ${N}, V = ${V}`, () => {
      const layer = tf.layers.globalAveragePooling2d({ inputShape: inShape });
      tf.sequential({ layers: [layer] });
      const [m] = modulesForLayer(layer);
      expect(m?.kind).toBe('GlobalAveragePooling2D');
      const x = tf.randomNormal([N, ...inShape], 0, 1, 'float32', 1);
      checkModule(m as GlobalAveragePooling2DDerivatives, x, (z) => layer.apply(z) as tf.Tensor, { V, tol: 1e-5, eps: 1 });
      x.dispose();
    });
  }

  it('rejects non-image inputs, channelsFirst and bad stacks', () => {
    const m = new GlobalAveragePooling2DDerivatives();
    expect(() => m.outputShape([4, 3])).toThrow(/expects inputs \[N, height, width, channels\], got an input of shape \[N, 4, 3\]/);
    const cf = tf.layers.globalAveragePooling2d({ inputShape: [2, 4, 4], dataFormat: 'channelsFirst', name: 'gapcf' });
    tf.sequential({ layers: [cf] });
    expect(() => modulesForLayer(cf)).toThrow(/GlobalAveragePooling2D layer 'gapcf': option dataFormat 'channelsFirst'/);
    expectNoLeak(() => {
      const x = tf.zeros([2, 3, 3, 2]);
      const rec = m.forward(x, { training: false });
      const bad = tf.zeros([1, 3, 2]);
      expect(() => m.jacTMatProd(rec, bad)).toThrow(/expects a stack \[V, 2, 2\], got \[1, 3, 2\]/);
      tf.dispose([x, bad]);
      disposeRecord(rec);
    });
  });
});
