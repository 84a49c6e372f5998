/**
 * Softmax cross-entropy on logits: s_n = −Σ_c y_nc log p_nc, p = softmax(f);
 * targets are class ids `[N]` or one-hot / probability rows `[N, C]`.
 * norm = N (mean) or 1. H_n = (diag(p) − ppᵀ)/norm (independent of y for
 * rows that sum to 1); BackPACK's factor S_n[v, c] = (δ_vc √p_c − √p_v p_c)/√norm;
 * MC factor (p − e_y)/√(M·norm) with y ~ Cat(p).
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../../utils/random';
import type { LossDerivatives, Reduction } from './types';
import { shapeStr } from './types';

export class SoftmaxCrossEntropyLoss implements LossDerivatives {
  readonly name = 'softmaxCrossEntropy' as const;
  constructor(readonly reduction: Reduction) {}

  normalizer(N: number, _C: number): number {
    return this.reduction === 'mean' ? N : 1;
  }

  prepareTargets(output: tf.Tensor2D, targets: tf.Tensor): tf.Tensor2D {
    const [N, C] = output.shape;
    const ids = targets.rank === 1 || (targets.rank === 2 && targets.shape[1] === 1 && C !== 1);
    if (ids && targets.shape[0] === N) {
      const v = targets.dataSync();
      for (let i = 0; i < v.length; i++) {
        const c = v[i] as number;
        if (!Number.isInteger(c) || c < 0 || c >= C) {
          throw new Error(
            `softmaxCrossEntropy: target ${i} is ${c}, not a class id in 0..${C - 1} (model output has C = ${C} classes).`,
          );
        }
      }
      return tf.tidy(() => tf.oneHot(tf.cast(tf.reshape(targets, [N]), 'int32'), C).toFloat()) as tf.Tensor2D;
    }
    if (targets.rank !== 2 || targets.shape[0] !== N || targets.shape[1] !== C) {
      throw new Error(
        `softmaxCrossEntropy: targets of shape ${shapeStr(targets)} do not fit model output of shape ${shapeStr(output)}; pass class ids of shape [${N}] or one-hot rows of shape [${N}, ${C}].`,
      );
    }
    return tf.cast(targets, 'float32') as tf.Tensor2D;
  }

  perSampleLoss(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D {
    const [N, C] = output.shape;
    return tf.tidy(() =>
      tf.div(tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(output)), 1)), this.normalizer(N, C)),
    );
  }

  gradient(output: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D {
    const [N, C] = output.shape;
    // ∂/∂f of −Σ y log softmax(f) = p·Σy − y
    return tf.tidy(() =>
      tf.div(tf.sub(tf.mul(tf.softmax(output), tf.sum(targets, 1, true)), targets), this.normalizer(N, C)),
    );
  }

  sqrtHessian(output: tf.Tensor2D, _targets: tf.Tensor2D): tf.Tensor3D {
    const [N, C] = output.shape;
    const scale = 1 / Math.sqrt(this.normalizer(N, C));
    return tf.tidy(() => {
      const p = tf.softmax(output); // [N, C]
      const sp = tf.sqrt(p);
      // S[v, n, c] = δ_vc √p_nc − √p_nv p_nc
      const diag = tf.mul(tf.reshape(tf.eye(C), [C, 1, C]), tf.expandDims(sp, 0)); // [C, N, C]
      const outer = tf.mul(tf.expandDims(tf.transpose(sp), 2), tf.expandDims(p, 0)); // [C(v), N, C(c)]
      return tf.mul(tf.sub(diag, outer), scale) as tf.Tensor3D;
    });
  }

  sqrtHessianSampled(output: tf.Tensor2D, _targets: tf.Tensor2D, mcSamples: number, rng: Rng): tf.Tensor3D {
    const [N, C] = output.shape;
    const scale = 1 / Math.sqrt(this.normalizer(N, C) * mcSamples);
    const p = tf.tidy(() => tf.softmax(output));
    const pv = p.dataSync();
    p.dispose();
    const out = new Float32Array(mcSamples * N * C);
    for (let m = 0; m < mcSamples; m++) {
      for (let n = 0; n < N; n++) {
        const y = rng.categorical(pv, n * C, C);
        const base = (m * N + n) * C;
        for (let c = 0; c < C; c++) out[base + c] = ((pv[n * C + c] as number) - (c === y ? 1 : 0)) * scale;
      }
    }
    return tf.tensor3d(out, [mcSamples, N, C]);
  }

  hessianMatProd(output: tf.Tensor2D, _targets: tf.Tensor2D, mat: tf.Tensor3D): tf.Tensor3D {
    const [N, C] = output.shape;
    return tf.tidy(() => {
      const p = tf.expandDims(tf.softmax(output), 0); // [1, N, C]
      const pm = tf.sum(tf.mul(p, mat), 2, true); // [V, N, 1]
      return tf.div(tf.sub(tf.mul(p, mat), tf.mul(p, pm)), this.normalizer(N, C)) as tf.Tensor3D;
    });
  }

  sumHessian(output: tf.Tensor2D, _targets: tf.Tensor2D): tf.Tensor2D {
    const [N, C] = output.shape;
    return tf.tidy(() => {
      const p = tf.softmax(output);
      const h = tf.sub(tf.diag(tf.sum(p, 0)), tf.matMul(tf.transpose(p), p));
      return tf.div(h, this.normalizer(N, C)) as tf.Tensor2D;
    });
  }
}
