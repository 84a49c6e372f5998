/**
 * AveragePooling2D (NHWC): `y[n, t, c] = (1/|w_t|) Σ_{k valid} x[n, window_t(k), c]`,
 * where TF's 'same' padding excludes the padded cells from the count |w_t|.
 * Linear: jacMatProd is avgPool itself on the stack (folded into the batch);
 * jacTMatProd divides by the counts and applies the adjoint window sum
 * (a depthwise conv with a ones kernel of the zero-upsampled stack).
 *
 * (TF.js 4.22's own AvgPoolGrad on cpu divides by the full window size also
 * at padded borders, which is not the adjoint of its forward for 'same'.)
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, ModuleDerivatives } from './types';
import { assertStack, makeRecord } from './record';
import { Pooling2DDerivatives, transposedWindowConv, windowValidity, type Pooling2DOptions } from './im2col';

export class AveragePooling2DDerivatives extends Pooling2DDerivatives implements ModuleDerivatives {
  readonly kind = 'AveragePooling2D';

  constructor(options: Pooling2DOptions, where = 'AveragePooling2D') {
    super(options, where);
  }

  private pool(x: tf.Tensor4D): tf.Tensor4D {
    const { poolSize, strides, padding } = this.options;
    return tf.avgPool(x, poolSize as [number, number], strides as [number, number], padding);
  }

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    this.geometry(x.shape.slice(1));
    return makeRecord(x, this.pool(x as tf.Tensor4D));
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacMatProd', mat, rec.input);
    return tf.tidy(() => {
      const [V, N] = mat.shape as [number, number];
      const y = this.pool(tf.reshape(mat, [V * N, ...(mat.shape.slice(2) as [number, number, number])]) as tf.Tensor4D);
      return tf.reshape(y, [V, N, ...y.shape.slice(1)]);
    });
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacTMatProd', mat, rec.output);
    return tf.tidy(() => {
      const [V, N] = mat.shape as [number, number];
      const g = this.geometry(rec.input.shape.slice(1));
      const { h, w } = g;
      const K = h.window * w.window;
      let m = tf.reshape(mat, [V * N, h.out, w.out, g.channels]) as tf.Tensor4D;
      if (g.padded) {
        const valid = windowValidity(g);
        const inv = new Float32Array(h.out * w.out);
        for (let t = 0; t < inv.length; t++) {
          let cnt = 0;
          for (let k = 0; k < K; k++) cnt += valid[t * K + k] as number;
          inv[t] = 1 / cnt;
        }
        m = tf.mul(m, tf.tensor4d(inv, [1, h.out, w.out, 1]));
      } else {
        m = tf.mul(m, 1 / K);
      }
      const ones = tf.ones([h.window, w.window, g.channels, 1]) as tf.Tensor4D;
      const gx = transposedWindowConv(m, ones, g, true);
      return tf.reshape(gx, [V, N, ...rec.input.shape.slice(1)]);
    });
  }
}
