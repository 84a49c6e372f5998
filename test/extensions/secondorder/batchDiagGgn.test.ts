/**
 * BatchDiagGGNExact / BatchDiagGGNMC against the per-sample GGN diagonals
 * `diag(J_nᵀ H_n J_n)` built from TF.js autodiff Jacobians (reference.ts).
 * Tolerances as in diagGgn.test.ts: 1e-4 relative (float32 on both sides,
 * measured ~1e-6); MC within 6 standard errors estimated from the same
 * draws (SqrtGGNMC with the same seed shares the samples).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { BatchDiagGGNExact, BatchDiagGGNMC, DiagGGNExact, SqrtGGNMC } from '../../../extensions/secondorder/index';
import {
  diagOf,
  expectClose,
  expectNoLeak,
  expectSubsampledSlices,
  expectWithinStdErr,
  flatResults,
  jacobiansRef,
  lossCurvatureRef,
  LOSSES,
  makeProblem,
  meanAndStdErr,
  paramSlice,
  perSampleGgnRef,
  withProblem,
  type Problem,
  type ProblemSpec,
} from './reference';

const TOL = 1e-4;

const mlp = (loss: ProblemSpec['loss'], reduction: ProblemSpec['reduction'], seed: number): ProblemSpec => ({
  inputShape: [3],
  layers: [{ dense: 5, activation: 'sigmoid' }, { dense: 4, activation: 'tanh' }, { dense: 3 }],
  N: 4,
  loss,
  reduction,
  seed,
});

function perSampleDiags(p: Problem): Float64Array[] {
  return perSampleGgnRef(p, jacobiansRef(p), lossCurvatureRef(p).H).map((G) => diagOf(G, p.D));
}

describe('BatchDiagGGNExact', () => {
  LOSSES.forEach((loss, li) => {
    const reduction = li % 2 === 0 ? 'mean' : 'sum';
    it(`equals the per-sample autodiff GGN diagonals and sums to DiagGGNExact (${loss}, ${reduction})`, () => {
      withProblem(mlp(loss, reduction, 200 + li), (p) => {
        const expected = perSampleDiags(p);
        const ext = new BatchDiagGGNExact();
        const diag = new DiagGGNExact();
        const r = p.ext.backward(p.x, p.y, { extensions: [ext, diag] });
        try {
          r.list(ext).forEach((t, i) => expect(t?.shape).toEqual([p.N, ...(p.shapes[i] as number[])]));
          const rows = flatResults(p, r, ext, p.N);
          p.sizes.forEach((_, i) => {
            const actual = rows.flatMap((row) => paramSlice(p, row, i));
            const want = expected.flatMap((row) => paramSlice(p, row, i));
            expectClose(actual, want, TOL, `per-sample diag GGN of parameter ${i}`);
            const summed = tf.sum(r.get(ext, i), 0);
            expectClose(summed.dataSync(), r.get(diag, i).dataSync(), 1e-5, `Σ_n vs DiagGGNExact, parameter ${i}`);
            summed.dispose();
          });
        } finally {
          r.dispose();
        }
      });
    });
  });

  it('subsampling equals slicing (reduction mean)', () => {
    withProblem(mlp('sigmoidCrossEntropy', 'mean', 210), (p) => {
      const full = new BatchDiagGGNExact();
      const sub = new BatchDiagGGNExact({ subsampling: [3, 0], name: 'sub' });
      const r = p.ext.backward(p.x, p.y, { extensions: [full, sub] });
      expectSubsampledSlices(p, r, full, sub, [3, 0], 0, TOL);
      r.dispose();
    });
  });

  it('leaks no tensors across repeated steps and on error paths', () => {
    withProblem(mlp('mse', 'sum', 220), (p) => {
      const ext = new BatchDiagGGNExact({ subsampling: [1] });
      expectNoLeak(() => {
        for (let k = 0; k < 3; k++) p.ext.backward(p.x, p.y, { extensions: [ext] }).dispose();
      });
      const bad = new BatchDiagGGNExact({ subsampling: [4] });
      expectNoLeak(() => expect(() => p.ext.backward(p.x, p.y, { extensions: [bad] })).toThrow(/BatchDiagGGNExact.*subsampling/));
    });
  });
});

describe('BatchDiagGGNMC', () => {
  it('converges to the per-sample exact diagonals (softmaxCrossEntropy, mean)', () => {
    const p = makeProblem(mlp('softmaxCrossEntropy', 'mean', 230));
    const M = 20000;
    try {
      const exact = perSampleDiags(p);
      const mc = new BatchDiagGGNMC({ mcSamples: M, seed: 9 });
      const sq = new SqrtGGNMC({ mcSamples: M, seed: 9 });
      const r = p.ext.backward(p.x, p.y, { extensions: [mc, sq] });
      r.list(mc).forEach((t, i) => expect(t?.shape).toEqual([p.N, ...(p.shapes[i] as number[])]));
      const est = flatResults(p, r, mc, p.N);
      const rows = flatResults(p, r, sq, M * p.N);
      r.dispose();
      for (let n = 0; n < p.N; n++) {
        // Per-draw estimates X_m = M·s̃_mn².
        const draws = Array.from({ length: M }, (_, m) => (rows[m * p.N + n] as Float64Array).map((v) => M * v * v));
        const { mean, se } = meanAndStdErr(draws);
        // Same samples; M float32 squares summed (rounding ≲ M·2⁻²⁴ relative).
        expectClose(est[n] as Float64Array, mean, M * 2 ** -24, `BatchDiagGGNMC[${n}] vs the mean of its draws`);
        p.sizes.forEach((_, i) =>
          expectWithinStdErr(
            paramSlice(p, est[n] as Float64Array, i),
            paramSlice(p, exact[n] as Float64Array, i),
            paramSlice(p, se, i),
            6,
            `MC per-sample diag GGN, sample ${n}, parameter ${i}`,
          ),
        );
      }
    } finally {
      p.dispose();
    }
  });

  it('validates its options and needs a seed in deterministic mode', () => {
    expect(() => new BatchDiagGGNMC({ mcSamples: -3 })).toThrow(/BatchDiagGGNMC: option 'mcSamples' must be an integer ≥ 1, got -3/);
    expect(() => new BatchDiagGGNMC({ subsampling: [] })).toThrow(/BatchDiagGGNMC: option 'subsampling' is empty/);
    withProblem(mlp('mse', 'mean', 240), (p) => {
      const ext = new BatchDiagGGNMC({ mcSamples: 3 });
      expectNoLeak(() =>
        expect(() => p.ext.backward(p.x, p.y, { extensions: [ext], deterministic: true })).toThrow(
          /BatchDiagGGNMC: deterministic mode needs a seed/,
        ),
      );
      const sub = new BatchDiagGGNMC({ mcSamples: 3, seed: 1, subsampling: [2, 1] });
      expectNoLeak(() => {
        const r = p.ext.backward(p.x, p.y, { extensions: [sub], deterministic: true });
        expect(r.get(sub, 0).shape).toEqual([2, 3, 5]);
        r.dispose();
      });
    });
  });
});
