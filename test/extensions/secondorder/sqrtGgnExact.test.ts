/**
 * SqrtGGNExact against TF.js autodiff: entries equal `S_n J_n` (J_n from
 * tf.grads per output and sample, S_n from FORMAT.md §4 in float64), and
 * `Σ_{v,n} vec(s_vn) vec(s_vn)ᵀ` equals the GGN block `Σ_n J_nᵀ H_n J_n`.
 *
 * Tolerance 1e-4 relative to the reference's max magnitude: curvpack and
 * the autodiff reference both compute in float32 (relative rounding ~1e-7
 * per op over a few layers, measured errors ~1e-6); a wrong factor or a
 * wrong normalisation gives errors of order 1.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { SqrtGGNExact } from '../../../extensions/secondorder/index';
import { SUPPORTED_LAYERS } from '../../../src/derivatives/index';
import { extend } from '../../../src/engine/extend';
import {
  block,
  expectClose,
  expectNoLeak,
  expectSubsampledSlices,
  flatResults,
  jacobiansRef,
  lossCurvatureRef,
  LOSSES,
  makeProblem,
  perSampleGgnRef,
  REDUCTIONS,
  sumMatrices,
  withProblem,
  type Problem,
  type ProblemSpec,
} from './reference';

const TOL = 1e-4;

/** Check SqrtGGNExact entries and Gram blocks on a problem. */
function checkAgainstAutodiff(p: Problem): void {
  const J = jacobiansRef(p);
  const { H, S } = lossCurvatureRef(p);
  const ggn = sumMatrices(perSampleGgnRef(p, J, H));
  const ext = new SqrtGGNExact();
  const r = p.ext.backward(p.x, p.y, { extensions: [ext] });
  try {
    const list = r.list(ext);
    p.shapes.forEach((shape, i) => expect(list[i]?.shape).toEqual([p.C, p.N, ...shape]));
    const rows = flatResults(p, r, ext, p.C * p.N); // row v·N + n
    p.sizes.forEach((size, i) => {
      const off = p.sizes.slice(0, i).reduce((a, b) => a + b, 0);
      const actual: number[] = [];
      const expected: number[] = [];
      for (let v = 0; v < p.C; v++) {
        for (let n = 0; n < p.N; n++) {
          const row = rows[v * p.N + n] as Float64Array;
          for (let k = 0; k < size; k++) {
            actual.push(row[off + k] as number);
            let e = 0;
            for (let c = 0; c < p.C; c++) e += (S[n]?.[v]?.[c] as number) * (J[n]?.[c]?.[off + k] as number);
            expected.push(e);
          }
        }
      }
      expectClose(actual, expected, TOL, `S_n J_n entries of parameter ${i}`);
      // Gram: Σ_{v,n} s sᵀ = GGN block.
      const gram = new Float64Array(size * size);
      for (const row of rows) {
        for (let a = 0; a < size; a++) {
          const ra = row[off + a] as number;
          for (let b = 0; b < size; b++) gram[a * size + b] = (gram[a * size + b] as number) + ra * (row[off + b] as number);
        }
      }
      expectClose(gram, block(p, ggn, i), TOL, `Σ s sᵀ vs GGN block of parameter ${i}`);
    });
  } finally {
    r.dispose();
  }
}

const mlp = (loss: ProblemSpec['loss'], reduction: ProblemSpec['reduction'], seed: number): ProblemSpec => ({
  inputShape: [4],
  layers: [{ dense: 5, activation: 'tanh' }, { dense: 4 }, { act: 'sigmoid' }, { dense: 3 }],
  N: 4,
  loss,
  reduction,
  seed,
});

