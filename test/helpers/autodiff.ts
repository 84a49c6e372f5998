/**
 * Independent references from TF.js autodiff: the loss of a LayersModel
 * computed with plain TF.js ops (not curvpack's losses), and its gradients
 * via tf.variableGrads; and the comparison of two models' weights.
 */
import * as tf from '@tensorflow/tfjs';
import { maxRelErr } from '../conformance/compare';

export type LossKind = 'mse' | 'softmaxCrossEntropy' | 'sigmoidCrossEntropy';

/** The loss normaliser of FORMAT.md §4: 1 (sum), N (softmax cross-entropy, mean) or N·C (mean). */
export function normalizer(kind: LossKind, reduction: 'mean' | 'sum', N: number, C: number): number {
  if (reduction === 'sum') return 1;
  return kind === 'softmaxCrossEntropy' ? N : N * C;
}

/** Reference loss with FORMAT.md §4 conventions, written directly in TF.js ops. */
export function referenceLoss(kind: LossKind, reduction: 'mean' | 'sum', f: tf.Tensor2D, y: tf.Tensor): tf.Scalar {
  const [N, C] = f.shape;
  return tf.tidy(() => {
    let s: tf.Tensor;
    if (kind === 'mse') s = tf.sum(tf.square(tf.sub(f, y)));
    else if (kind === 'softmaxCrossEntropy') {
      const onehot = y.rank === 1 ? tf.oneHot(tf.cast(y, 'int32'), C) : y;
      s = tf.neg(tf.sum(tf.mul(onehot, tf.logSoftmax(f))));
    } else {
      // −y log σ(f) − (1−y) log(1−σ(f))
      const sig = tf.sigmoid(f);
      s = tf.neg(tf.sum(tf.add(tf.mul(y, tf.log(sig)), tf.mul(tf.sub(1, y), tf.log(tf.sub(1, sig))))));
    }
    return tf.div(s, normalizer(kind, reduction, N, C)) as tf.Scalar;
  });
}

/** Gradients of the reference loss w.r.t. the model's trainable variables, keyed by variable name. */
export function referenceGrads(
  model: tf.LayersModel,
  kind: LossKind,
  reduction: 'mean' | 'sum',
  x: tf.Tensor,
  y: tf.Tensor,
): { loss: number; grads: tf.NamedTensorMap } {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const { value, grads } = tf.variableGrads(
    () => referenceLoss(kind, reduction, model.apply(x, { training: false }) as tf.Tensor2D, y),
    vars,
  );
  const loss = value.dataSync()[0] as number;
  value.dispose();
  return { loss, grads };
}

export { maxRelErr };

/** The largest maxRelErr between corresponding weights of two models of one architecture. */
export function weightsErr(a: tf.LayersModel, b: tf.LayersModel): number {
  const wb = b.getWeights();
  return Math.max(0, ...a.getWeights().map((w, i) => maxRelErr(w, wb[i] as tf.Tensor)));
}
