/**
 * Sigmoid (binary) cross-entropy on logits, per output:
 * s_n = Σ_c [−y log σ(f) − (1 − y) log(1 − σ(f))]; targets `[N, C]` in [0, 1].
 * norm = N·C (mean) or 1. H_n = diag(σ(1 − σ))/norm; S_n = diag(√(σ(1 − σ)/norm));
 * MC factor (σ − y)/√(M·norm) with y ~ Bernoulli(σ).
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../../utils/random';
import type { LossDerivatives, Reduction } from './types';
import { shapeStr } from './types';

export class SigmoidCrossEntropyLoss implements LossDerivatives {
  readonly name = 'sigmoidCrossEntropy' as const;
  constructor(readonly reduction: Reduction) {}

  normalizer(N: number, C: number): number {
    return this.reduction === 'mean' ? N * C : 1;
  }

  prepareTargets(output: tf.Tensor2D, targets: tf.Tensor): tf.Tensor2D {
    const [N, C] = output.shape;
    let t: tf.Tensor2D;
    if (targets.rank === 1 && C === 1 && targets.shape[0] === N) t = tf.reshape(tf.cast(targets, 'float32'), [N, 1]);
    else if (targets.rank === 2 && targets.shape[0] === N && targets.shape[1] === C) t = tf.cast(targets, 'float32') as tf.Tensor2D;
    else {
      throw new Error(
        `sigmoidCrossEntropy: targets of shape ${shapeStr(targets)} do not fit model output of shape ${shapeStr(output)}; pass targets in [0, 1] of shape [${N}, ${C}].`,
      );
    }
    const v = t.dataSync();
    for (let i = 0; i < v.length; i++) {
      const y = v[i] as number;
      if (!(y >= 0 && y <= 1)) {
        t.dispose();
        throw new Error(`sigmoidCrossEntropy: target entry ${i} is ${y}; targets must lie in [0, 1].`);
      }
    }
    return t;
  }

  perSampleLoss(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D {
    const [N, C] = output.shape;
    // stable form: max(f, 0) − f·y + log(1 + e^{−|f|})
    return tf.tidy(() => {
      const s = tf.add(tf.sub(tf.relu(output), tf.mul(output, targets)), tf.log1p(tf.exp(tf.neg(tf.abs(output)))));
      return tf.div(tf.sum(s, 1), this.normalizer(N, C));
    });
  }

  gradient(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D {
    const [N, C] = output.shape;
    return tf.tidy(() => tf.div(tf.sub(tf.sigmoid(output), targets), this.normalizer(N, C)));
  }

  private curvature(output: tf.Tensor2D): tf.Tensor2D {
    const s = tf.sigmoid(output);
    return tf.mul(s, tf.sub(1, s));
  }

  sqrtHessian(output: tf.Tensor2D, _targets: tf.Tensor2D): tf.Tensor3D {
    const [N, C] = output.shape;
    return tf.tidy(() => {
      const d = tf.sqrt(tf.div(this.curvature(output), this.normalizer(N, C))); // [N, C]
      return tf.mul(tf.reshape(tf.eye(C), [C, 1, C]), tf.expandDims(d, 0)) as tf.Tensor3D;
    });
  }

  sqrtHessianSampled(output: tf.Tensor2D, _targets: tf.Tensor2D, mcSamples: number, rng: Rng): tf.Tensor3D {
    const [N, C] = output.shape;
    const scale = 1 / Math.sqrt(this.normalizer(N, C) * mcSamples);
    const s = tf.sigmoid(output);
    const sv = s.dataSync();
    s.dispose();
    const out = new Float32Array(mcSamples * N * C);
    for (let m = 0; m < mcSamples; m++) {
      for (let i = 0; i < N * C; i++) {
        const p = sv[i] as number;
        const y = rng.uniform() < p ? 1 : 0;
        out[m * N * C + i] = (p - y) * scale;
      }
    }
    return tf.tensor3d(out, [mcSamples, N, C]);
  }

  hessianMatProd(output: tf.Tensor2D, _targets: tf.Tensor2D, mat: tf.Tensor3D): tf.Tensor3D {
    const [N, C] = output.shape;
    return tf.tidy(() => tf.mul(mat, tf.expandDims(tf.div(this.curvature(output), this.normalizer(N, C)), 0)));
  }

  sumHessian(output: tf.Tensor2D, _targets: tf.Tensor2D): tf.Tensor2D {
    const [N, C] = output.shape;
    return tf.tidy(() => tf.diag(tf.div(tf.sum(this.curvature(output), 0), this.normalizer(N, C))) as tf.Tensor2D);
  }
}
