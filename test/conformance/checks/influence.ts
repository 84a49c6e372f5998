/**
 * Influence conformance (FORMAT.md §6.5): the four modes `hessian_full`,
 * `ggn_full`, `hessian_layerwise`, `ggn_layerwise` — each
 * `[nTest, nTrain]` = g_testᵀ (M + λI)⁻¹ g_train with single-sample
 * gradients and M the Hessian / GGN of the mean training loss (full or
 * block-diagonal per layer) — computed by DirectInfluence (explicit matrix,
 * float64 eigendecomposition) and by CgInfluence (CG to rtol 1e-7, on the
 * normal equations where M + λI is indefinite) on the fixture's own
 * train/test split.
 *
 * Error: max |a − e| / max |e| per mode and method (FORMAT.md §8).
 * Tolerance 5e-4: the matrices and gradients are float32 (relative
 * rounding ~1e-7 per product), and the solve amplifies it by the condition
 * number of M + λI, which FORMAT.md bounds through the choice of λ (every
 * eigenvalue at least 1e-2 away from 0, the largest O(1–10): κ ≲ 1e3) — and
 * CG on the normal equations by κ², with its rtol 1e-7 as the floor.
 * Measured on wasm: Direct ≤ 1.6e-6, CG ≤ 5.0e-5 on every case. M + λI is
 * indefinite for the Hessian in 12 of 13 cases (full, and some layer
 * blocks): CG then solves the normal equations (M+λI)² f = (M+λI) g (see
 * src/influence/cg.ts). A wrong convention (1/nTrain in g, a sum instead of
 * a mean in M, the mse/mean normaliser, a missing cross-layer block) gives
 * errors of order 0.1 to 1.
 */
import * as tf from '@tensorflow/tfjs';
import { CgInfluence } from '../../../src/influence/cg';
import { DirectInfluence } from '../../../src/influence/direct';
import type { InfluenceModel } from '../../../src/influence/base';
import type { CurvatureMode } from '../../../src/influence/types';
import { maxRelErr } from '../compare';
import { toTensor, type LoadedFixture, type T } from '../fixture';
import { fixtureQuantity, hasQuantity, judge, type QuantityCheck } from './types';

export const TOL_INFLUENCE = 5e-4;

export interface InfluenceFixture {
  trainInputs: T;
  trainTargets: T;
  testInputs: T;
  testTargets: T;
  regularization: number;
  definition: string;
  modes: Record<string, T>;
}

export const INFLUENCE_MODES: readonly { key: string; curvature: CurvatureMode; blocks: 'full' | 'layer' }[] = [
  { key: 'hessian_full', curvature: 'hessian', blocks: 'full' },
  { key: 'ggn_full', curvature: 'ggn', blocks: 'full' },
  { key: 'hessian_layerwise', curvature: 'hessian', blocks: 'layer' },
  { key: 'ggn_layerwise', curvature: 'ggn', blocks: 'layer' },
];

/** The fixture's split as tensors (class ids as int32 for softmax cross-entropy). */
export function influenceSplit(lf: LoadedFixture): { xTrain: tf.Tensor; yTrain: tf.Tensor; xTest: tf.Tensor; yTest: tf.Tensor; dispose(): void } {
  const q = fixtureQuantity<InfluenceFixture>(lf, 'influence');
  const ids = lf.fx.loss.type === 'softmax_cross_entropy' ? 'int32' : 'float32';
  const s = {
    xTrain: toTensor(q.trainInputs),
    yTrain: toTensor(q.trainTargets, ids),
    xTest: toTensor(q.testInputs),
    yTest: toTensor(q.testTargets, ids),
  };
  return { ...s, dispose: () => tf.dispose([s.xTrain, s.yTrain, s.xTest, s.yTest]) };
}

/** Influence matrix `[nTest, nTrain]` of one method and mode, as float64 data. */
export function influenceMatrix(
  lf: LoadedFixture,
  method: 'direct' | 'cg',
  mode: (typeof INFLUENCE_MODES)[number],
): Float64Array {
  const q = fixtureQuantity<InfluenceFixture>(lf, 'influence');
  const split = influenceSplit(lf);
  const options = { regularization: q.regularization, curvature: mode.curvature, blocks: mode.blocks, progress: false as const };
  let m: InfluenceModel | undefined;
  try {
    m = method === 'direct' ? new DirectInfluence(lf.ext, options) : new CgInfluence(lf.ext, { ...options, rtol: 1e-7 });
    m.fit({ x: split.xTrain, y: split.yTrain });
    const S = m.influences(split.xTest, split.yTest);
    const out = Float64Array.from(S.dataSync());
    S.dispose();
    return out;
  } finally {
    m?.dispose();
    split.dispose();
  }
}

export const influenceChecks: QuantityCheck[] = [
  {
    name: 'influence',
    present: hasQuantity('influence'),
    run(lf) {
      const q = fixtureQuantity<InfluenceFixture>(lf, 'influence');
      const errs: number[] = [];
      const notes: string[] = [];
      for (const mode of INFLUENCE_MODES) {
        const expected = q.modes[mode.key];
        if (expected === undefined) continue;
        for (const method of ['direct', 'cg'] as const) {
          const e = maxRelErr(influenceMatrix(lf, method, mode), expected.data);
          errs.push(e);
          notes.push(`${mode.key}/${method} ${e.toExponential(1)}`);
        }
      }
      return judge(errs, TOL_INFLUENCE, notes.join(', '));
    },
  },
];
