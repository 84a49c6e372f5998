/**
 * GlobalAveragePooling2D (NHWC): `y[n, c] = (1/(H·W)) Σ_{h,w} x[n, h, w, c]`.
 * Linear: jacMatProd is the same mean on the stack, jacTMatProd broadcasts
 * `mat/(H·W)` over the spatial axes.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, ModuleDerivatives, ModuleParam } from './types';
import { assertStack, makeRecord } from './record';

export class GlobalAveragePooling2DDerivatives implements ModuleDerivatives {
  readonly kind = 'GlobalAveragePooling2D';
  readonly params: readonly ModuleParam[] = [];

  constructor(private readonly where = 'GlobalAveragePooling2D') {}

  outputShape(inShape: readonly number[]): number[] {
    if (inShape.length !== 3) {
      throw new Error(`${this.where}: expects inputs [N, height, width, channels], got an input of shape [N, ${inShape.join(', ')}].`);
    }
    return [inShape[2] as number];
  }

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    this.outputShape(x.shape.slice(1));
    return makeRecord(x, tf.mean(x, [1, 2]));
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacMatProd', mat, rec.input);
    return tf.mean(mat, [2, 3]);
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacTMatProd', mat, rec.output);
    const [N, H, W, C] = rec.input.shape as [number, number, number, number];
    const V = mat.shape[0] as number;
    return tf.tidy(() =>
      tf.broadcastTo(tf.reshape(tf.mul(mat, 1 / (H * W)), [V, N, 1, 1, C]), [V, N, H, W, C]),
    );
  }
}
