/**
 * Kronecker-factor conformance: kflr, kfra (FORMAT.md §6.1–6.2) and ekfac
 * (§6.3).
 *
 * Errors are max |a − e| / max |e| per tensor (FORMAT.md §8).
 * Tolerances:
 *  - TOL_FACTORS = 1e-4 for A and G (KFLR, KFRA): each factor is a single
 *    float32 Gram product (`XᵀX/N`, `BᵀB`) of quantities that themselves carry
 *    ~1e-6 relative error (a few Jacobian-transpose products in float32);
 *    summing N·T·V rank-one terms adds ~√(N·T·V)·6e-8. A wrong convention
 *    (missing 1/N, positions averaged instead of summed, wrong flatten order)
 *    gives O(1) errors, so 1e-4 (FORMAT.md §8) separates the two with a wide
 *    margin.
 *  - EKFAC, same TOL_FACTORS for every part:
 *    · evalsA/evalsG: eigenvalues of the float32 factors computed in float64;
 *      eigenvalue perturbation ≤ ‖ΔA‖₂ ≈ 1e-6·‖A‖ (Weyl), so relative to the
 *      largest eigenvalue the error is that of the factor.
 *    · UA/UG through the residual `A_ref·U − U·diag(evals)` (max entry,
 *      relative to max|A_ref|) with the float64 reference factor, and
 *      orthonormality `max|UᵀU − I|`: both bounded by the factor error plus
 *      float32 rounding of the float64 eigenvectors (~1e-7), independent of
 *      eigenvalue gaps (FORMAT.md: eigenvectors of repeated eigenvalues are
 *      not unique, so they are not compared entry by entry).
 *    · lambda directly (basisInvariant is true in every fixture: lambda does
 *      not depend on the choice of basis inside repeated eigenspaces). Close
 *      but distinct eigenvalues let float32 noise rotate eigenvectors by
 *      ~eps/gap, which moves lambda more than the factors.
 *  Measured on wasm (all 13 fixtures): factors ≤ 2.6e-7, evals ≤ 1e-7,
 *  lambda ≤ 7.8e-6 (conv layer of cnn_zeropad_ce_sum, close eigenvalues of
 *  A), everything else ≤ 4e-7: ≥ 12× margin below 1e-4.
 */
import type * as tf from '@tensorflow/tfjs';
import {
  EKFAC,
  KFLR,
  KFRA,
  type EkfacKernel,
  type KroneckerFactors,
} from '../../../extensions/secondorder/index';
import type { Extension } from '../../../src/engine/extension';
import { maxRelErr, sameShape } from '../compare';
import type { LoadedFixture, T } from '../fixture';
import { fixtureQuantity, hasQuantity, judge, type Outcome, type QuantityCheck } from './types';

export const TOL_FACTORS = 1e-4;

type FactorEntry = { A?: T; G: T };
type EkfacEntry = { param: number; UA: T; UG: T; lambda: T; evalsA: T; evalsG: T; basisInvariant: boolean };

function compareTensor(what: string, a: tf.Tensor, e: T, errs: number[]): string | undefined {
  if (!sameShape(a.shape, e.shape)) return `${what}: shape [${a.shape}] vs reference [${e.shape}]`;
  errs.push(maxRelErr(a.dataSync(), e.data));
  return undefined;
}

