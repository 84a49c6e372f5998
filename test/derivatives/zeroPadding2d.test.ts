/**
 * ZeroPadding2D derivatives vs TF.js autodiff of the layer and central
 * differences, for every padding form tf.layers.zeroPadding2d accepts.
 * Padding and cropping are exact.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { modulesForLayer } from '../../src/derivatives/index';
import { normalizePadding2D, ZeroPadding2DDerivatives } from '../../src/derivatives/zeroPadding2d';
import { checkModule, disposeRecord, expectNoLeak } from './helpers';

describe('ZeroPadding2D derivatives', () => {
  const cases: [string, number | [number, number] | [[number, number], [number, number]], number, number][] = [
    ['asymmetric [[1, 0], [2, 1]]', [[1, 0], [2, 1]], 2, 3],
    ['int 2', 2, 1, 2],
    ['pair [0, 1]', [0, 1], 2, 1],
    ['default (1)', 1, 2, 2],
  ];
  for (const [name, padding, N, V] of cases) {
    it(`${name}, N = ${N}, V = ${V}`, () => {
      const layer = tf.layers.zeroPadding2d({ inputShape: [4, 5, 2], padding });
      tf.sequential({ layers: [layer] });
      const [m] = modulesForLayer(layer) as [ZeroPadding2DDerivatives];
      expect(m.kind).toBe('ZeroPadding2D');
      expect(m.padding).toEqual(normalizePadding2D(padding, 'test'));
      const x = tf.randomNormal([N, 4, 5, 2], 0, 1, 'float32', 1);
      checkModule(m, x, (z) => layer.apply(z) as tf.Tensor, { V, tol: 1e-6, eps: 1 });
      x.dispose();
    });
  }

  it('normalises the padding forms and rejects bad ones', () => {
    expect(normalizePadding2D(3, 'w')).toEqual([[3, 3], [3, 3]]);
    expect(normalizePadding2D([1, 2], 'w')).toEqual([[1, 1], [2, 2]]);
    expect(normalizePadding2D([[1, 2], [3, 4]], 'w')).toEqual([[1, 2], [3, 4]]);
    expect(() => normalizePadding2D(-1, 'ZeroPadding2D layer \'zp\'')).toThrow(/ZeroPadding2D layer 'zp': option padding -1 is not valid/);
    expect(() => normalizePadding2D([[1], [2, 3]], 'w')).toThrow(/not valid/);
    const cf = tf.layers.zeroPadding2d({ inputShape: [2, 4, 4], padding: 1, dataFormat: 'channelsFirst', name: 'zpcf' });
    tf.sequential({ layers: [cf] });
    expect(() => modulesForLayer(cf)).toThrow(/ZeroPadding2D layer 'zpcf': option dataFormat 'channelsFirst' is not supported/);
    const m = new ZeroPadding2DDerivatives(1);
    expectNoLeak(() => {
      const x = tf.zeros([2, 3, 3, 1]);
      const rec = m.forward(x, { training: false });
      const bad = tf.zeros([1, 2, 3, 3, 1]);
      expect(() => m.jacTMatProd(rec, bad)).toThrow(/expects a stack \[V, 2, 5, 5, 1\], got \[1, 2, 3, 3, 1\]/);
      tf.dispose([x, bad]);
      disposeRecord(rec);
    });
  });
});