describe('SqrtGGNExact', () => {
  LOSSES.forEach((loss, li) =>
    REDUCTIONS.forEach((reduction, ri) =>
      it(`equals S_n J_n and factors the GGN (${loss}, ${reduction})`, () => {
        withProblem(mlp(loss, reduction, 10 + 2 * li + ri), (p) => checkAgainstAutodiff(p));
      }),
    ),
  );

  it('subsampling equals slicing the full result (every loss, reduction mean)', () => {
    for (const [li, loss] of LOSSES.entries()) {
      const p = makeProblem(mlp(loss, 'mean', 30 + li));
      const full = new SqrtGGNExact();
      const sub = new SqrtGGNExact({ subsampling: [2, 0, 2], name: 'sub' });
      const r = p.ext.backward(p.x, p.y, { extensions: [full, sub] });
      try {
        p.params.forEach((_, i) => expect(r.get(sub, i).shape).toEqual([p.C, 3, ...(p.shapes[i] as number[])]));
        expectSubsampledSlices(p, r, full, sub, [2, 0, 2], 1, TOL, `${loss} subsampled parameter`);
      } finally {
        r.dispose();
        p.dispose();
      }
    }
  });

  it('leaks no tensors across repeated steps and on error paths', () => {
    withProblem(mlp('softmaxCrossEntropy', 'mean', 40), (p) => {
      const ext = new SqrtGGNExact({ subsampling: [1, 3] });
      expectNoLeak(() => {
        for (let k = 0; k < 3; k++) p.ext.backward(p.x, p.y, { extensions: [ext] }).dispose();
      });
      const bad = new SqrtGGNExact({ subsampling: [0, 4] });
      expectNoLeak(() => {
        expect(() => p.ext.backward(p.x, p.y, { extensions: [bad] })).toThrow(/SqrtGGNExact.*subsampling.*index 4.*4 samples/);
      }, 'error path');
    });
  });

  it('validates its options', () => {
    expect(() => new SqrtGGNExact({ subsampling: [] })).toThrow(/SqrtGGNExact: option 'subsampling' is empty/);
    expect(() => new SqrtGGNExact({ subsampling: [0, -1] })).toThrow(/SqrtGGNExact: option 'subsampling' has entry -1/);
    expect(() => new SqrtGGNExact({ subsampling: [0.5] })).toThrow(/integers/);
    const s = [3, 1];
    const ext = new SqrtGGNExact({ subsampling: s });
    s[0] = 0; // the option was copied
    expect(ext.subsampling).toEqual([3, 1]);
  });

  it('throws a clear error instead of exhausting memory, and the backend stays usable', () => {
    // Kernel 2048×4096 with C = 10 and n = 32: 10·32·8.4M floats ≈ 10.7 GB.
    const model = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [2048], units: 4096 }), tf.layers.dense({ units: 10 })],
    });
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const x = tf.zeros([32, 2048]);
    const y = tf.zeros([32], 'int32');
    const sq = new SqrtGGNExact();
    try {
      expectNoLeak(() => {
        expect(() => ext.backward(x, y, { extensions: [sq] })).toThrow(
          /SqrtGGNExact: parameter '.*kernel.*' \(shape \[2048, 4096\]\) with V = 10 and n = 32 samples needs 10\.00 GiB .*subsampling.*SqrtGGNMC/,
        );
      }, 'size-check error path');
      // Subsampling brings it down to a size that fits.
      const small = new SqrtGGNExact({ subsampling: [0] });
      const r = ext.backward(x, y, { extensions: [small] });
      expect(r.get(small, 0).shape).toEqual([10, 1, 2048, 4096]);
      r.dispose();
    } finally {
      tf.dispose([x, y]);
      model.dispose();
    }
  });

  it.skipIf(!SUPPORTED_LAYERS.includes('Conv2D'))('equals S_n J_n and factors the GGN on a Conv2D model', () => {
    const p = makeProblem({
      inputShape: [5, 5, 2],
      layers: [
        { conv: { filters: 3, kernel: 3, padding: 'same' }, activation: 'tanh' },
        { avgPool: 2 },
        { conv: { filters: 2, kernel: 2, padding: 'valid' } },
        { flatten: true },
        { dense: 3 },
      ],
      N: 3,
      loss: 'softmaxCrossEntropy',
      reduction: 'mean',
      seed: 50,
    });
    try {
      checkAgainstAutodiff(p);
    } finally {
      p.dispose();
    }
  });
});
