/** Sigmoid cross-entropy derivatives vs tf.losses.sigmoidCrossEntropy (see lossChecks.ts for the references and tolerances). */
import * as tf from '@tensorflow/tfjs';
import { describe, it } from 'vitest';
import { SigmoidCrossEntropyLoss } from '../../../src/derivatives/losses/sigmoidCrossEntropy';
import { checkLoss, checkTargetErrors, type LossSpec } from './lossChecks';

const spec: LossSpec = {
  create: (r) => new SigmoidCrossEntropyLoss(r),
  tfLoss: (r, f, y) =>
    tf.losses.sigmoidCrossEntropy(y, f, undefined, 0, r === 'sum' ? tf.Reduction.SUM : tf.Reduction.SUM_BY_NONZERO_WEIGHTS) as tf.Scalar,
  // Soft targets in [0, 1] (hard 0/1 labels are a special case).
  targets: (N, C, seed) => tf.randomUniform([N, C], 0, 1, 'float32', seed),
};

describe('sigmoid cross-entropy derivatives', () => {
  for (const reduction of ['mean', 'sum'] as const) {
    it(`${reduction}, N = 4, C = 3`, () => checkLoss(spec, reduction, 4, 3, 1));
    it(`${reduction}, N = 1, C = 1`, () => checkLoss(spec, reduction, 1, 1, 2));
  }

  it('rejects bad targets naming both shapes or the bad entry', () => {
    const wrong = tf.zeros([3, 3]);
    checkTargetErrors(
      spec,
      3,
      2,
      wrong,
      /sigmoidCrossEntropy: targets of shape \[3, 3\] do not fit model output of shape \[3, 2\]; pass targets in \[0, 1\] of shape \[3, 2\]/,
    );
    const outside = tf.tensor2d([[0, 1], [1.5, 0], [0, 0]]);
    checkTargetErrors(spec, 3, 2, outside, /target entry 2 is 1.5; targets must lie in \[0, 1\]/);
    tf.dispose([wrong, outside]);
  });
});
