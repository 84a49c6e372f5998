/**
 * DirectInfluence against an independent float64 construction: per-sample
 * gradients, Hessian (double autodiff), GGN (per-sample Jacobians) and
 * empirical Fisher from TF.js autodiff on the cpu backend, assembled and
 * solved in float64 (test/influence/reference.ts). Every block mode, per-block
 * regularization, per-block influences (and that they sum to the total),
 * and perturbation influence against nested autodiff.
 *
 * λ = 0.01·(largest |eigenvalue| of the block's M): small enough that the
 * curvature dominates the solve (an error in M shows up undamped), large
 * enough that M + λI is well conditioned for a float32 comparison.
 * Tolerance 1e-4 relative to the largest |influence|: float32 gradients and
 * products (relative rounding ~1e-7 per op) times the condition number of
 * M + λI (≤ ~1e2 here); measured errors are ≤ 1e-5.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { DirectInfluence } from '../../src/influence/direct';
import type { CurvatureMode } from '../../src/influence/types';
import {
  buildReference,
  flatParams,
  forward,
  jacobiEigen,
  makeProblem,
  range,
  referenceInfluence,
  maxRelErr,
  sumOfSingleLosses,
  type MlpSpec,
  type Problem,
  type Reference,
} from './reference';

const TOL = 1e-4;

function topEigen(M: Float64Array, D: number, idx: number[]): number {
  const n = idx.length;
  const A = new Float64Array(n * n);
  idx.forEach((i, r) => idx.forEach((j, q) => (A[r * n + q] = M[i * D + j] as number)));
  const { values } = jacobiEigen(A, n);
  return Math.max(...Array.from(values, Math.abs));
}

function matrixOf(ref: Reference, c: CurvatureMode): Float64Array {
  return c === 'hessian' ? ref.hessian : c === 'ggn' ? ref.ggn : ref.empiricalFisher;
}

interface Setup {
  p: Problem;
  ref: Reference;
  ext: ReturnType<typeof extend>;
}

function setup(spec: MlpSpec, seed: number): Setup {
  const p = makeProblem(spec, 8, 3, seed);
  const ref = buildReference(p);
  const ext = extend(p.model, { loss: spec.loss, reduction: spec.reduction });
  return { p, ref, ext };
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('DirectInfluence vs explicit float64 matrices (tanh MLP 4-5-3, D = 43)', () => {
  const specs: MlpSpec[] = [
    { inputs: 4, hidden: 5, outputs: 3, loss: 'mse', reduction: 'mean' },
    { inputs: 4, hidden: 5, outputs: 3, loss: 'softmaxCrossEntropy', reduction: 'sum' },
    { inputs: 4, hidden: 5, outputs: 2, loss: 'sigmoidCrossEntropy', reduction: 'mean' },
  ];
  const setups: Setup[] = [];
  beforeAll(() => {
    specs.forEach((s, i) => setups.push(setup(s, 3 + i)));
  });
  afterAll(() => setups.forEach((s) => s.p.dispose()));

  // Blocks as coordinates of the flat vector: layer 0 = [0, I·H + H), layer 1 = the rest.
  const layerBlocks = (spec: MlpSpec) => {
    const l0 = spec.inputs * spec.hidden + spec.hidden;
    const D = l0 + spec.hidden * spec.outputs + spec.outputs;
    return { all: range(0, D), l0: range(0, l0), l1: range(l0, D), kernel1: range(l0, l0 + spec.hidden * spec.outputs), bias1: range(l0 + spec.hidden * spec.outputs, D), D };
  };

  for (const [si, spec] of specs.entries()) {
    for (const curvature of ['hessian', 'ggn', 'empiricalFisher'] as const) {
      it(`${spec.loss}/${spec.reduction} ${curvature}: full and layer-wise blocks`, () => {
        const { p, ref, ext } = setups[si] as Setup;
        const M = matrixOf(ref, curvature);
        const b = layerBlocks(spec);
        const lambda = 0.01 * topEigen(M, b.D, b.all);
        const before = tf.memory().numTensors;
        for (const [blocks, ref2] of [
          ['full', [{ idx: b.all, lambda }]],
          ['layer', [{ idx: b.l0, lambda }, { idx: b.l1, lambda }]],
        ] as const) {
          const m = new DirectInfluence(ext, { regularization: lambda, curvature, blocks, progress: false });
          m.fit({ x: p.xTrain, y: p.yTrain });
          const S = m.influences(p.xTest, p.yTest);
          expect(S.shape).toEqual([3, 8]);
          const expected = referenceInfluence(M, b.D, ref.gTest, ref.gTrain, [...ref2]);
          expect(maxRelErr(S.dataSync(), expected), `${blocks}`).toBeLessThan(TOL);
          S.dispose();
          m.dispose();
        }
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }

  it('per-parameter and custom blocks, per-block regularization, per-block influences summing to the total', () => {
    const { p, ref, ext } = setups[0] as Setup;
    const spec = specs[0] as MlpSpec;
    const b = layerBlocks(spec);
    const M = ref.ggn;
    const lam0 = 0.01 * topEigen(M, b.D, b.l0);
    const lam1 = 0.05 * topEigen(M, b.D, b.l1);
    const before = tf.memory().numTensors;
    // Layer blocks with one λ each.
    const m = new DirectInfluence(ext, { regularization: [lam0, lam1], curvature: 'ggn', blocks: 'layer', progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const byBlock = m.influencesByBlock(p.xTest, p.yTest);
    expect(byBlock.shape).toEqual([2, 3, 8]);
    const parts = tf.unstack(byBlock);
    const e0 = referenceInfluence(M, b.D, ref.gTest, ref.gTrain, [{ idx: b.l0, lambda: lam0 }]);
    const e1 = referenceInfluence(M, b.D, ref.gTest, ref.gTrain, [{ idx: b.l1, lambda: lam1 }]);
    expect(maxRelErr((parts[0] as tf.Tensor).dataSync(), e0)).toBeLessThan(TOL);
    expect(maxRelErr((parts[1] as tf.Tensor).dataSync(), e1)).toBeLessThan(TOL);
    const total = m.influences(p.xTest, p.yTest);
    const sum = tf.sum(byBlock, 0);
    expect(maxRelErr(sum.dataSync(), total.dataSync())).toBeLessThan(1e-6);
    tf.dispose([byBlock, ...parts, total, sum]);
    m.dispose();
    // Per-parameter blocks.
    const mp = new DirectInfluence(ext, { regularization: lam0, curvature: 'ggn', blocks: 'param', progress: false });
    expect(mp.blocks.map((x) => x.size)).toEqual([20, 5, 15, 3]);
    mp.fit({ x: p.xTrain, y: p.yTrain });
    const Sp = mp.influences(p.xTest, p.yTest);
    const sets = [range(0, 20), range(20, 25), range(25, 40), range(40, 43)].map((idx) => ({ idx, lambda: lam0 }));
    expect(maxRelErr(Sp.dataSync(), referenceInfluence(M, b.D, ref.gTest, ref.gTrain, sets))).toBeLessThan(TOL);
    Sp.dispose();
    mp.dispose();
    // A custom group over the last layer only: the other parameters are left out.
    const mc = new DirectInfluence(ext, { regularization: lam1, curvature: 'ggn', blocks: [{ params: ['1/kernel', '1/bias'] }], progress: false });
    expect(mc.size).toBe(18);
    mc.fit({ x: p.xTrain, y: p.yTrain });
    const Sc = mc.influences(p.xTest, p.yTest);
    expect(maxRelErr(Sc.dataSync(), referenceInfluence(M, b.D, ref.gTest, ref.gTrain, [{ idx: b.l1, lambda: lam1 }]))).toBeLessThan(TOL);
    // Factors have one column per selected parameter entry and match the reference solve.
    const F = mc.influenceFactors(p.xTest, p.yTest);
    expect(F.shape).toEqual([3, 18]);
    const fromF = mc.influencesFromFactors(F);
    expect(maxRelErr(fromF.dataSync(), Sc.dataSync())).toBeLessThan(1e-6);
    tf.dispose([Sc, F, fromF]);
    mc.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('perturbation influence = ∇_x of the up-weighting influence (nested autodiff), per block summing to the total', () => {
    const { p, ref, ext } = setups[1] as Setup;
    const spec = specs[1] as MlpSpec;
    const b = layerBlocks(spec);
    const M = ref.hessian;
    const lambda = 0.01 * topEigen(M, b.D, b.all);
    const m = new DirectInfluence(ext, { regularization: lambda, curvature: 'hessian', progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const before = tf.memory().numTensors;
    const P = m.influences(p.xTest, p.yTest, undefined, undefined, 'perturbation');
    expect(P.shape).toEqual([3, 8, 4]);
    // Reference: factors v_i = (M + λI)⁻¹ g_test_i (float64), then ∇_{x_j} ⟨v_i, ∇_θ ℓ_j⟩ by nested tf.grad.
    const theta = tf.tensor1d(Float32Array.from(flatParams(p.model)));
    const expected: number[] = [];
    for (let i = 0; i < 3; i++) {
      const e = new Float64Array(b.D);
      e.set(ref.gTest[i] as Float64Array);
      // (M + λI)⁻¹ g_test_i via the reference solve against unit "train gradients".
      const unit = range(0, b.D).map((k) => Float64Array.from(range(0, b.D), (q) => (q === k ? 1 : 0)));
      const v = referenceInfluence(M, b.D, [e], unit, [{ idx: b.all, lambda }]);
      const vt = tf.tensor1d(Float32Array.from(v));
      for (let j = 0; j < 8; j++) {
        const gx = tf.tidy(() => {
          const yj = tf.slice(p.yTrain, j, 1);
          return tf.grad((x: tf.Tensor) =>
            tf.sum(tf.mul(vt, tf.grad((t: tf.Tensor) => sumOfSingleLosses(spec, forward(spec, t as tf.Tensor1D, x), yj))(theta))),
          )(tf.slice(p.xTrain, j, 1));
        });
        expected.push(...gx.dataSync());
        gx.dispose();
      }
      vt.dispose();
    }
    theta.dispose();
    expect(maxRelErr(P.dataSync(), expected)).toBeLessThan(TOL);
    // Per-block (one block: identical), and layer-wise blocks summing to the layer-wise total.
    const ml = new DirectInfluence(ext, { regularization: lambda, curvature: 'hessian', blocks: 'layer', progress: false });
    ml.fit({ x: p.xTrain, y: p.yTrain });
    const Pb = ml.influencesByBlock(p.xTest, p.yTest, p.xTrain, p.yTrain, 'perturbation');
    expect(Pb.shape).toEqual([2, 3, 8, 4]);
    const Pt = ml.influences(p.xTest, p.yTest, p.xTrain, p.yTrain, 'perturbation');
    const sum = tf.sum(Pb, 0);
    expect(maxRelErr(sum.dataSync(), Pt.dataSync())).toBeLessThan(1e-5);
    tf.dispose([P, Pb, Pt, sum]);
    ml.dispose();
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});
