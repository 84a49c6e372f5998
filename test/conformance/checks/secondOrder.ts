/**
 * Second-order conformance (part A): diag_ggn_exact, batch_diag_ggn_exact,
 * sqrt_ggn_exact, output_jacobian, diag_hessian.
 *
 * Errors are max |a − e| / max |e| per parameter (FORMAT.md §8), float32
 * results against float64 references.
 *  - TOL_DIRECT = 1e-4 for the GGN quantities and the output Jacobian: each is
 *    the loss factor times a few float32 Jacobian-transpose products
 *    (relative rounding ~1e-7 per op). Measured on wasm over all 13 fixtures:
 *    ≤ 3.9e-7 (diag_ggn_exact 3.4e-7, batch_diag_ggn_exact 3.9e-7,
 *    sqrt_ggn_exact 2.1e-7, output_jacobian 2.1e-7). 1e-4 (FORMAT.md §8,
 *    as for the first-order quantities) leaves room for backends with other
 *    summation orders; a wrong factor or normalisation gives errors ≥ 1e-1.
 *  - TOL_DIAG_HESSIAN = 1e-4: the residual factors add one more float32
 *    product per nonlinear layer; measured ≤ 9.3e-7 (mlp_tanh_sigmoidce_mean),
 *    so the fixtures' nets need no looser tolerance. The residual terms
 *    change diag_hessian by 20–160% relative to diag_ggn_exact on the
 *    tanh/sigmoid/elu fixtures, so a missing or wrong residual cannot pass.
 */
import type * as tf from '@tensorflow/tfjs';
import {
  BatchDiagGGNExact,
  DiagGGNExact,
  DiagHessian,
  OutputJacobian,
  SqrtGGNExact,
} from '../../../extensions/secondorder/index';
import type { Extension } from '../../../src/engine/extension';
import type { LoadedFixture, T } from '../fixture';
import { compareParamList } from './firstOrder';
import { fixtureQuantity, hasQuantity, type QuantityCheck } from './types';

export const TOL_DIRECT = 1e-4;
export const TOL_DIAG_HESSIAN = 1e-4;

function extensionCheck(name: string, make: () => Extension<tf.Tensor>, tol: number): QuantityCheck {
  return {
    name,
    present: hasQuantity(name),
    run(lf: LoadedFixture) {
      const ext = make();
      const r = lf.ext.backward(lf.x, lf.y, { extensions: [ext], training: false });
      try {
        const actual = lf.params.map((p) => (r.has(ext, p) ? r.get(ext, p) : undefined));
        return compareParamList(lf, actual, fixtureQuantity<T[]>(lf, name), tol);
      } finally {
        r.dispose();
      }
    },
  };
}

export const secondOrderChecks: QuantityCheck[] = [
  extensionCheck('diag_ggn_exact', () => new DiagGGNExact(), TOL_DIRECT),
  extensionCheck('batch_diag_ggn_exact', () => new BatchDiagGGNExact(), TOL_DIRECT),
  extensionCheck('sqrt_ggn_exact', () => new SqrtGGNExact(), TOL_DIRECT),
  extensionCheck('output_jacobian', () => new OutputJacobian(), TOL_DIRECT),
  extensionCheck('diag_hessian', () => new DiagHessian(), TOL_DIAG_HESSIAN),
];