function factorCheck(name: 'kflr' | 'kfra', make: () => Extension<KroneckerFactors>): QuantityCheck {
  return {
    name,
    present: hasQuantity(name),
    run(lf: LoadedFixture): Outcome {
      const ext = make();
      const r = lf.ext.backward(lf.x, lf.y, { extensions: [ext], training: false });
      try {
        const expected = fixtureQuantity<FactorEntry[]>(lf, name);
        const errs: number[] = [];
        for (let i = 0; i < expected.length; i++) {
          const e = expected[i] as FactorEntry;
          const p = lf.params[i];
          const pname = lf.fx.params[i]?.name;
          if (p === undefined || !r.has(ext, p)) return { status: 'fail', note: `no result for ${pname}` };
          const a = r.get(ext, p) as { A?: tf.Tensor; G: tf.Tensor };
          if ((e.A === undefined) !== (a.A === undefined)) return { status: 'fail', note: `${pname}: A present/absent mismatch` };
          const bad =
            (e.A && a.A ? compareTensor(`${pname}.A`, a.A, e.A, errs) : undefined) ??
            compareTensor(`${pname}.G`, a.G, e.G, errs);
          if (bad) return { status: 'fail', note: bad };
        }
        return judge(errs, TOL_FACTORS);
      } finally {
        r.dispose();
      }
    },
  };
}

/** max |M·U − U·diag(evals)| / max|M| (M float64 row-major n×n, U float32 column eigenvectors). */
function eigenResidual(M: number[], U: ArrayLike<number>, evals: ArrayLike<number>, n: number): number {
  let scale = 0;
  for (const v of M) scale = Math.max(scale, Math.abs(v));
  let err = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += (M[i * n + k] as number) * (U[k * n + j] as number);
      err = Math.max(err, Math.abs(s - (U[i * n + j] as number) * (evals[j] as number)));
    }
  }
  return scale > 0 ? err / scale : err;
}

/** max |UᵀU − I|. */
function orthonormalityError(U: ArrayLike<number>, n: number): number {
  let err = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += (U[k * n + i] as number) * (U[k * n + j] as number);
      err = Math.max(err, Math.abs(s - (i === j ? 1 : 0)));
    }
  }
  return err;
}

const ekfacCheck: QuantityCheck = {
  name: 'ekfac',
  present: hasQuantity('ekfac'),
  run(lf: LoadedFixture): Outcome {
    const ext = new EKFAC();
    const r = lf.ext.backward(lf.x, lf.y, { extensions: [ext], training: false });
    try {
      const expected = fixtureQuantity<EkfacEntry[]>(lf, 'ekfac');
      const kflr = fixtureQuantity<FactorEntry[]>(lf, 'kflr');
      const errs: number[] = [];
      for (const e of expected) {
        const p = lf.params[e.param];
        const pname = lf.fx.params[e.param]?.name;
        if (p === undefined || !r.has(ext, p)) return { status: 'fail', note: `no result for ${pname}` };
        const a = r.get(ext, p) as EkfacKernel;
        const ref = kflr[e.param] as FactorEntry;
        const bad =
          compareTensor(`${pname}.evalsA`, a.evalsA, e.evalsA, errs) ??
          compareTensor(`${pname}.evalsG`, a.evalsG, e.evalsG, errs) ??
          compareTensor(`${pname}.lambda`, a.lambda, e.lambda, errs) ??
          (sameShape(a.UA.shape, e.UA.shape) ? undefined : `${pname}.UA: shape [${a.UA.shape}] vs [${e.UA.shape}]`) ??
          (sameShape(a.UG.shape, e.UG.shape) ? undefined : `${pname}.UG: shape [${a.UG.shape}] vs [${e.UG.shape}]`);
        if (bad) return { status: 'fail', note: bad };
        const nA = e.UA.shape[0] as number;
        const nG = e.UG.shape[0] as number;
        const UA = a.UA.dataSync();
        const UG = a.UG.dataSync();
        errs.push(eigenResidual((ref.A as T).data, UA, a.evalsA.dataSync(), nA));
        errs.push(eigenResidual(ref.G.data, UG, a.evalsG.dataSync(), nG));
        errs.push(orthonormalityError(UA, nA), orthonormalityError(UG, nG));
      }
      return judge(errs, TOL_FACTORS);
    } finally {
      r.dispose();
    }
  },
};

export const kroneckerChecks: QuantityCheck[] = [
  factorCheck('kflr', () => new KFLR()),
  factorCheck('kfra', () => new KFRA()),
  ekfacCheck,
];
