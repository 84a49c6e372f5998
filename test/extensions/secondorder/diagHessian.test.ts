/**
 * DiagHessian / BatchDiagHessian against the diagonal of the Hessian from
 * second differences of the loss computed in float64 by plain loops
 * (reference.ts: `hessianDiagRef`, accurate to ~1e-9 relative, its forward
 * pass checked against TF.js), for tanh / sigmoid / elu / relu nets, all
 * three losses, an activation after the last parametrised layer, and a
 * Conv2D model; plus validation against modules and losses it cannot handle.
 * (Nested tf.grad cannot serve as the reference: TF.js gets second
 * derivatives through tanh, sigmoid, exp and logSoftmax wrong.)
 *
 * Tolerance 1e-4 relative to the reference's max: curvpack computes in
 * float32 through a few layers (measured errors ≤ 1e-6) against a float64
 * reference; dropping a residual term changes these diagonals by 20–150%
 * (the tanh/sigmoid nets here), and the relu net checks that no spurious
 * term is added.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { BatchDiagHessian, DiagGGNExact, DiagGGNMC, DiagHessian } from '../../../extensions/secondorder/index';
import { SUPPORTED_LAYERS } from '../../../src/derivatives/index';
import type { ModuleDerivatives } from '../../../src/derivatives/types';
import { createLoss } from '../../../src/derivatives/losses/index';
import type { LossDerivatives } from '../../../src/derivatives/losses/types';
import { extend } from '../../../src/engine/extend';
import type { ModelInfo } from '../../../src/engine/extension';
import {
  expectClose,
  expectNoLeak,
  expectSubsampledSlices,
  flatResults,
  hessianDiagRef,
  makeProblem,
  paramSlice,
  withProblem,
  type Problem,
  type ProblemSpec,
} from './reference';

const TOL = 1e-4;

function checkDiag(p: Problem, subsampling?: readonly number[]): void {
  const expected = hessianDiagRef(p, subsampling);
  const ext = new DiagHessian(subsampling ? { subsampling } : {});
  const r = p.ext.backward(p.x, p.y, { extensions: [ext] });
  try {
    r.list(ext).forEach((t, i) => expect(t?.shape).toEqual(p.shapes[i]));
    const [flat] = flatResults(p, r, ext, 1);
    p.sizes.forEach((_, i) =>
      expectClose(paramSlice(p, flat as Float64Array, i), paramSlice(p, expected, i), TOL, `Hessian diagonal of parameter ${i}`),
    );
  } finally {
    r.dispose();
  }
}

const net = (
  loss: ProblemSpec['loss'],
  reduction: ProblemSpec['reduction'],
  seed: number,
  layers: ProblemSpec['layers'] = [{ dense: 5, activation: 'tanh' }, { dense: 4 }, { act: 'sigmoid' }, { dense: 3 }],
): ProblemSpec => ({ inputShape: [4], layers, N: 4, loss, reduction, seed });

describe('DiagHessian', () => {
  const cases: [ProblemSpec['loss'], ProblemSpec['reduction']][] = [
    ['mse', 'sum'],
    ['softmaxCrossEntropy', 'mean'],
    ['sigmoidCrossEntropy', 'sum'],
  ];
  cases.forEach(([loss, reduction], k) =>
    it(`equals the float64 Hessian diagonal on a tanh/sigmoid net (${loss}, ${reduction})`, () => {
      withProblem(net(loss, reduction, 400 + k), (p) => checkDiag(p));
    }),
  );

  it('equals the float64 Hessian diagonal on an elu net (mse, mean)', () => {
    withProblem(net('mse', 'mean', 410, [{ dense: 6, activation: 'elu' }, { dense: 4, activation: 'elu' }, { dense: 3 }]), (p) => checkDiag(p));
  });

  it('equals the float64 Hessian diagonal and DiagGGNExact on a relu net (no residual)', () => {
    withProblem(net('softmaxCrossEntropy', 'sum', 426, [{ dense: 6, activation: 'relu' }, { dense: 5, activation: 'relu' }, { dense: 3 }]), (p) => {
      checkDiag(p);
      const h = new DiagHessian();
      const g = new DiagGGNExact();
      const r = p.ext.backward(p.x, p.y, { extensions: [h, g] });
      p.params.forEach((_, i) => expectClose(r.get(h, i).dataSync(), r.get(g, i).dataSync(), 1e-6, `relu net parameter ${i}`));
      r.dispose();
    });
  });

  it('includes the residual of an activation after the last parametrised layer', () => {
    // Output = sigmoid(Dense(tanh(Dense(x)))): the final sigmoid's residual reaches both layers.
    withProblem(net('mse', 'mean', 430, [{ dense: 5, activation: 'tanh' }, { dense: 3, activation: 'sigmoid' }]), (p) => checkDiag(p));
  });

  it('with subsampling equals the Hessian of the chosen samples (whole-batch normalisation)', () => {
    withProblem(net('softmaxCrossEntropy', 'mean', 440), (p) => checkDiag(p, [2, 0]));
  });

  it.skipIf(!SUPPORTED_LAYERS.includes('Conv2D'))('equals the float64 Hessian diagonal on a Conv2D model', () => {
    const p = makeProblem({
      inputShape: [5, 5, 2],
      layers: [
        { conv: { filters: 2, kernel: 3, padding: 'same' }, activation: 'tanh' },
        { avgPool: 2 },
        { flatten: true },
        { dense: 4, activation: 'sigmoid' },
        { dense: 3 },
      ],
      N: 3,
      loss: 'softmaxCrossEntropy',
      reduction: 'mean',
      seed: 450,
    });
    try {
      checkDiag(p);
    } finally {
      p.dispose();
    }
  });

  it('leaks no tensors across repeated steps and on error paths', () => {
    withProblem(net('sigmoidCrossEntropy', 'mean', 460), (p) => {
      const ext = new DiagHessian();
      const batch = new BatchDiagHessian({ subsampling: [1, 2] });
      expectNoLeak(() => {
        for (let k = 0; k < 3; k++) p.ext.backward(p.x, p.y, { extensions: [ext, batch] }).dispose();
      });
      const bad = new BatchDiagHessian({ subsampling: [0, 4] });
      expectNoLeak(() => expect(() => p.ext.backward(p.x, p.y, { extensions: [bad] })).toThrow(/BatchDiagHessian.*subsampling.*4/));
      expect(() => new DiagHessian({ subsampling: [] })).toThrow(/DiagHessian: option 'subsampling' is empty/);
    });
  });
});

describe('BatchDiagHessian', () => {
  it('equals the per-sample float64 Hessian diagonals and sums to DiagHessian', () => {
    withProblem(net('mse', 'mean', 500), (p) => {
      const ext = new BatchDiagHessian();
      const diag = new DiagHessian();
      const r = p.ext.backward(p.x, p.y, { extensions: [ext, diag] });
      try {
        r.list(ext).forEach((t, i) => expect(t?.shape).toEqual([p.N, ...(p.shapes[i] as number[])]));
        const rows = flatResults(p, r, ext, p.N);
        for (let n = 0; n < p.N; n++) {
          const expected = hessianDiagRef(p, [n]);
          p.sizes.forEach((_, i) =>
            expectClose(paramSlice(p, rows[n] as Float64Array, i), paramSlice(p, expected, i), TOL, `sample ${n} parameter ${i}`),
          );
        }
        p.params.forEach((_, i) => {
          const s = tf.sum(r.get(ext, i), 0);
          expectClose(s.dataSync(), r.get(diag, i).dataSync(), 1e-5, `Σ_n vs DiagHessian, parameter ${i}`);
          s.dispose();
        });
      } finally {
        r.dispose();
      }
    });
  });

  it('subsampling equals slicing', () => {
    withProblem(net('softmaxCrossEntropy', 'mean', 510), (p) => {
      const full = new BatchDiagHessian();
      const sub = new BatchDiagHessian({ subsampling: [3, 1], name: 'sub' });
      const r = p.ext.backward(p.x, p.y, { extensions: [full, sub] });
      expectSubsampledSlices(p, r, full, sub, [3, 1], 0, TOL);
      r.dispose();
    });
  });
});

describe('validation of unsupported modules and losses', () => {
  /** A non-elementwise nonlinear module without a residual (like a layer norm). */
  const fakeModule = (kind: string, extra: Partial<ModuleDerivatives> = {}): ModuleDerivatives => ({
    kind,
    params: [],
    outputShape: (s) => [...s],
    forward: (x) => ({ input: x, output: x, saved: {}, constants: {} }),
    jacTMatProd: (_rec, m) => m,
    jacMatProd: (_rec, m) => m,
    ...extra,
  });

  function infoWith(p: Problem, module: ModuleDerivatives, layerName: string): ModelInfo {
    const info = p.ext.info;
    const modules = [...(info.modules ?? [])];
    // Insert between the two Dense layers (after the first module with parameters).
    modules.splice(2, 0, { derivatives: module, layerIndex: 1, layerName });
    return { ...info, modules, moduleKinds: modules.map((m) => m.derivatives.kind) };
  }

  it('DiagHessian refuses a nonlinear module without residual, naming the extension and the layer', () => {
    withProblem(net('mse', 'sum', 600), (p) => {
      const info = infoWith(p, fakeModule('LayerNormalization'), 'my_norm');
      expect(() => new DiagHessian().validate(info)).toThrow(
        /DiagHessian: layer 'my_norm' \(LayerNormalization\) is not elementwise and provides no second-derivative residual.*DiagGGNExact/,
      );
      expect(() => new BatchDiagHessian().validate(info)).toThrow(/BatchDiagHessian: layer 'my_norm'/);
      // GGN extensions need no residual.
      expect(() => new DiagGGNExact().validate(info)).not.toThrow();
      // Elementwise modules without residual are piecewise linear by the derivative contract; modules with one are fine.
      expect(() => new DiagHessian().validate(infoWith(p, fakeModule('HardClip', { elementwise: true }), 'clip'))).not.toThrow();
      const withResidual = fakeModule('Swish', { residualDiag: (rec) => tf.zerosLike(rec.input) });
      expect(() => new DiagHessian().validate(infoWith(p, withResidual, 'swish'))).not.toThrow();
      // A module that cannot backpropagate stacks is refused by every extension.
      const noJac = fakeModule('Opaque', { jacTMatProd: undefined as unknown as ModuleDerivatives['jacTMatProd'] });
      expect(() => new DiagGGNExact().validate(infoWith(p, noJac, 'opaque'))).toThrow(
        /DiagGGNExact: layer 'opaque' \(Opaque\) cannot backpropagate a stack/,
      );
      // The real model passes.
      expect(() => new DiagHessian().validate(p.ext.info)).not.toThrow();
    });
  });

  it('refuses a loss without the needed square-root factor, through backward(), without leaks', () => {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 4, activation: 'tanh' }), tf.layers.dense({ units: 2 })] });
    const real = createLoss('mse', 'mean');
    // A user-defined loss object without sqrtHessian / sqrtHessianSampled.
    const partial = {
      name: 'mse',
      reduction: 'mean',
      normalizer: (N: number, C: number) => real.normalizer(N, C),
      prepareTargets: (o: tf.Tensor2D, t: tf.Tensor) => real.prepareTargets(o, t),
      perSampleLoss: (o: tf.Tensor2D, t: tf.Tensor2D) => real.perSampleLoss(o, t),
      gradient: (o: tf.Tensor2D, t: tf.Tensor2D) => real.gradient(o, t),
    } as unknown as LossDerivatives;
    const ext = extend(model, { loss: partial });
    const x = tf.ones([2, 3]);
    const y = tf.zeros([2, 2]);
    try {
      expectNoLeak(() => {
        expect(() => ext.backward(x, y, { extensions: [new DiagHessian()] })).toThrow(
          /DiagHessian: the loss 'mse' has no sqrtHessian\(\)/,
        );
        expect(() => ext.backward(x, y, { extensions: [new DiagGGNMC({ seed: 1 })] })).toThrow(
          /DiagGGNMC: the loss 'mse' has no sqrtHessianSampled\(\)/,
        );
      }, 'loss validation');
    } finally {
      tf.dispose([x, y]);
      model.dispose();
    }
  });
});
