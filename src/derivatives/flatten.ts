/**
 * Flatten: `[N, ...shape] → [N, prod(shape)]` in TF.js (row-major, HWC for
 * images) order. A reshape: Jᵀ and J reshape the stack.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardOptions, ForwardRecord, ModuleDerivatives, ModuleParam } from './types';
import { assertStack, makeRecord, product } from './record';

/** Shared by Flatten and Reshape: a module that only reshapes. */
export abstract class ReshapeLikeDerivatives implements ModuleDerivatives {
  abstract readonly kind: string;
  readonly params: readonly ModuleParam[] = [];

  abstract outputShape(inShape: readonly number[]): number[];

  forward(x: tf.Tensor, _opts: ForwardOptions): ForwardRecord {
    const N = x.shape[0] as number;
    // A reshape is a new tensor object (shared data): the record never aliases its input.
    return makeRecord(x, tf.reshape(x, [N, ...this.outputShape(x.shape.slice(1))]));
  }

  jacMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacMatProd', mat, rec.input);
    return tf.reshape(mat, [mat.shape[0] as number, ...rec.output.shape]);
  }

  jacTMatProd(rec: ForwardRecord, mat: tf.Tensor): tf.Tensor {
    assertStack(this.kind, 'jacTMatProd', mat, rec.output);
    return tf.reshape(mat, [mat.shape[0] as number, ...rec.input.shape]);
  }
}

export class FlattenDerivatives extends ReshapeLikeDerivatives {
  readonly kind = 'Flatten';

  outputShape(inShape: readonly number[]): number[] {
    return [product(inShape)];
  }
}
