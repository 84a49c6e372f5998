/**
 * DiagGGNExact / DiagGGNMC against the diagonal of the GGN built from TF.js
 * autodiff Jacobians and the explicit loss Hessians (reference.ts).
 *
 * Exact: tolerance 1e-4 relative to the reference's max (both sides float32,
 * measured ~1e-6). MC: every entry within 6 standard errors of the exact
 * diagonal, the standard errors estimated from the per-draw values
 * M·Σ_n s̃_mn² of the very same samples (SqrtGGNMC with the same seed shares
 * the quantity); see sqrtGgnMC.test.ts for the argument.
 */
import { describe, expect, it } from 'vitest';
import { DiagGGNExact, DiagGGNMC, SqrtGGNMC } from '../../../extensions/secondorder/index';
import { SUPPORTED_LAYERS } from '../../../src/derivatives/index';
import {
  diagOf,
  expectClose,
  expectNoLeak,
  expectWithinStdErr,
  flatResults,
  jacobiansRef,
  lossCurvatureRef,
  LOSSES,
  makeProblem,
  meanAndStdErr,
  paramSlice,
  perSampleGgnRef,
  REDUCTIONS,
  sumMatrices,
  withProblem,
  type Problem,
  type ProblemSpec,
} from './reference';

const TOL = 1e-4;

const mlp = (loss: ProblemSpec['loss'], reduction: ProblemSpec['reduction'], seed: number): ProblemSpec => ({
  inputShape: [5],
  layers: [{ dense: 6, activation: 'relu' }, { dense: 4, activation: 'elu' }, { dense: 3 }],
  N: 5,
  loss,
  reduction,
  seed,
});

function exactDiag(p: Problem, rows?: readonly number[]): Float64Array {
  const per = perSampleGgnRef(p, jacobiansRef(p), lossCurvatureRef(p).H);
  const chosen = rows ? rows.map((n) => per[n] as Float64Array) : per;
  return diagOf(sumMatrices(chosen), p.D);
}

function checkExact(p: Problem, subsampling?: readonly number[]): void {
  const expected = exactDiag(p, subsampling);
  const ext = new DiagGGNExact(subsampling ? { subsampling } : {});
  const r = p.ext.backward(p.x, p.y, { extensions: [ext] });
  try {
    r.list(ext).forEach((t, i) => expect(t?.shape).toEqual(p.shapes[i]));
    const [flat] = flatResults(p, r, ext, 1);
    p.sizes.forEach((_, i) =>
      expectClose(paramSlice(p, flat as Float64Array, i), paramSlice(p, expected, i), TOL, `diag GGN of parameter ${i}`),
    );
  } finally {
    r.dispose();
  }
}

describe('DiagGGNExact', () => {
  LOSSES.forEach((loss, li) =>
    REDUCTIONS.forEach((reduction, ri) =>
      it(`equals the diagonal of the autodiff GGN (${loss}, ${reduction})`, () => {
        withProblem(mlp(loss, reduction, 100 + 2 * li + ri), (p) => checkExact(p));
      }),
    ),
  );

  it('with subsampling sums the chosen samples only (whole-batch normalisation)', () => {
    withProblem(mlp('mse', 'mean', 110), (p) => checkExact(p, [4, 1]));
  });

  it('leaks no tensors across repeated steps and on error paths', () => {
    withProblem(mlp('softmaxCrossEntropy', 'sum', 111), (p) => {
      const ext = new DiagGGNExact();
      expectNoLeak(() => {
        for (let k = 0; k < 3; k++) p.ext.backward(p.x, p.y, { extensions: [ext] }).dispose();
      });
      const bad = new DiagGGNExact({ subsampling: [0, 7] });
      expectNoLeak(() => expect(() => p.ext.backward(p.x, p.y, { extensions: [bad] })).toThrow(/DiagGGNExact.*subsampling.*7/));
    });
  });

  it.skipIf(!SUPPORTED_LAYERS.includes('Conv2D'))('equals the diagonal of the autodiff GGN on a Conv2D model', () => {
    const p = makeProblem({
      inputShape: [6, 6, 2],
      layers: [
        { conv: { filters: 3, kernel: 3, padding: 'valid' }, activation: 'relu' },
        { avgPool: 2 },
        { flatten: true },
        { dense: 3 },
      ],
      N: 3,
      loss: 'mse',
      reduction: 'sum',
      seed: 120,
    });
    try {
      checkExact(p);
      checkExact(p, [2]);
    } finally {
      p.dispose();
    }
  });
});

