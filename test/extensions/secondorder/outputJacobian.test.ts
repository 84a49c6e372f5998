/**
 * OutputJacobian against TF.js autodiff: `[n, C, ...p]` with entry
 * `∂f_nc/∂p` from tf.grads of each output of each sample (reference.ts).
 * Tolerance 1e-4 relative to the reference's max (float32 on both sides,
 * measured ~1e-7); the Jacobian carries no loss factor, so the loss and
 * reduction must not change it.
 */
import { describe, expect, it } from 'vitest';
import { OutputJacobian } from '../../../extensions/secondorder/index';
import { SUPPORTED_LAYERS } from '../../../src/derivatives/index';
import {
  expectClose,
  expectNoLeak,
  expectSubsampledSlices,
  flatResults,
  jacobiansRef,
  makeProblem,
  paramSlice,
  withProblem,
  type Problem,
  type ProblemSpec,
} from './reference';

const TOL = 1e-4;

function check(p: Problem, subsampling?: number[]): void {
  const J = jacobiansRef(p);
  const ext = new OutputJacobian(subsampling ? { subsampling } : {});
  const rowsIdx = subsampling ?? Array.from({ length: p.N }, (_, n) => n);
  const r = p.ext.backward(p.x, p.y, { extensions: [ext] });
  try {
    r.list(ext).forEach((t, i) => expect(t?.shape).toEqual([rowsIdx.length, p.C, ...(p.shapes[i] as number[])]));
    const rows = flatResults(p, r, ext, rowsIdx.length * p.C); // row k·C + c
    p.sizes.forEach((_, i) => {
      const actual = rows.flatMap((row) => paramSlice(p, row, i));
      const want = rowsIdx.flatMap((n) => Array.from({ length: p.C }, (_c, c) => paramSlice(p, J[n]?.[c] as number[], i)).flat());
      expectClose(actual, want, TOL, `output Jacobian of parameter ${i}`);
    });
  } finally {
    r.dispose();
  }
}

const mlp = (loss: ProblemSpec['loss'], reduction: ProblemSpec['reduction'], seed: number): ProblemSpec => ({
  inputShape: [4],
  layers: [{ dense: 5, activation: 'elu' }, { dense: 4, activation: 'tanh' }, { dense: 3 }],
  N: 4,
  loss,
  reduction,
  seed,
});

describe('OutputJacobian', () => {
  it('equals the autodiff Jacobians, independent of the loss and reduction', () => {
    for (const [k, [loss, reduction]] of ([
      ['mse', 'mean'],
      ['softmaxCrossEntropy', 'sum'],
      ['sigmoidCrossEntropy', 'mean'],
    ] as const).entries()) {
      withProblem(mlp(loss, reduction, 300 + k), (p) => check(p));
    }
  });

  it('subsampling equals slicing', () => {
    withProblem(mlp('softmaxCrossEntropy', 'mean', 310), (p) => {
      check(p, [3, 1]);
      const full = new OutputJacobian();
      const sub = new OutputJacobian({ subsampling: [2], name: 'sub' });
      const r = p.ext.backward(p.x, p.y, { extensions: [full, sub] });
      expectSubsampledSlices(p, r, full, sub, [2], 0, TOL);
      r.dispose();
    });
  });

  it('leaks no tensors across repeated steps and on error paths', () => {
    withProblem(mlp('mse', 'sum', 320), (p) => {
      const ext = new OutputJacobian();
      expectNoLeak(() => {
        for (let k = 0; k < 3; k++) p.ext.backward(p.x, p.y, { extensions: [ext] }).dispose();
      });
      const bad = new OutputJacobian({ subsampling: [10] });
      expectNoLeak(() => expect(() => p.ext.backward(p.x, p.y, { extensions: [bad] })).toThrow(/OutputJacobian.*subsampling.*10/));
      expect(() => new OutputJacobian({ subsampling: [1, 2.5] })).toThrow(/OutputJacobian: option 'subsampling' has entry 2.5/);
    });
  });

  it.skipIf(!SUPPORTED_LAYERS.includes('Conv2D'))('equals the autodiff Jacobians on a Conv2D model', () => {
    const p = makeProblem({
      inputShape: [5, 4, 2],
      layers: [
        { conv: { filters: 2, kernel: 3, padding: 'same' }, activation: 'sigmoid' },
        { flatten: true },
        { dense: 3 },
      ],
      N: 2,
      loss: 'sigmoidCrossEntropy',
      reduction: 'sum',
      seed: 330,
    });
    try {
      check(p);
    } finally {
      p.dispose();
    }
  });
});
