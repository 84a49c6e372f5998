/**
 * Inverse harmonic mean (DataInf) against its explicit formula, evaluated in
 * float64 from autodiff per-sample gradients g_j of the single-sample loss:
 *
 *   out_b = (1/λ_b) (v_b − (1/P) Σ_j g_jb ⟨g_jb, v_b⟩ / (λ_b + ‖g_jb‖²))
 *
 * per block b. Tolerance 1e-5 relative to the largest entry (float32
 * gradients, O(P) terms). Also: it is the exact inverse for one data point
 * (Sherman–Morrison), batching-invariant, and streams datasets.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { empiricalFisherOperator, paramBlocks } from '../../src/operators/index';
import { inverseHarmonicMean } from '../../src/solvers/index';
import {
  buildMlp,
  classTargets,
  denseSolve,
  expectNoLeak,
  expectNoLeakAsync,
  flatParams,
  perSampleGradients,
  randomTensor,
  maxRelErr,
  type MlpSpec,
} from '../operators/reference';

const spec: MlpSpec = { inputs: 4, units: [5, 3], activation: 'tanh', loss: 'softmaxCrossEntropy', reduction: 'mean' };
const model = buildMlp(spec, 2);
const ext = extend(model, { loss: spec.loss, reduction: spec.reduction });
const N = 7;
const x = randomTensor([N, 4], 3) as tf.Tensor2D;
const y = classTargets(N, 3, 4);
const D = ext.numParams;
const grads = perSampleGradients(spec, flatParams(model), x, y);
const v = tf.randomNormal([D], 0, 1, 'float32', 5);
const vd = Float64Array.from(v.dataSync());

function explicit(blocks: readonly (readonly (readonly [number, number])[])[], damping: readonly number[], rows = grads): Float64Array {
  const out = new Float64Array(D);
  blocks.forEach((set, b) => {
    const idx = set.flatMap(([a, e]) => Array.from({ length: e - a }, (_, k) => a + k));
    const lam = damping[b] as number;
    const acc = new Float64Array(idx.length);
    for (const g of rows) {
      let dot = 0;
      let sq = 0;
      for (const i of idx) {
        dot += (g[i] as number) * (vd[i] as number);
        sq += (g[i] as number) ** 2;
      }
      const w = dot / (lam + sq);
      idx.forEach((i, k) => (acc[k] = (acc[k] as number) + w * (g[i] as number)));
    }
    idx.forEach((i, k) => (out[i] = ((vd[i] as number) - (acc[k] as number) / rows.length) / lam));
  });
  return out;
}

describe('inverseHarmonicMean', () => {
  it('layer-wise (default), whole-vector and per-parameter blocks match the formula; batching does not matter', () => {
    const lam = 0.05;
    for (const mode of ['layer', 'full', 'param'] as const) {
      const blocks = paramBlocks(ext, mode).map((b) => b.indices);
      const ref = explicit(blocks, blocks.map(() => lam));
      for (const batchSize of [undefined, 3]) {
        const op = inverseHarmonicMean(ext, { x, y, ...(batchSize ? { batchSize } : {}) }, { damping: lam, blocks: mode });
        const got = expectNoLeak(() => {
          const r = op.apply(v);
          const d = Float64Array.from(r.dataSync());
          r.dispose();
          return d;
        });
        expect(maxRelErr(got, ref), `${mode} ${batchSize}`).toBeLessThan(1e-5);
        op.dispose();
      }
    }
  });

  it('per-block damping', () => {
    const blocks = paramBlocks(ext, 'layer').map((b) => b.indices);
    const op = inverseHarmonicMean(ext, { x, y }, { damping: [0.02, 0.3] });
    const r = op.apply(v);
    expect(maxRelErr(r.dataSync(), explicit(blocks, [0.02, 0.3]))).toBeLessThan(1e-5);
    r.dispose();
    op.dispose();
  });

  it('is the exact (EF + λI)⁻¹ for a single data point (Sherman–Morrison)', () => {
    const x1 = tf.slice(x, 0, 1);
    const y1 = tf.slice(y, 0, 1);
    const F = empiricalFisherOperator(ext, { x: x1, y: y1 }).toDense();
    const op = inverseHarmonicMean(ext, { x: x1, y: y1 }, { damping: 0.1, blocks: 'full' });
    const r = op.apply(v);
    expect(maxRelErr(r.dataSync(), denseSolve(F, D, 0.1, vd))).toBeLessThan(1e-5);
    tf.dispose([x1, y1, r]);
    op.dispose();
  });

  it('streams a tf.data.Dataset with applyAsync', async () => {
    const rows = [tf.unstack(x), tf.unstack(y)];
    const ds = tf.data.zip({ xs: tf.data.array(rows[0] as tf.Tensor[]), ys: tf.data.array(rows[1] as tf.Tensor[]) }).batch(3);
    const op = inverseHarmonicMean(ext, ds as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>, { damping: 0.05 });
    expect(() => op.apply(v)).toThrow(/applyAsync/);
    const got = await expectNoLeakAsync(async () => {
      const r = await op.applyAsync(v);
      const d = Float64Array.from(r.dataSync());
      r.dispose();
      return d;
    });
    const blocks = paramBlocks(ext, 'layer').map((b) => b.indices);
    expect(maxRelErr(got, explicit(blocks, [0.05, 0.05]))).toBeLessThan(1e-5);
    op.dispose();
    tf.dispose(rows.flat());
  });

  it('bad input: λ ≤ 0, wrong number of dampings, blocks that miss parameters, empty data', () => {
    expect(() => expectNoLeak(() => inverseHarmonicMean(ext, { x, y }, { damping: 0 }))).toThrow(/λ > 0/);
    expect(() => inverseHarmonicMean(ext, { x, y }, { damping: -1 })).toThrow(/> 0/);
    expect(() => inverseHarmonicMean(ext, { x, y }, { damping: [1, 2, 3] })).toThrow(/3 damping values for 2 blocks/);
    expect(() => inverseHarmonicMean(ext, { x, y }, { damping: 1, blocks: [{ params: ['0/kernel'] }] })).toThrow(/do not cover/);
    expect(() => inverseHarmonicMean(ext, { x: tf.zeros([0, 4]), y: tf.zeros([0]) }, { damping: 1 })).toThrow(/empty/);
    expect(() => inverseHarmonicMean(ext, { x, y }, undefined as never)).toThrow(/damping/);
  });
});