describe('DiagGGNMC', () => {
  const cases: [ProblemSpec['loss'], ProblemSpec['reduction']][] = [
    ['softmaxCrossEntropy', 'mean'],
    ['sigmoidCrossEntropy', 'sum'],
  ];
  cases.forEach(([loss, reduction], k) =>
    it(`converges to the exact diagonal (${loss}, ${reduction})`, () => {
      const p = makeProblem(mlp(loss, reduction, 130 + k));
      const M = 20000;
      try {
        const exact = exactDiag(p);
        const mc = new DiagGGNMC({ mcSamples: M, seed: 21 + k });
        const sq = new SqrtGGNMC({ mcSamples: M, seed: 21 + k }); // same samples
        const r = p.ext.backward(p.x, p.y, { extensions: [mc, sq] });
        const [est] = flatResults(p, r, mc, 1);
        const rows = flatResults(p, r, sq, M * p.N);
        r.dispose();
        // Per-draw estimates X_m = M·Σ_n s̃_mn².
        const draws = Array.from({ length: M }, (_, m) => {
          const x = new Float64Array(p.D);
          for (let n = 0; n < p.N; n++) {
            const row = rows[m * p.N + n] as Float64Array;
            for (let d = 0; d < p.D; d++) x[d] = (x[d] as number) + M * (row[d] as number) ** 2;
          }
          return x;
        });
        const { mean, se } = meanAndStdErr(draws);
        // Same samples; DiagGGNMC sums M·N float32 squares (rounding ≲ M·2⁻²⁴ relative).
        expectClose(est as Float64Array, mean, M * 2 ** -24, 'DiagGGNMC vs the mean of its draws');
        p.sizes.forEach((_, i) =>
          expectWithinStdErr(
            paramSlice(p, est as Float64Array, i),
            paramSlice(p, exact, i),
            paramSlice(p, se, i),
            6,
            `MC diag GGN of parameter ${i}`,
          ),
        );
      } finally {
        p.dispose();
      }
    }),
  );

  it('validates its options and needs a seed in deterministic mode', () => {
    expect(() => new DiagGGNMC({ mcSamples: 0 })).toThrow(/DiagGGNMC: option 'mcSamples' must be an integer ≥ 1, got 0/);
    expect(() => new DiagGGNMC({ mcSamples: 2.5 })).toThrow(/DiagGGNMC: option 'mcSamples'/);
    expect(() => new DiagGGNMC({ subsampling: [-2] })).toThrow(/DiagGGNMC: option 'subsampling'/);
    withProblem(mlp('mse', 'sum', 140), (p) => {
      const ext = new DiagGGNMC({ mcSamples: 2 });
      expectNoLeak(() =>
        expect(() => p.ext.backward(p.x, p.y, { extensions: [ext], deterministic: true })).toThrow(
          /DiagGGNMC: deterministic mode needs a seed/,
        ),
      );
      const seeded = new DiagGGNMC({ mcSamples: 2, seed: 4 });
      const r1 = p.ext.backward(p.x, p.y, { extensions: [seeded], deterministic: true });
      const r2 = p.ext.backward(p.x, p.y, { extensions: [seeded], deterministic: true });
      expect(Array.from(r1.get(seeded, 0).dataSync())).toEqual(Array.from(r2.get(seeded, 0).dataSync()));
      r1.dispose();
      r2.dispose();
    });
  });
});
