/**
 * ZeroPadding2D (NHWC): pads H by [top, bottom] and W by [left, right] zeros.
 * jacMatProd pads the stack, jacTMatProd crops it.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, ModuleDerivatives, ModuleParam } from './types';
import { assertStack, makeRecord } from './record';

/** `p`, `[ph, pw]` or `[[top, bottom], [left, right]]` (tf.layers.zeroPadding2d's forms) → `[[t, b], [l, r]]`. */
export function normalizePadding2D(padding: unknown, where: string): [[number, number], [number, number]] {
  const ok = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
  if (ok(padding)) return [[padding, padding], [padding, padding]];
  if (Array.isArray(padding) && padding.length === 2) {
    const [a, b] = padding as unknown[];
    if (ok(a) && ok(b)) return [[a, a], [b, b]];
    if (Array.isArray(a) && Array.isArray(b) && a.length === 2 && b.length === 2 && [...a, ...b].every(ok)) {
      return [[a[0], a[1]], [b[0], b[1]]];
    }
  }
  throw new Error(
    `${where}: option padding ${JSON.stringify(padding)} is not valid; use p, [ph, pw] or [[top, bottom], [left, right]] with non-negative integers.`,
  );
}

export class ZeroPadding2DDerivatives implements ModuleDerivatives {
  readonly kind = 'ZeroPadding2D';
  readonly params: readonly ModuleParam[] = [];
  readonly padding: [[number, number], [number, number]];

  constructor(
    padding: unknown,
    private readonly where = 'ZeroPadding2D',
  ) {
    this.padding = normalizePadding2D(padding, where);
  }

  outputShape(inShape: readonly number[]): number[] {
    if (inShape.length !== 3) {
      throw new Error(`${this.where}: expects inputs [N, height, width, channels], got an input of shape [N, ${inShape.join(', ')}].`);
    }
    const [[t, b], [l, r]] = this.padding;
    return [(inShape[0] as number) + t + b, (inShape[1] as number) + l + r, inShape[2] as number];
  }

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    this.outputShape(x.shape.slice(1));
    const [hp, wp] = this.padding;
    return makeRecord(x, tf.pad(x, [[0, 0], hp, wp, [0, 0]]));
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacMatProd', mat, rec.input);
    const [hp, wp] = this.padding;
    return tf.pad(mat, [[0, 0], [0, 0], hp, wp, [0, 0]]);
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacTMatProd', mat, rec.output);
    const [, H, W] = rec.input.shape as [number, number, number, number];
    const [[t], [l]] = this.padding;
    return tf.slice(mat, [0, 0, t, l, 0], [-1, -1, H, W, -1]);
  }
}
