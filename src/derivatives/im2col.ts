/**
 * Sliding-window geometry shared by Conv2D and the pooling layers (NHWC),
 * with TF's padding semantics, and the two window primitives built on it:
 *
 * - `extractPatches`: im2col, `x [N, H, W, C] → [N, Ho, Wo, K·C]` (window
 *   element k = i·kw + j outermost, channel innermost: the row-major order of
 *   a conv kernel `[kh, kw, C, O]` flattened to `[kh·kw·C, O]`).
 * - `transposedWindowConv`: the adjoint of a windowed op (conv / depthwise
 *   conv with a given kernel) as a stride-1 conv of the zero-upsampled
 *   output with the flipped kernel.
 *
 * `Pooling2DDerivatives` is the common frame (checked options, geometry,
 * output shape) of MaxPooling2D and AveragePooling2D.
 *
 * Why convolutions and not `tf.gather` / `tf.conv2dTranspose` (measured on
 * wasm, 2 cores, conv 5×5 'same' 32→64 on 14×14, N = 32): a gather of the
 * 5M patch entries takes ~135 ms (GatherV2 is an element loop), the
 * depthwise identity conv + transpose ~19 ms; Conv2DBackpropInput (used by
 * conv2dTranspose) takes ~140 ms where the flipped-kernel conv2d takes
 * ~15 ms. Both replacements are exact: an identity-kernel conv computes
 * `1·x + Σ 0·x'` (exact for finite inputs), and the adjoint is an algebraic
 * identity.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModuleParam } from './types';

export type WindowPadding = 'valid' | 'same';

/** One axis of a window: input length, window size, stride, dilation, padding, output length. */
export interface AxisGeometry {
  readonly size: number;
  readonly window: number;
  readonly stride: number;
  readonly dilation: number;
  /** Effective (dilated) window extent `(window − 1)·dilation + 1`. */
  readonly extent: number;
  readonly out: number;
  readonly padBefore: number;
  readonly padAfter: number;
}

export interface WindowGeometry {
  readonly h: AxisGeometry;
  readonly w: AxisGeometry;
  readonly channels: number;
  readonly padding: WindowPadding;
  /** True when some window reaches into the padding. */
  readonly padded: boolean;
}

/**
 * TF semantics: 'valid' `out = floor((size − extent)/stride) + 1`;
 * 'same' `out = ceil(size/stride)`, `padTotal = max((out − 1)·stride + extent − size, 0)`,
 * `padBefore = floor(padTotal/2)` (the extra row/column goes after).
 */
export function axisGeometry(
  size: number,
  window: number,
  stride: number,
  dilation: number,
  padding: WindowPadding,
): AxisGeometry {
  const extent = (window - 1) * dilation + 1;
  if (padding === 'valid') {
    const out = Math.floor((size - extent) / stride) + 1;
    return { size, window, stride, dilation, extent, out, padBefore: 0, padAfter: 0 };
  }
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + extent - size, 0);
  const padBefore = Math.floor(total / 2);
  return { size, window, stride, dilation, extent, out, padBefore, padAfter: total - padBefore };
}

/** Geometry of windows `window` over an input `[H, W, C]`; throws naming `where` when no window fits. */
export function windowGeometry(
  where: string,
  inShape: readonly number[],
  window: readonly [number, number],
  strides: readonly [number, number],
  dilation: readonly [number, number],
  padding: WindowPadding,
): WindowGeometry {
  if (inShape.length !== 3) {
    throw new Error(`${where}: expects inputs [N, height, width, channels], got an input of shape [N, ${inShape.join(', ')}].`);
  }
  const [H, W, C] = inShape as [number, number, number];
  const h = axisGeometry(H, window[0], strides[0], dilation[0], padding);
  const w = axisGeometry(W, window[1], strides[1], dilation[1], padding);
  if (h.out < 1 || w.out < 1) {
    throw new Error(
      `${where}: the input of spatial size ${H}×${W} is smaller than the window ${h.extent}×${w.extent} (padding 'valid'); use larger inputs or padding 'same'.`,
    );
  }
  const padded = h.padBefore + h.padAfter + w.padBefore + w.padAfter > 0;
  return { h, w, channels: C, padding, padded };
}

