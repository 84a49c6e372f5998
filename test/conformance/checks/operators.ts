/**
 * Operator conformance: `hessian` and `ggn` (explicit `[D, D]` matrices,
 * D ≤ 400) against curvpack's dataset-averaged curvature operators
 * (`hessianOperator` / `ggnOperator`, built column by column with `toDense`).
 *
 * The operators are the curvature of the mean single-sample loss
 * (1/N) Σ_n loss({x_n}) (FORMAT.md §6.5); the fixture matrices are the
 * curvature of the batch loss (§6). With reduction `mean` both are equal;
 * with `sum` the batch loss is N times the mean, so the operator is scaled
 * by N before comparing.
 *
 * Error: max |a − e| / max |e| over the whole matrix (FORMAT.md §8).
 * Tolerance 1e-4: every column is one exact R-operator product in float32
 * (a few Jacobian(-transpose) products and the loss Hessian per layer,
 * relative rounding ~1e-7 per op); the measured errors are ≤ 5e-7 on every
 * fixture (wasm), so 1e-4 keeps a ×200 margin for other backends while a missing
 * second-order term (e.g. the residual φ''·δ or the kernel cross term)
 * gives errors of order 1e-2 to 1.
 */
import { CurvatureOperator } from '../../../src/operators/curvature';
import { maxRelErr } from '../compare';
import type { LoadedFixture, T } from '../fixture';
import { fixtureQuantity, hasQuantity, judge, type QuantityCheck } from './types';

export const TOL_CURVATURE_MATRIX = 1e-4;

/** The operator's matrix permuted to the fixture's parameter order (identical for every shipped case). */
function inFixtureOrder(lf: LoadedFixture, M: Float64Array): Float64Array {
  const D = lf.ext.numParams;
  // Fixture coordinate → model flat coordinate.
  const map = new Int32Array(D);
  let pos = 0;
  for (const p of lf.params) for (let k = 0; k < p.size; k++) map[pos++] = p.offset + k;
  const out = new Float64Array(D * D);
  for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) out[i * D + j] = M[(map[i] as number) * D + (map[j] as number)] as number;
  return out;
}

function matrixCheck(name: 'hessian' | 'ggn'): QuantityCheck {
  return {
    name,
    present: hasQuantity(name),
    run(lf) {
      const expected = fixtureQuantity<T>(lf, name);
      const D = lf.ext.numParams;
      if (expected.shape[0] !== D || expected.shape[1] !== D) {
        return { status: 'fail', note: `reference is [${expected.shape}] but the model has D = ${D}` };
      }
      const op = new CurvatureOperator(lf.ext, name, { x: lf.x, y: lf.y });
      const M = inFixtureOrder(lf, op.toDense());
      const N = lf.x.shape[0] as number;
      if (lf.fx.loss.reduction === 'sum') for (let i = 0; i < M.length; i++) M[i] = (M[i] as number) * N;
      return judge([maxRelErr(M, expected.data)], TOL_CURVATURE_MATRIX);
    },
  };
}

export const operatorChecks: QuantityCheck[] = [matrixCheck('hessian'), matrixCheck('ggn')];
