/**
 * First-order conformance: loss, grad, batch_grad, batch_l2_grad,
 * sum_grad_squared, variance.
 *
 * Tolerance 1e-4 relative to the reference's max magnitude: float32 forward
 * and backward on these tiny nets give ~1e-6; 1e-4 (FORMAT.md §8) leaves room
 * for deeper nets and accumulated rounding. Variance is a difference of
 * nearly equal numbers, so its error is scaled by max(sum_grad_squared)/N as
 * FORMAT.md §6 prescribes.
 */
import type * as tf from '@tensorflow/tfjs';
import { BatchGrad, BatchL2Grad, SumGradSquared, Variance } from '../../../extensions/firstorder/index';
import type { Extension } from '../../../src/engine/extension';
import { maxAbs, maxErrScaled, maxRelErr, sameShape } from '../compare';
import type { LoadedFixture, T } from '../fixture';
import { fixtureQuantity, hasQuantity, judge, type Outcome, type QuantityCheck } from './types';

export const TOL_FIRST_ORDER = 1e-4;

/** Compare one extension's per-parameter results with a fixture list. */
export function compareParamList(
  lf: LoadedFixture,
  actual: (tf.Tensor | undefined)[],
  expected: T[],
  tol: number,
  errOf: (a: Float32Array | Int32Array | Uint8Array, e: number[], i: number) => number = (a, e) => maxRelErr(a, e),
): Outcome {
  const errs: number[] = [];
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i] as T;
    if (a === undefined) return { status: 'fail', note: `no result for ${lf.fx.params[i]?.name}` };
    if (!sameShape(a.shape, e.shape)) {
      return { status: 'fail', note: `${lf.fx.params[i]?.name}: shape [${a.shape}] vs reference [${e.shape}]` };
    }
    errs.push(errOf(a.dataSync(), e.data, i));
  }
  return judge(errs, tol);
}

/** Run one extension on the fixture batch and compare each parameter's result. */
function extensionCheck(
  name: string,
  make: () => Extension<tf.Tensor>,
  tol: number,
  errOf?: (a: ArrayLike<number>, e: number[], i: number, lf: LoadedFixture) => number,
): QuantityCheck {
  return {
    name,
    present: hasQuantity(name),
    run(lf) {
      const ext = make();
      const r = lf.ext.backward(lf.x, lf.y, { extensions: [ext], training: false });
      try {
        const actual = lf.params.map((p) => (r.has(ext, p) ? r.get(ext, p) : undefined));
        return compareParamList(lf, actual, fixtureQuantity<T[]>(lf, name), tol, errOf ? (a, e, i) => errOf(a, e, i, lf) : undefined);
      } finally {
        r.dispose();
      }
    },
  };
}

export const firstOrderChecks: QuantityCheck[] = [
  {
    name: 'loss',
    present: hasQuantity('loss'),
    run(lf) {
      const r = lf.ext.backward(lf.x, lf.y, { training: false });
      const e = fixtureQuantity<number>(lf, 'loss');
      r.dispose();
      return judge([Math.abs(r.loss - e) / Math.abs(e)], TOL_FIRST_ORDER);
    },
  },
  {
    name: 'grad',
    present: hasQuantity('grad'),
    run(lf) {
      const r = lf.ext.backward(lf.x, lf.y, { training: false });
      try {
        return compareParamList(lf, lf.params.map((p) => r.grad(p)), fixtureQuantity<T[]>(lf, 'grad'), TOL_FIRST_ORDER);
      } finally {
        r.dispose();
      }
    },
  },
  extensionCheck('batch_grad', () => new BatchGrad(), TOL_FIRST_ORDER),
  extensionCheck('batch_l2_grad', () => new BatchL2Grad(), TOL_FIRST_ORDER),
  extensionCheck('sum_grad_squared', () => new SumGradSquared(), TOL_FIRST_ORDER),
  extensionCheck('variance', () => new Variance(), TOL_FIRST_ORDER, (a, e, i, lf) => {
    const sgs = fixtureQuantity<T[]>(lf, 'sum_grad_squared')[i] as T;
    const N = lf.fx.inputs.shape[0] as number;
    return maxErrScaled(a, e, maxAbs(sgs.data) / N);
  }),
];