/** `[[0, 0], [top, bottom], [left, right], [0, 0]]` for TF.js ops taking explicit padding. */
export function explicitPadding(g: WindowGeometry): [[number, number], [number, number], [number, number], [number, number]] {
  return [[0, 0], [g.h.padBefore, g.h.padAfter], [g.w.padBefore, g.w.padAfter], [0, 0]];
}

// Identity kernels of the patch extraction, one per (kh, kw, C): JS arrays
// (a cached tensor would outlive tf.tidy scopes and count as a leak).
const identityKernels = new Map<string, Float32Array>();
const MAX_CACHED = 32;

/** `E [kh, kw, C, K]` with `E[i, j, c, m] = δ(m, i·kw + j)`: depthwise conv with E copies window element m. */
function identityKernel(kh: number, kw: number, C: number): tf.Tensor4D {
  const key = `${kh},${kw},${C}`;
  let data = identityKernels.get(key);
  if (data === undefined) {
    const K = kh * kw;
    data = new Float32Array(K * C * K);
    for (let m = 0; m < K; m++) for (let c = 0; c < C; c++) data[(m * C + c) * K + m] = 1;
    if (identityKernels.size >= MAX_CACHED) identityKernels.delete(identityKernels.keys().next().value as string);
    identityKernels.set(key, data);
  }
  return tf.tensor4d(data, [kh, kw, C, kh * kw]);
}

/**
 * Windows of x, channel-major: `[N, Ho, Wo, C·K]`, entry
 * `[n, ho, wo, c·K + k]` = padded input at window element k = i·kw + j.
 * Padding by zeros, or by the finite `padValue` (the input is padded
 * explicitly first; an identity-kernel conv stays exact: `1·p + Σ 0·x'`).
 */
export function windowsChannelMajor(x: tf.Tensor4D, g: WindowGeometry, padValue = 0): tf.Tensor4D {
  return tf.tidy(() => {
    const explicit = g.padded && padValue !== 0;
    return tf.depthwiseConv2d(
      explicit ? (tf.pad(x, explicitPadding(g), padValue) as tf.Tensor4D) : x,
      identityKernel(g.h.window, g.w.window, g.channels),
      [g.h.stride, g.w.stride],
      g.padded && !explicit ? explicitPadding(g) : 'valid',
      'NHWC',
      [g.h.dilation, g.w.dilation],
    );
  });
}

/** im2col: `x [N, H, W, C] → [N, Ho·Wo, kh·kw·C]` in the kernel's (i, j, c) row-major order. */
export function extractPatches(x: tf.Tensor4D, g: WindowGeometry): tf.Tensor3D {
  return tf.tidy(() => {
    const N = x.shape[0];
    const T = g.h.out * g.w.out;
    const K = g.h.window * g.w.window;
    const C = g.channels;
    const win = windowsChannelMajor(x, g); // [N, Ho, Wo, C·K]
    if (C === 1 || K === 1) return tf.reshape(win, [N, T, K * C]);
    const kc = tf.transpose(tf.reshape(win, [N * T, C, K]), [0, 2, 1]); // [N·T, K, C]
    return tf.reshape(kc, [N, T, K * C]);
  });
}

/** Validity of each window element `[T, K]` (1 inside the input, 0 in the padding), row-major. */
export function windowValidity(g: WindowGeometry): Float32Array {
  const K = g.h.window * g.w.window;
  const out = new Float32Array(g.h.out * g.w.out * K);
  for (let ho = 0; ho < g.h.out; ho++) {
    for (let wo = 0; wo < g.w.out; wo++) {
      for (let i = 0; i < g.h.window; i++) {
        const r = ho * g.h.stride - g.h.padBefore + i * g.h.dilation;
        for (let j = 0; j < g.w.window; j++) {
          const c = wo * g.w.stride - g.w.padBefore + j * g.w.dilation;
          const ok = r >= 0 && r < g.h.size && c >= 0 && c < g.w.size;
          out[(ho * g.w.out + wo) * K + i * g.w.window + j] = ok ? 1 : 0;
        }
      }
    }
  }
  return out;
}

/**
 * `P [K, K]` with ones on the anti-diagonal: `P × M` reverses the K rows of M
 * (exact for finite entries: each output is `1·m + Σ 0·m'`).
 */
