/**
 * Dense: y = x·W + b with W `[in, out]`, on the last axis of x `[N, ...mid, in]`
 * (T = prod(mid) positions per sample; T = 1 for the usual 2-D input).
 * A fused activation is split off into its own elementwise module.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, LinearModuleDerivatives, ModuleParam, ParamRole } from './types';
import { makeRecord } from './record';

export class DenseDerivatives implements LinearModuleDerivatives {
  readonly kind = 'Dense';
  readonly linearInWeights = true as const;
  readonly params: readonly ModuleParam[];
  readonly hasBias: boolean;

  constructor(
    private readonly kernel: tf.Variable,
    private readonly bias: tf.Variable | undefined,
  ) {
    this.hasBias = bias !== undefined;
    this.params = bias
      ? [{ role: 'kernel', variable: kernel }, { role: 'bias', variable: bias }]
      : [{ role: 'kernel', variable: kernel }];
  }

  get kernelShape(): readonly number[] {
    return this.kernel.shape;
  }

  outputShape(inShape: readonly number[]): number[] {
    return [...inShape.slice(0, -1), this.kernel.shape[1] as number];
  }

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    const [inF, outF] = this.kernel.shape as [number, number];
    const rows = x.size / inF;
    const y = tf.tidy(() => {
      let z = tf.matMul(tf.reshape(x, [rows, inF]), this.kernel as tf.Tensor2D);
      if (this.bias) z = tf.add(z, this.bias);
      return tf.reshape(z, [...x.shape.slice(0, -1), outF]);
    });
    return makeRecord(x, y);
  }

  /**
   * `mat [..., out] · Wᵀ` with plain 2-D matMuls (wasm: no transpose flags;
   * the right operand is packed on every call). With R rows, the cheaper of
   *   `(W · matᵀ)ᵀ`: transposes of mat and of the result, R·(in + out) entries, W reused;
   *   `mat · Wᵀ`:     Wᵀ formed and packed, 2·in·out entries.
   * The gradient of a wide layer (R = N ≪ in, out) takes the first, stacks
   * of many rows through a narrow layer the second.
   */
  jacTMatProd(_rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.timesKernelT(mat, this.kernel as tf.Tensor2D));
  }

  private timesKernelT(mat: tf.Tensor, W: tf.Tensor2D): tf.Tensor {
    const [inF, outF] = W.shape;
    const rows = mat.size / outF;
    const m = tf.reshape(mat, [rows, outF]) as tf.Tensor2D;
    const r = rows * (inF + outF) < 2 * inF * outF ? tf.transpose(tf.matMul(W, tf.transpose(m))) : tf.matMul(m, tf.transpose(W));
    return tf.reshape(r, [...mat.shape.slice(0, -1), inF]);
  }

  jacTMatProdWithKernel(_rec: ForwardRecord, mat: tf.Tensor, kernel: tf.Tensor): tf.Tensor {
    const [inF, outF] = this.kernel.shape as [number, number];
    return tf.tidy(() => this.timesKernelT(mat, tf.reshape(kernel, [inF, outF]) as tf.Tensor2D));
  }

  jacMatProd(_rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    const [inF, outF] = this.kernel.shape as [number, number];
    return tf.tidy(() => {
      const rows = mat.size / inF;
      const r = tf.matMul(tf.reshape(mat, [rows, inF]), this.kernel as tf.Tensor2D);
      return tf.reshape(r, [...mat.shape.slice(0, -1), outF]);
    });
  }

  unfoldInput(rec: ForwardRecord): tf.Tensor3D {
    const N = rec.input.shape[0] as number;
    const inF = this.kernel.shape[0] as number;
    return tf.reshape(rec.input, [N, rec.input.size / (N * inF), inF]);
  }

  foldOutput(mat: tf.Tensor): tf.Tensor4D {
    const [V, N] = mat.shape as [number, number];
    const outF = this.kernel.shape[1] as number;
    return tf.reshape(mat, [V, N, mat.size / (V * N * outF), outF]);
  }

  unfoldOutput(mat: tf.Tensor4D, outShape: readonly number[]): tf.Tensor {
    return tf.reshape(mat, [mat.shape[0], mat.shape[1], ...outShape]);
  }

  paramJacMatProd(rec: ForwardRecord, role: ParamRole, v: tf.Tensor): tf.Tensor {
    const [inF, outF] = this.kernel.shape as [number, number];
    const N = rec.input.shape[0] as number;
    const outShape = rec.output.shape.slice(1);
    const V = v.shape[0] as number;
    return tf.tidy(() => {
      if (role === 'bias') {
        const b = tf.reshape(v, [V, 1, ...outShape.map((_, i) => (i === outShape.length - 1 ? outF : 1))]);
        return tf.mul(b, tf.ones([1, N, ...outShape]));
      }
      // x [N·T, in] · [in, V·out] → [N·T, V, out] → [V, N, ...out]
      const rows = rec.input.size / inF;
      const vv = tf.reshape(tf.transpose(tf.reshape(v, [V, inF, outF]), [1, 0, 2]), [inF, V * outF]);
      const r = tf.matMul(tf.reshape(rec.input, [rows, inF]), vv);
      return tf.reshape(tf.transpose(tf.reshape(r, [rows, V, outF]), [1, 0, 2]), [V, N, ...outShape]);
    });
  }
}
