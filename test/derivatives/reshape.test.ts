/**
 * Reshape derivatives vs TF.js autodiff of the layer and central
 * differences; a reshape, so everything is exact.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { modulesForLayer } from '../../src/derivatives/index';
import { ReshapeDerivatives } from '../../src/derivatives/reshape';
import { checkModule } from './helpers';

describe('Reshape derivatives', () => {
  for (const [inShape, target, N, V] of [
    [[12], [3, 4], 2, 3],
    [[3, 4, 2], [-1, 4], 1, 2],
    [[6, 2], [2, 3, 2], 3, 1],
  ] as [number[], number[], number, number][]) {
    it(`[${inShape}] → [${target}], N = ${N}, V = ${V}`, () => {
      const layer = tf.layers.reshape({ inputShape: inShape, targetShape: target });
      tf.sequential({ layers: [layer] });
      const [m] = modulesForLayer(layer);
      expect(m?.kind).toBe('Reshape');
      const x = tf.randomNormal([N, ...inShape], 0, 1, 'float32', 1);
      checkModule(m as ReshapeDerivatives, x, (z) => layer.apply(z) as tf.Tensor, { V, tol: 1e-6, eps: 1 });
      x.dispose();
    });
  }

  it('rejects impossible target shapes naming both shapes', () => {
    expect(() => new ReshapeDerivatives([-1, -1])).toThrow(/at most one unknown/);
    expect(() => new ReshapeDerivatives([0, 2])).toThrow(/positive integers/);
    expect(() => new ReshapeDerivatives([5, -1]).outputShape([3, 4])).toThrow(
      /cannot reshape an input of shape \[N, 3, 4\] \(12 entries per sample\) to \[N, 5, -1\]/,
    );
    expect(() => new ReshapeDerivatives([5, 2]).outputShape([3, 4])).toThrow(/to \[N, 5, 2\]/);
    expect(new ReshapeDerivatives([null, 3]).outputShape([3, 4])).toEqual([4, 3]);
  });
});