function reversal(K: number): tf.Tensor2D {
  const data = new Float32Array(K * K);
  for (let k = 0; k < K; k++) data[k * K + (K - 1 - k)] = 1;
  return tf.tensor2d(data, [K, K]);
}

/**
 * The kernel of the adjoint conv: `K [kh, kw, Cin, Cout] → K' [kh, kw, Cout, Cin]`
 * rotated by 180° in (kh, kw). For a depthwise kernel `[kh, kw, C, 1]` pass
 * `depthwise` (only the rotation). The rotation reverses the kh·kw rows of
 * the kernel viewed as `[kh·kw, Cin·Cout]`: one small matMul with the
 * reversal permutation (wasm's Reverse is an element loop, ~4× slower);
 * exact for finite kernels.
 */
export function flipKernel(kernel: tf.Tensor4D, depthwise = false): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw, C, O] = kernel.shape;
    const K = kh * kw;
    const swapped = depthwise || C === 1 || O === 1 ? kernel : tf.transpose(kernel, [0, 1, 3, 2]);
    const rows = K === 1 ? swapped : tf.matMul(reversal(K), tf.reshape(swapped, [K, C * O]));
    return tf.reshape(rows, depthwise ? [kh, kw, C, O] : [kh, kw, O, C]) as tf.Tensor4D;
  });
}

/**
 * Kernel products of a conv (geometry g, kernel `[kh, kw, C, ·]`) summed over
 * the batch, as ONE convolution: for an output stack `D [V, N, Ho, Wo, O]`,
 * `G[v, i, j, c, o] = Σ_{n,ho,wo} x_pad[n, ho·s + i·d, wo·s + j·d, c] · D[v, n, ho, wo, o]`
 * → `[V, kh, kw, C, O]` (V = 1: the kernel gradient).
 *
 * Read as a conv over (i, j): input `x'[c, h, w, n] = x_pad[n, h, w, c]` (the
 * channels C become the batch, the samples N the input channels), filter
 * `F[ho, wo, n, (v, o)] = D[v, n, ho, wo, o]`, stride d (the layer's
 * dilation) and dilation s (the layer's stride): `conv2d(x', F) [C, kh, kw, V·O]`.
 * Padding: the layer's before-padding, and after it only what the windows
 * reach (`(kh − 1)·d + (Ho − 1)·s + 1` rows in all; the output is cut to
 * kh×kw when the input has rows no window reaches). Same flops as im2col +
 * matMul without forming the patches (wasm, 32→64 channels 5×5 on 14×14,
 * N = 32: 19 ms instead of 45 ms).
 */
export function convKernelProduct(x: tf.Tensor4D, D: tf.Tensor, g: WindowGeometry): tf.Tensor {
  return tf.tidy(() => {
    const [N, H, W, C] = x.shape;
    const [V, , Ho, Wo, O] = D.shape as [number, number, number, number, number];
    const kh = g.h.window;
    const kw = g.w.window;
    const after = (a: AxisGeometry, size: number, out: number) =>
      Math.max(0, (a.window - 1) * a.dilation + (out - 1) * a.stride + 1 - size - a.padBefore);
    const xT = tf.transpose(x, [3, 1, 2, 0]) as tf.Tensor4D; // [C, H, W, N]
    const F = (
      V === 1 ? tf.transpose(tf.reshape(D, [N, Ho, Wo, O]), [1, 2, 0, 3]) : tf.reshape(tf.transpose(D, [2, 3, 1, 0, 4]), [Ho, Wo, N, V * O])
    ) as tf.Tensor4D; // [Ho, Wo, N, V·O]
    const pad: [[number, number], [number, number], [number, number], [number, number]] = [
      [0, 0],
      [g.h.padBefore, after(g.h, H, Ho)],
      [g.w.padBefore, after(g.w, W, Wo)],
      [0, 0],
    ];
    let out = tf.conv2d(xT, F, [g.h.dilation, g.w.dilation], pad, 'NHWC', [g.h.stride, g.w.stride]); // [C, ≥kh, ≥kw, V·O]
    if (out.shape[1] !== kh || out.shape[2] !== kw) out = tf.slice(out, [0, 0, 0, 0], [C, kh, kw, V * O]);
    if (V === 1) return tf.reshape(tf.transpose(out, [1, 2, 0, 3]), [1, kh, kw, C, O]);
    return tf.transpose(tf.reshape(out, [C, kh, kw, V, O]), [3, 1, 2, 0, 4]);
  });
}

