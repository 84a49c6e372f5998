/**
 * Conv2D (NHWC, TF cross-correlation): `y[n, ho, wo, o] = b[o] +
 * Σ_{i,j,c} x_pad[n, ho·sh + i·dh, wo·sw + j·dw, c] · K[i, j, c, o]`,
 * kernel `K [kh, kw, inC, O]`. A fused activation is split off into its own
 * elementwise module (like Dense).
 *
 * Unfolded (im2col) view: `X [N, T = Ho·Wo, I = kh·kw·inC]` and
 * `y[n, t] = X[n, t] · K_flat + b` with `K_flat [I, O]`, so the kernel/bias
 * products are those of weightProducts.ts.
 *
 * Costs (wasm): forward, jacMatProd and paramJacMatProd are conv2d's;
 * jacTMatProd is one conv2d of the (zero-upsampled when strided) stack with
 * the flipped kernel (see im2col.ts for why not conv2dTranspose), flipped
 * when needed (the first parametrised module never backpropagates);
 * summedKernelProduct (the kernel gradient) is one conv2d of the input with
 * the stack (`convKernelProduct`), without im2col patches.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, LinearModuleDerivatives, ModuleParam, ParamRole } from './types';
import { assertStack, makeRecord } from './record';
import {
  convKernelProduct,
  extractPatches,
  flipKernel,
  transposedWindowConv,
  windowGeometry,
  type WindowGeometry,
  type WindowPadding,
} from './im2col';

export interface Conv2DOptions {
  readonly strides: readonly [number, number];
  readonly padding: WindowPadding;
  readonly dilationRate: readonly [number, number];
}

export class Conv2DDerivatives implements LinearModuleDerivatives {
  readonly kind = 'Conv2D';
  readonly linearInWeights = true as const;
  readonly params: readonly ModuleParam[];
  readonly hasBias: boolean;
  private readonly strides: [number, number];
  private readonly dilations: [number, number];
  private readonly padding: WindowPadding;

  constructor(
    private readonly kernel: tf.Variable,
    private readonly bias: tf.Variable | undefined,
    options: Conv2DOptions,
    private readonly where = 'Conv2D',
  ) {
    if (kernel.rank !== 4) {
      throw new Error(`${where}: the kernel must have shape [kh, kw, inChannels, filters], got [${kernel.shape.join(', ')}].`);
    }
    if (options.padding !== 'valid' && options.padding !== 'same') {
      throw new Error(`${where}: option padding '${String(options.padding)}' is not supported; use 'valid' or 'same'.`);
    }
    const s = options.strides;
    const d = options.dilationRate;
    if ((s[0] > 1 || s[1] > 1) && (d[0] > 1 || d[1] > 1)) {
      throw new Error(
        `${where}: strides [${s.join(', ')}] and dilationRate [${d.join(', ')}] cannot both exceed 1 (TF restriction); use one of them.`,
      );
    }
    this.strides = [s[0], s[1]];
    this.dilations = [d[0], d[1]];
    this.padding = options.padding;
    this.hasBias = bias !== undefined;
    this.params = bias
      ? [{ role: 'kernel', variable: kernel }, { role: 'bias', variable: bias }]
      : [{ role: 'kernel', variable: kernel }];
  }

  get kernelShape(): readonly number[] {
    return this.kernel.shape;
  }

  private get kernelSize(): [number, number] {
    return [this.kernel.shape[0] as number, this.kernel.shape[1] as number];
  }

  /** Window geometry for an input `[H, W, inC]` (checks the channels). */
  geometry(inShape: readonly number[]): WindowGeometry {
    const inC = this.kernel.shape[2] as number;
    if (inShape.length !== 3 || inShape[2] !== inC) {
      throw new Error(
        `${this.where}: expects inputs [N, height, width, ${inC}], got an input of shape [N, ${inShape.join(', ')}].`,
      );
    }
    return windowGeometry(this.where, inShape, this.kernelSize, this.strides, this.dilations, this.padding);
  }

  outputShape(inShape: readonly number[]): number[] {
    const g = this.geometry(inShape);
    return [g.h.out, g.w.out, this.kernel.shape[3] as number];
  }

  private inGeometry(rec: ForwardRecord): WindowGeometry {
    return this.geometry(rec.input.shape.slice(1));
  }

  private conv(x: tf.Tensor4D, kernel: tf.Tensor4D): tf.Tensor4D {
    return tf.conv2d(x, kernel, this.strides, this.padding, 'NHWC', this.dilations);
  }

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    this.geometry(x.shape.slice(1));
    // The fused op, as tf.layers' Conv2D computes it (same rounding as layer.apply).
    const y = tf.fused.conv2d({
      x: x as tf.Tensor4D,
      filter: this.kernel as tf.Tensor4D,
      strides: this.strides,
      pad: this.padding,
      dataFormat: 'NHWC',
      dilations: this.dilations,
      ...(this.bias ? { bias: this.bias } : {}),
    });
    return makeRecord(x, y);
  }

  /** `[V, N, ...out] → [V·N, Ho, Wo, O]`. */
  private foldBatch(mat: tf.Tensor, what: string, ref: tf.Tensor): tf.Tensor4D {
    assertStack(this.kind, what, mat, ref);
    const [V, N] = mat.shape as [number, number];
    return tf.reshape(mat, [V * N, ...(mat.shape.slice(2) as [number, number, number])]) as tf.Tensor4D;
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    // K rotated by 180° with in/out swapped: the kernel of the adjoint conv.
    return tf.tidy(() => this.transposed(rec, mat, flipKernel(this.kernel as tf.Tensor4D), 'jacTMatProd'));
  }

  jacTMatProdWithKernel(rec: ForwardRecord, mat: tf.Tensor, kernel: tf.Tensor): tf.Tensor {
    const shape = this.kernel.shape;
    if (kernel.size !== this.kernel.size) {
      throw new Error(
        `${this.kind}: jacTMatProdWithKernel expects a kernel of shape [${shape.join(', ')}], got [${kernel.shape.join(', ')}].`,
      );
    }
    return tf.tidy(() =>
      this.transposed(rec, mat, flipKernel(tf.reshape(kernel, shape as [number, number, number, number]) as tf.Tensor4D), 'jacTMatProdWithKernel'),
    );
  }

  private transposed(rec: ForwardRecord, mat: tf.Tensor, flipped: tf.Tensor4D, what: string): tf.Tensor {
    return tf.tidy(() => {
      const [V, N] = mat.shape as [number, number];
      const folded = this.foldBatch(mat, what, rec.output);
      const gx = transposedWindowConv(folded, flipped, this.inGeometry(rec), false);
      return tf.reshape(gx, [V, N, ...rec.input.shape.slice(1)]);
    });
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [V, N] = mat.shape as [number, number];
      const y = this.conv(this.foldBatch(mat, 'jacMatProd', rec.input), this.kernel as tf.Tensor4D);
      return tf.reshape(y, [V, N, ...y.shape.slice(1)]);
    });
  }

  /** `Σ_n Jᵀ_kernel · mat[v, n]` → `[V, kh, kw, inC, O]`: one conv of the input with the stack (no patches). */
  summedKernelProduct(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'summedKernelProduct', mat, rec.output);
    return convKernelProduct(rec.input as tf.Tensor4D, mat, this.inGeometry(rec));
  }

  /** im2col patches `X [N, Ho·Wo, kh·kw·inC]` (kernel order (i, j, c)). */
  unfoldInput(rec: ForwardRecord): tf.Tensor3D {
    return extractPatches(rec.input as tf.Tensor4D, this.inGeometry(rec));
  }

  foldOutput(mat: tf.Tensor): tf.Tensor4D {
    const [V, N, Ho, Wo, O] = mat.shape as [number, number, number, number, number];
    if (mat.rank !== 5 || O !== this.kernel.shape[3]) {
      throw new Error(
        `${this.kind}: foldOutput expects a stack [V, N, Ho, Wo, ${this.kernel.shape[3]}], got [${mat.shape.join(', ')}].`,
      );
    }
    return tf.reshape(mat, [V, N, Ho * Wo, O]);
  }

  unfoldOutput(mat: tf.Tensor4D, outShape: readonly number[]): tf.Tensor {
    return tf.reshape(mat, [mat.shape[0], mat.shape[1], ...outShape]);
  }

  paramJacMatProd(rec: ForwardRecord, role: ParamRole, v: tf.Tensor): tf.Tensor {
    const N = rec.input.shape[0] as number;
    const outShape = rec.output.shape.slice(1) as [number, number, number];
    const O = this.kernel.shape[3] as number;
    const V = v.shape[0] as number;
    return tf.tidy(() => {
      if (role === 'bias') {
        if (v.size !== V * O) {
          throw new Error(`${this.kind}: paramJacMatProd(bias) expects [V, ${O}], got [${v.shape.join(', ')}].`);
        }
        return tf.broadcastTo(tf.reshape(v, [V, 1, 1, 1, O]), [V, N, ...outShape]);
      }
      const [kh, kw, inC] = this.kernel.shape as [number, number, number, number];
      if (v.size !== V * this.kernel.size) {
        throw new Error(
          `${this.kind}: paramJacMatProd(kernel) expects [V, ${this.kernel.shape.join(', ')}], got [${v.shape.join(', ')}].`,
        );
      }
      // Fold V into the filters: K_v [kh, kw, inC, V·O]; y [N, Ho, Wo, V·O] → [V, N, Ho, Wo, O].
      const kv = tf.reshape(tf.transpose(tf.reshape(v, [V, kh, kw, inC, O]), [1, 2, 3, 0, 4]), [kh, kw, inC, V * O]);
      const y = this.conv(rec.input as tf.Tensor4D, kv as tf.Tensor4D);
      if (V === 1) return tf.reshape(y, [1, N, ...outShape]);
      return tf.transpose(tf.reshape(y, [N, outShape[0], outShape[1], V, O]), [3, 0, 1, 2, 4]);
    });
  }
}
