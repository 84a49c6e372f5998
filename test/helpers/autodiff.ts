/**
 * Independent references from TF.js autodiff: the loss of a LayersModel
 * computed with plain TF.js ops (not curvpack's losses), and its gradients
 * via tf.variableGrads.
 */
import * as tf from '@tensorflow/tfjs';

export type LossKind = 'mse' | 'softmaxCrossEntropy' | 'sigmoidCrossEntropy';

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
    const norm = reduction === 'sum' ? 1 : kind === 'softmaxCrossEntropy' ? N : N * C;
    return tf.div(s, norm) as tf.Scalar;
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

/** max |a − b| / max |b|. */
export function relErr(a: tf.Tensor, b: tf.Tensor): number {
  const av = a.dataSync();
  const bv = b.dataSync();
  let err = 0;
  let scale = 0;
  for (let i = 0; i < bv.length; i++) {
    err = Math.max(err, Math.abs((av[i] as number) - (bv[i] as number)));
    scale = Math.max(scale, Math.abs(bv[i] as number));
  }
  return scale > 0 ? err / scale : err;
}
