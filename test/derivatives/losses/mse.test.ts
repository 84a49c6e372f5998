/** MSE derivatives vs tf.losses.meanSquaredError (see lossChecks.ts for the references and tolerances). */
import * as tf from '@tensorflow/tfjs';
import { describe, it } from 'vitest';
import { MSELoss } from '../../../src/derivatives/losses/mse';
import { checkLoss, checkTargetErrors, type LossSpec } from './lossChecks';

const spec: LossSpec = {
  create: (r) => new MSELoss(r),
  tfLoss: (r, f, y) => tf.losses.meanSquaredError(y, f, undefined, r === 'sum' ? tf.Reduction.SUM : tf.Reduction.SUM_BY_NONZERO_WEIGHTS) as tf.Scalar,
  targets: (N, C, seed) => tf.randomNormal([N, C], 0, 1, 'float32', seed),
};

describe('MSE loss derivatives', () => {
  for (const reduction of ['mean', 'sum'] as const) {
    it(`${reduction}, N = 4, C = 3`, () => checkLoss(spec, reduction, 4, 3, 1));
    it(`${reduction}, N = 1, C = 1`, () => checkLoss(spec, reduction, 1, 1, 2));
  }

  it('rejects targets of the wrong shape naming both shapes', () => {
    const bad = tf.zeros([4, 2]);
    checkTargetErrors(spec, 4, 3, bad, /mse: targets of shape \[4, 2\] do not fit model output of shape \[4, 3\]; pass targets of shape \[4, 3\]/);
    bad.dispose();
  });
});
