/**
 * Mean squared error: s_n = Σ_c (f_nc − y_nc)² (no 1/2); norm = N·C (mean) or 1.
 * H_n = (2/norm)·I, S_n = sqrt(2/norm)·I, MC factor sqrt(2/(norm·M))·z, z ~ N(0, I).
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../../utils/random';
import type { LossDerivatives, Reduction } from './types';
import { shapeStr } from './types';

export class MSELoss implements LossDerivatives {
  readonly name = 'mse' as const;
  constructor(readonly reduction: Reduction) {}

  normalizer(N: number, C: number): number {
    return this.reduction === 'mean' ? N * C : 1;
  }

  prepareTargets(output: tf.Tensor2D, targets: tf.Tensor): tf.Tensor2D {
    const [N, C] = output.shape;
    if (targets.rank === 1 && C === 1 && targets.shape[0] === N) return tf.reshape(tf.cast(targets, 'float32'), [N, 1]);
    if (targets.rank !== 2 || targets.shape[0] !== N || targets.shape[1] !== C) {
      throw new Error(
        `mse: targets of shape ${shapeStr(targets)} do not fit model output of shape ${shapeStr(output)}; pass targets of shape [${N}, ${C}].`,
      );
    }
    return tf.cast(targets, 'float32') as tf.Tensor2D;
  }

  perSampleLoss(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D {
    const [N, C] = output.shape;
    return tf.tidy(() => tf.div(tf.sum(tf.squaredDifference(output, targets), 1), this.normalizer(N, C)));
  }

  gradient(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D {
    const [N, C] = output.shape;
    return tf.tidy(() => tf.mul(tf.sub(output, targets), 2 / this.normalizer(N, C)));
  }

  sqrtHessian(output: tf.Tensor2D, _targets: tf.Tensor2D): tf.Tensor3D {
    const [N, C] = output.shape;
    const s = Math.sqrt(2 / this.normalizer(N, C));
    return tf.tidy(() => tf.mul(tf.reshape(tf.eye(C), [C, 1, C]), tf.fill([1, N, 1], s)) as tf.Tensor3D);
  }

  sqrtHessianSampled(output: tf.Tensor2D, _targets: tf.Tensor2D, mcSamples: number, rng: Rng): tf.Tensor3D {
    const [N, C] = output.shape;
    const s = Math.sqrt(2 / (this.normalizer(N, C) * mcSamples));
    const z = rng.normals(mcSamples * N * C);
    for (let i = 0; i < z.length; i++) z[i] = (z[i] as number) * s;
    return tf.tensor3d(z, [mcSamples, N, C]);
  }

  hessianMatProd(output: tf.Tensor2D, _targets: tf.Tensor2D, mat: tf.Tensor3D): tf.Tensor3D {
    const [N, C] = output.shape;
    return tf.mul(mat, 2 / this.normalizer(N, C));
  }

  sumHessian(output: tf.Tensor2D, _targets: tf.Tensor2D): tf.Tensor2D {
    const [N, C] = output.shape;
    return tf.tidy(() => tf.mul(tf.eye(C), (2 * N) / this.normalizer(N, C)));
  }
}
