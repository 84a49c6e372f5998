/**
 * Softmax cross-entropy derivatives vs tf.losses.softmaxCrossEntropy (see
 * lossChecks.ts for the references and tolerances); targets as class ids
 * and as one-hot rows.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { SoftmaxCrossEntropyLoss } from '../../../src/derivatives/losses/softmaxCrossEntropy';
import { Rng } from '../../../src/utils/random';
import { checkLoss, checkTargetErrors, type LossSpec } from './lossChecks';

const tfLoss: LossSpec['tfLoss'] = (r, f, y) =>
  tf.losses.softmaxCrossEntropy(y, f, undefined, 0, r === 'sum' ? tf.Reduction.SUM : tf.Reduction.SUM_BY_NONZERO_WEIGHTS) as tf.Scalar;

function ids(N: number, C: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: N }, () => rng.int(C));
}

const byIds: LossSpec = {
  create: (r) => new SoftmaxCrossEntropyLoss(r),
  tfLoss,
  targets: (N, C, seed) => tf.tensor1d(ids(N, C, seed), 'int32'),
};
const byOneHot: LossSpec = {
  ...byIds,
  targets: (N, C, seed) => tf.tidy(() => tf.oneHot(tf.tensor1d(ids(N, C, seed), 'int32'), C).toFloat()),
};

describe('softmax cross-entropy derivatives', () => {
  for (const reduction of ['mean', 'sum'] as const) {
    it(`${reduction}, class ids, N = 4, C = 3`, () => checkLoss(byIds, reduction, 4, 3, 1));
    it(`${reduction}, one-hot rows, N = 1, C = 4`, () => checkLoss(byOneHot, reduction, 1, 4, 2));
  }

  it('rejects bad targets naming both shapes or the bad class id', () => {
    const wrong = tf.zeros([3, 4]);
    checkTargetErrors(
      byIds,
      3,
      2,
      wrong,
      /softmaxCrossEntropy: targets of shape \[3, 4\] do not fit model output of shape \[3, 2\]; pass class ids of shape \[3\] or one-hot rows of shape \[3, 2\]/,
    );
    const short = tf.tensor1d([0, 1], 'int32');
    checkTargetErrors(byIds, 3, 2, short, /targets of shape \[2\] do not fit model output of shape \[3, 2\]/);
    const outOfRange = tf.tensor1d([0, 2, 1], 'int32');
    checkTargetErrors(byIds, 3, 2, outOfRange, /target 1 is 2, not a class id in 0..1 \(model output has C = 2 classes\)/);
    tf.dispose([wrong, short, outOfRange]);
    expect(new SoftmaxCrossEntropyLoss('mean').normalizer(5, 3)).toBe(5);
  });
});
