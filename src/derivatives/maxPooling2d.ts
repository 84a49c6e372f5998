/**
 * MaxPooling2D (NHWC): `y[n, t, c] = max_k x_pad[n, window_t(k), c]`, with
 * 'same' padding by −∞ (TF). The Jacobian routes each output to the FIRST
 * maximal element of its window in row-major (h, w) order (FORMAT.md §6.2;
 * ties happen after a ReLU: all-zero windows).
 *
 * forward saves `argmax [N, Ho, Wo, C]` (int32): the flat index
 * `(h·W + w)·C + c` into one sample's input of the element each output
 * comes from. jacMatProd gathers with it; jacTMatProd scatter-adds
 * (overlapping windows send several outputs to one input: duplicates add up).
 *
 * The argmax is the first maximal window element (k = i·kw + j): on wasm
 * and cpu one ArgMax over the windows (depthwise identity conv, exact
 * copies of x, padded with −FLT_MAX), whose kernels there return the first
 * maximum; elsewhere, without relying on a backend's tie-breaking, the
 * windows are compared with y = maxPool(x) for equality (see firstArgmax).
 * Index arithmetic is float32 on exact integers (< 2^24), in chunks of the
 * stack where needed; jacMatProd is a gatherND, jacTMatProd a scatterND
 * (wasm: both ~1 ms per 200k entries, GatherV2 ~30× slower).
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, ModuleDerivatives } from './types';
import { assertStack, makeRecord } from './record';
import { Pooling2DDerivatives, windowValidity, windowsChannelMajor, type Pooling2DOptions, type WindowGeometry } from './im2col';

/** The most negative finite float32 (pads windows below every finite input). */
const FLT_MAX = 3.4028234663852886e38;

export class MaxPooling2DDerivatives extends Pooling2DDerivatives implements ModuleDerivatives {
  readonly kind = 'MaxPooling2D';
  /** Largest flat index span handled in one float32 index computation (2^24; lowered only by tests). */
  static indexSpan = 2 ** 24;
  /** Backends whose ArgMax kernel returns the first maximum (others take the equality route; emptied only by tests). */
  static firstArgMaxBackends: readonly string[] = ['wasm', 'cpu'];

