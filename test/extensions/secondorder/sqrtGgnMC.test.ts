/**
 * SqrtGGNMC: shapes, seeding and sharing, option validation, and
 * convergence of `Σ_{m,n} vec(s̃_mn) vec(s̃_mn)ᵀ` to the GGN block computed
 * from TF.js autodiff Jacobians (reference.ts).
 *
 * Monte-Carlo tolerance: with M draws, the estimate is the mean of M iid
 * unbiased per-draw estimates X_m = M·Σ_n s̃_mn s̃_mnᵀ; we require every entry
 * within 6 standard errors (estimated from the same draws) of the exact
 * value. For a normal mean that fails with probability 2e-9 per entry
 * (~1e-6 over the ~1200 entries checked), and the seeds are fixed, so the
 * test is deterministic; `expectWithinStdErr` also checks that 6·SE stays
 * below 10% of the block's scale, so a wrong scaling would be detected.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { DiagGGNMC, SqrtGGNMC } from '../../../extensions/secondorder/index';
import {
  block,
  expectClose,
  expectNoLeak,
  expectWithinStdErr,
  flatResults,
  jacobiansRef,
  lossCurvatureRef,
  makeProblem,
  meanAndStdErr,
  perSampleGgnRef,
  sumMatrices,
  withProblem,
  type Problem,
  type ProblemSpec,
} from './reference';

const mlp = (loss: ProblemSpec['loss'], reduction: ProblemSpec['reduction'], seed: number): ProblemSpec => ({
  inputShape: [4],
  layers: [{ dense: 5, activation: 'tanh' }, { dense: 4 }, { act: 'sigmoid' }, { dense: 3 }],
  N: 4,
  loss,
  reduction,
  seed,
});

/** Per-draw Gram blocks `X_m = M·Σ_{n ∈ rows} s̃_mn s̃_mnᵀ` of parameter i (flattened). */
function drawGrams(p: Problem, rows: Float64Array[], M: number, n: number, i: number): Float64Array[] {
  const off = p.sizes.slice(0, i).reduce((a, b) => a + b, 0);
  const s = p.sizes[i] as number;
  return Array.from({ length: M }, (_, m) => {
    const X = new Float64Array(s * s);
    for (let k = 0; k < n; k++) {
      const row = rows[m * n + k] as Float64Array;
      for (let a = 0; a < s; a++) {
        const ra = (row[off + a] as number) * M;
        for (let b = 0; b < s; b++) X[a * s + b] = (X[a * s + b] as number) + ra * (row[off + b] as number);
      }
    }
    return X;
  });
}

