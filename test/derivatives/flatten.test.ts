/**
 * Flatten derivatives vs TF.js autodiff of the layer (TF.js HWC order) and
 * central differences; a reshape, so everything is exact.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { modulesForLayer } from '../../src/derivatives/index';
import { FlattenDerivatives } from '../../src/derivatives/flatten';
import { checkModule, disposeRecord, expectNoLeak } from './helpers';

describe('Flatten derivatives', () => {
  for (const [inShape, N, V] of [
    [[3, 4, 2], 2, 3],
    [[2, 5], 1, 2],
    [[2, 2, 2, 3], 2, 1],
  ] as [number[], number, number][]) {
    it(`input [${inShape}], N = ${N}, V = ${V}`, () => {
      const layer = tf.layers.flatten({ inputShape: inShape });
      tf.sequential({ layers: [layer] });
      const [m] = modulesForLayer(layer);
      expect(m?.kind).toBe('Flatten');
      const x = tf.randomNormal([N, ...inShape], 0, 1, 'float32', 1);
      checkModule(m as FlattenDerivatives, x, (z) => layer.apply(z) as tf.Tensor, { V, tol: 1e-6, eps: 1 });
      x.dispose();
    });
  }

  it('follows the (h, w, c) order and never aliases its input', () => {
    const m = new FlattenDerivatives();
    expectNoLeak(() => {
      const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 2, 2]);
      const rec = m.forward(x, { training: false });
      expect(rec.output).not.toBe(x);
      expect(Array.from(rec.output.dataSync())).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      const bad = tf.zeros([1, 1, 7]);
      expect(() => m.jacTMatProd(rec, bad)).toThrow(/Flatten: jacTMatProd expects a stack \[V, 1, 8\], got \[1, 1, 7\]/);
      tf.dispose([x, bad]);
      disposeRecord(rec);
    });
  });

  it('rejects channelsFirst', () => {
    const cf = tf.layers.flatten({ inputShape: [2, 3, 3], dataFormat: 'channelsFirst', name: 'flcf' });
    tf.sequential({ layers: [cf] });
    expect(() => modulesForLayer(cf)).toThrow(/Flatten layer 'flcf': option dataFormat 'channelsFirst' is not supported/);
  });
});