/**
 * Adjoint of the windowed op with geometry g: `gOut [B, Ho, Wo, Ch] → [B, H, W, Ch']`,
 * given the flipped kernel (`flipKernel`). With `y[ho] = Σ_i K[i] x[ho·s + i·d − p]`,
 * `xᵀ[h] = Σ_i K[k−1−i] u[h − (extent − 1 − p) + i·d]` where u is gOut with
 * s − 1 zeros inserted after every entry: a stride-1 conv (dilation d) of u with the
 * flipped kernel and padding `extent − 1 − p` before (and what makes the output
 * H long after; never negative beyond the inserted trailing zeros).
 */
export function transposedWindowConv(
  gOut: tf.Tensor4D,
  flipped: tf.Tensor4D,
  g: WindowGeometry,
  depthwise: boolean,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, Ho, Wo, Ch] = gOut.shape;
    let u: tf.Tensor4D = gOut;
    const sh = g.h.stride;
    const sw = g.w.stride;
    if (sh > 1 || sw > 1) {
      const r6 = tf.reshape(gOut, [B, Ho, 1, Wo, 1, Ch]);
      const p6 = tf.pad(r6, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
      u = tf.reshape(p6, [B, Ho * sh, Wo * sw, Ch]);
    }
    const pads = (a: AxisGeometry, len: number): [number, number, number] => {
      const before = a.extent - 1 - a.padBefore;
      const after = a.size + a.extent - 1 - len - before;
      // after < 0 only drops trailing inserted zeros (at most stride − 1 of them).
      return after >= 0 ? [before, after, len] : [before, 0, len + after];
    };
    const [tH, bH, lenH] = pads(g.h, u.shape[1]);
    const [tW, bW, lenW] = pads(g.w, u.shape[2]);
    if (lenH !== u.shape[1] || lenW !== u.shape[2]) u = tf.slice(u, [0, 0, 0, 0], [B, lenH, lenW, Ch]);
    const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [tH, bH], [tW, bW], [0, 0]];
    const dil: [number, number] = [g.h.dilation, g.w.dilation];
    return depthwise
      ? tf.depthwiseConv2d(u, flipped, 1, pad, 'NHWC', dil)
      : tf.conv2d(u, flipped, 1, pad, 'NHWC', dil);
  });
}

/** `number | number[]` layer options as a pair. */
export function asPair(v: unknown, name: string, where: string): [number, number] {
  const arr = typeof v === 'number' ? [v, v] : Array.isArray(v) ? (v.length === 1 ? [v[0], v[0]] : v) : undefined;
  if (arr === undefined || arr.length !== 2 || !arr.every((d) => Number.isInteger(d) && (d as number) >= 1)) {
    throw new Error(`${where}: option '${name}' must be a positive integer or a pair of them, got ${JSON.stringify(v)}.`);
  }
  return [arr[0] as number, arr[1] as number];
}

/** Options shared by MaxPooling2D and AveragePooling2D. */
export interface Pooling2DOptions {
  readonly poolSize: readonly [number, number];
  readonly strides: readonly [number, number];
  readonly padding: WindowPadding;
}

/** The frame of MaxPooling2D and AveragePooling2D: checked options, window geometry, output shape. */
export abstract class Pooling2DDerivatives {
  readonly params: readonly ModuleParam[] = [];

  constructor(
    readonly options: Pooling2DOptions,
    protected readonly where: string,
  ) {
    if (options.padding !== 'valid' && options.padding !== 'same') {
      throw new Error(`${where}: option padding '${String(options.padding)}' is not supported; use 'valid' or 'same'.`);
    }
  }

  /** Window geometry on an input `[H, W, C]`. */
  geometry(inShape: readonly number[]): WindowGeometry {
    return windowGeometry(this.where, inShape, this.options.poolSize, this.options.strides, [1, 1], this.options.padding);
  }

  outputShape(inShape: readonly number[]): number[] {
    const g = this.geometry(inShape);
    return [g.h.out, g.w.out, g.channels];
  }
}