describe('SqrtGGNMC', () => {
  const cases: [ProblemSpec['loss'], ProblemSpec['reduction']][] = [
    ['mse', 'mean'],
    ['softmaxCrossEntropy', 'sum'],
    ['sigmoidCrossEntropy', 'mean'],
  ];
  cases.forEach(([loss, reduction], k) =>
    it(`converges to the GGN block (${loss}, ${reduction})`, () => {
      const p = makeProblem(mlp(loss, reduction, 60 + k));
      const M = 20000;
      try {
        const J = jacobiansRef(p);
        const { H } = lossCurvatureRef(p);
        const ggn = sumMatrices(perSampleGgnRef(p, J, H));
        const ext = new SqrtGGNMC({ mcSamples: M, seed: 7 + k });
        const r = p.ext.backward(p.x, p.y, { extensions: [ext] });
        const rows = flatResults(p, r, ext, M * p.N);
        r.list(ext).forEach((t, i) => expect(t?.shape).toEqual([M, p.N, ...(p.shapes[i] as number[])]));
        r.dispose();
        p.sizes.forEach((_, i) => {
          const { mean, se } = meanAndStdErr(drawGrams(p, rows, M, p.N, i));
          expectWithinStdErr(mean, block(p, ggn, i), se, 6, `${loss} GGN block of parameter ${i}`);
        });
      } finally {
        p.dispose();
      }
    }),
  );

  it('with subsampling converges to the GGN of the chosen samples (whole-batch normalisation)', () => {
    const p = makeProblem(mlp('softmaxCrossEntropy', 'mean', 70));
    const M = 20000;
    const rowsChosen = [3, 1];
    try {
      const J = jacobiansRef(p);
      const { H } = lossCurvatureRef(p);
      const per = perSampleGgnRef(p, J, H);
      const ggnSub = sumMatrices(rowsChosen.map((n) => per[n] as Float64Array));
      const ext = new SqrtGGNMC({ mcSamples: M, seed: 3, subsampling: rowsChosen });
      const r = p.ext.backward(p.x, p.y, { extensions: [ext] });
      const rows = flatResults(p, r, ext, M * rowsChosen.length);
      expect(r.get(ext, 0).shape).toEqual([M, 2, 4, 5]);
      r.dispose();
      p.sizes.forEach((_, i) => {
        const { mean, se } = meanAndStdErr(drawGrams(p, rows, M, rowsChosen.length, i));
        expectWithinStdErr(mean, block(p, ggnSub, i), se, 6, `subsampled GGN block of parameter ${i}`);
      });
    } finally {
      p.dispose();
    }
  });

  it('shares one quantity between MC extensions with equal mcSamples and seed', () => {
    withProblem(mlp('softmaxCrossEntropy', 'mean', 80), (p) => {
      const a = new SqrtGGNMC({ mcSamples: 5, seed: 11 });
      const b = new SqrtGGNMC({ mcSamples: 5, seed: 11, name: 'b' });
      const c = new SqrtGGNMC({ mcSamples: 5, seed: 12, name: 'c' });
      const d = new DiagGGNMC({ mcSamples: 5, seed: 11 });
      expect(a.quantity.key).toBe(b.quantity.key);
      expect(a.quantity.key).toBe(d.quantity.key);
      expect(a.quantity.key).not.toBe(c.quantity.key);
      const r = p.ext.backward(p.x, p.y, { extensions: [a, b, c, d] });
      try {
        p.params.forEach((_, i) => {
          expect(Array.from(r.get(b, i).dataSync())).toEqual(Array.from(r.get(a, i).dataSync()));
          // DiagGGNMC = Σ_{m,n} (sampled factor)² of the very same samples.
          const sq = tf.tidy(() => tf.sum(tf.square(r.get(a, i)), [0, 1]));
          expectClose(r.get(d, i).dataSync(), sq.dataSync(), 1e-5, `DiagGGNMC vs SqrtGGNMC² of parameter ${i}`);
          sq.dispose();
          const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(r.get(a, i), r.get(c, i)))));
          expect(diff.dataSync()[0]).toBeGreaterThan(0);
          diff.dispose();
        });
      } finally {
        r.dispose();
      }
      // The same seed reproduces the samples in a later step.
      const r2 = p.ext.backward(p.x, p.y, { extensions: [a] });
      const r3 = p.ext.backward(p.x, p.y, { extensions: [b] });
      expect(Array.from(r2.get(a, 0).dataSync())).toEqual(Array.from(r3.get(b, 0).dataSync()));
      r2.dispose();
      r3.dispose();
    });
  });

  it('needs a seed in deterministic mode; the step seed makes it reproducible', () => {
    withProblem(mlp('mse', 'sum', 90), (p) => {
      const unseeded = new SqrtGGNMC({ mcSamples: 2 });
      expectNoLeak(() => {
        expect(() => p.ext.backward(p.x, p.y, { extensions: [unseeded], deterministic: true })).toThrow(
          /SqrtGGNMC: deterministic mode needs a seed/,
        );
      }, 'deterministic error path');
      const r1 = p.ext.backward(p.x, p.y, { extensions: [unseeded], deterministic: true, seed: 5 });
      const r2 = p.ext.backward(p.x, p.y, { extensions: [unseeded], seed: 5 });
      expect(Array.from(r1.get(unseeded, 1).dataSync())).toEqual(Array.from(r2.get(unseeded, 1).dataSync()));
      r1.dispose();
      r2.dispose();
      const seeded = new SqrtGGNMC({ mcSamples: 2, seed: 1 });
      p.ext.backward(p.x, p.y, { extensions: [seeded], deterministic: true }).dispose();
    });
  });

  it('validates its options', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new SqrtGGNMC({ mcSamples: bad })).toThrow(/SqrtGGNMC: option 'mcSamples' must be an integer ≥ 1/);
    }
    expect(() => new SqrtGGNMC({ mcSamples: '3' as unknown as number })).toThrow(/mcSamples/);
    expect(() => new SqrtGGNMC({ seed: Number.POSITIVE_INFINITY })).toThrow(/SqrtGGNMC: option 'seed' must be a finite number/);
    expect(() => new SqrtGGNMC({ subsampling: [] })).toThrow(/SqrtGGNMC: option 'subsampling' is empty/);
    expect(new SqrtGGNMC().mcSamples).toBe(1);
  });

  it('leaks no tensors across repeated steps and on error paths', () => {
    withProblem(mlp('sigmoidCrossEntropy', 'sum', 95), (p) => {
      const ext = new SqrtGGNMC({ mcSamples: 3, seed: 2, subsampling: [0, 2] });
      expectNoLeak(() => {
        for (let k = 0; k < 3; k++) p.ext.backward(p.x, p.y, { extensions: [ext] }).dispose();
      });
      const bad = new SqrtGGNMC({ mcSamples: 3, seed: 2, subsampling: [5] });
      expectNoLeak(() => {
        expect(() => p.ext.backward(p.x, p.y, { extensions: [bad] })).toThrow(/SqrtGGNMC.*subsampling/);
      }, 'error path');
    });
  });
});