  constructor(options: Pooling2DOptions, where = 'MaxPooling2D') {
    super(options, where);
  }

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    const g = this.geometry(x.shape.slice(1));
    const perSample = x.size / (x.shape[0] as number);
    if (perSample >= MaxPooling2DDerivatives.indexSpan) {
      throw new Error(
        `${this.where}: inputs with ${perSample} ≥ 2^24 entries per sample are not supported (float32 index arithmetic); use smaller inputs.`,
      );
    }
    const { poolSize, strides, padding } = this.options;
    const y = tf.maxPool(x as tf.Tensor4D, poolSize as [number, number], strides as [number, number], padding);
    const argmax = tf.tidy(() => tf.cast(this.firstArgmax(x as tf.Tensor4D, y, g), 'int32'));
    return makeRecord(x, y, { argmax });
  }

  /**
   * Flat per-sample input index of the first maximal element of every window,
   * `[N, Ho, Wo, C]` as exact float32 integers (< 2^24).
   *
   * wasm and cpu: the windows (padded with −FLT_MAX, below every finite
   * input, as TF pads max pooling with −∞) go through ArgMax over the K
   * window elements, whose kernels on these backends return the FIRST
   * maximum (strict `>` scan). Other backends (tie-breaking unspecified):
   * the windows are compared with y = maxPool(x) for equality and the first
   * match is `K − max_k(eq_k · (K − k))`. Float arithmetic throughout: wasm's
   * int32 and boolean binary ops with broadcasting are 20–200× slower than
   * its float ones. Windows without a finite maximum (NaN, all −∞) get some
   * index inside the input.
   */
  private firstArgmax(x: tf.Tensor4D, y: tf.Tensor4D, g: WindowGeometry): tf.Tensor {
    const N = x.shape[0];
    const { h, w } = g;
    const C = g.channels;
    const T = h.out * w.out;
    const K = h.window * w.window;
    let kStar: tf.Tensor; // [N, T, C], window element of the first maximum
    if (MaxPooling2DDerivatives.firstArgMaxBackends.includes(tf.getBackend())) {
      const win = tf.reshape(windowsChannelMajor(x, g, -FLT_MAX), [N * T * C, K]);
      kStar = tf.reshape(tf.cast(tf.argMax(win, 1), 'float32'), [N, T, C]);
    } else {
      const win = tf.reshape(windowsChannelMajor(x, g), [N, T, C, K]);
      // win ≤ y, so eq = [win − y ≥ 0] = 1 − step(y − win) (step(z) = z > 0 ? 1 : 0).
      let eq = tf.sub(1, tf.step(tf.sub(tf.reshape(y, [N, T, C, 1]), win)));
      if (g.padded) {
        // Zero-padded cells never count (TF pads max pooling with −∞).
        eq = tf.mul(eq, tf.tensor4d(windowValidity(g), [1, T, 1, K]));
      }
      const rank = tf.tensor1d(Float32Array.from({ length: K }, (_, k) => K - k));
      kStar = tf.minimum(tf.sub(K, tf.max(tf.mul(eq, rank), 3)), K - 1);
    }
    const i = tf.floorDiv(kStar, tf.scalar(w.window));
    const j = tf.sub(kStar, tf.mul(i, w.window));
    // Window origin of output t in the unpadded input, as a flat index: ((ho·sh − pt)·W + wo·sw − pl)·C + c.
    const base = new Float32Array(T * C);
    for (let ho = 0; ho < h.out; ho++) {
      for (let wo = 0; wo < w.out; wo++) {
        const origin = ((ho * h.stride - h.padBefore) * w.size + (wo * w.stride - w.padBefore)) * C;
        for (let c = 0; c < C; c++) base[(ho * w.out + wo) * C + c] = origin + c;
      }
    }
    const offset = tf.mul(tf.add(tf.mul(i, w.size), j), C);
    // Clamped into the input: only windows without a finite maximum could point into the padding.
    const idx = tf.clipByValue(tf.add(tf.tensor3d(base, [1, T, C]), offset), 0, h.size * w.size * C - 1);
    return tf.reshape(idx, [N, h.out, w.out, C]);
  }

  /**
   * The stack rows `r = v·N + n` of `[V·N, inSize]` in chunks whose flat
   * indices `(r − r0)·inSize + argmax` stay below 2^24 (exact in float32):
   * `{ r0, rows, idx }` with idx int32 `[rows·P, 1]`.
   */
  private *indexChunks(rec: ForwardRecord, V: number): Generator<{ r0: number; rows: number; idx: tf.Tensor2D }> {
    const argmax = rec.saved.argmax as tf.Tensor;
    const N = argmax.shape[0] as number;
    const P = argmax.size / N;
    const inSize = rec.input.size / N;
    const span = Math.max(1, Math.floor(MaxPooling2DDerivatives.indexSpan / inSize));
    const a = tf.tidy(() => tf.reshape(tf.cast(argmax, 'float32'), [1, N, P]));
    try {
      if (span >= N) {
        // Whole stack entries (all N samples) per chunk.
        const vPer = Math.floor(span / N);
        for (let v0 = 0; v0 < V; v0 += vPer) {
          const vc = Math.min(vPer, V - v0);
          const idx = tf.tidy(() => {
            const rowOff = tf.reshape(tf.range(0, vc * N * inSize, inSize, 'float32'), [vc, N, 1]);
            return tf.reshape(tf.cast(tf.add(a, rowOff), 'int32'), [vc * N * P, 1]) as tf.Tensor2D;
          });
          try {
            yield { r0: v0 * N, rows: vc * N, idx };
          } finally {
            idx.dispose();
          }
        }
      } else {
        for (let v = 0; v < V; v++) {
          for (let n0 = 0; n0 < N; n0 += span) {
            const nc = Math.min(span, N - n0);
            const idx = tf.tidy(() => {
              const rowOff = tf.reshape(tf.range(0, nc * inSize, inSize, 'float32'), [1, nc, 1]);
              const part = tf.slice(a, [0, n0, 0], [1, nc, P]);
              return tf.reshape(tf.cast(tf.add(part, rowOff), 'int32'), [nc * P, 1]) as tf.Tensor2D;
            });
            try {
              yield { r0: v * N + n0, rows: nc, idx };
            } finally {
              idx.dispose();
            }
          }
        }
      }
    } finally {
      a.dispose();
    }
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacMatProd', mat, rec.input);
    const [V, N] = mat.shape as [number, number];
    const inSize = rec.input.size / N;
    const parts: tf.Tensor[] = [];
    try {
      for (const { r0, rows, idx } of this.indexChunks(rec, V)) {
        parts.push(
          tf.tidy(() => {
            const all = tf.reshape(mat, [V * N * inSize]);
            const src = rows === V * N ? all : tf.slice(all, [r0 * inSize], [rows * inSize]);
            return tf.gatherND(src, idx);
          }),
        );
      }
      return tf.tidy(() => tf.reshape(parts.length === 1 ? (parts[0] as tf.Tensor) : tf.concat(parts), [V, N, ...rec.output.shape.slice(1)]));
    } finally {
      tf.dispose(parts);
    }
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacTMatProd', mat, rec.output);
    const [V, N] = mat.shape as [number, number];
    const inSize = rec.input.size / N;
    const P = mat.size / (V * N);
    const parts: tf.Tensor[] = [];
    try {
      for (const { r0, rows, idx } of this.indexChunks(rec, V)) {
        parts.push(
          tf.tidy(() => {
            const all = tf.reshape(mat, [V * N * P]);
            const upd = rows === V * N ? all : tf.slice(all, [r0 * P], [rows * P]);
            // ScatterNd adds duplicate indices (overlapping windows).
            return tf.scatterND(idx, upd, [rows * inSize]);
          }),
        );
      }
      return tf.tidy(() => tf.reshape(parts.length === 1 ? (parts[0] as tf.Tensor) : tf.concat(parts), [V, N, ...rec.input.shape.slice(1)]));
    } finally {
      tf.dispose(parts);
    }
  }
}
