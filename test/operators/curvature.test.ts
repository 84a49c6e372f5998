/**
 * Dataset-averaged curvature operators against independent references:
 *
 * - exact Hessian of the mean single-sample loss by double TF.js autodiff of
 *   the loss written directly in θ (reference.ts),
 * - GGN from explicit per-sample Jacobians and loss Hessians,
 * - empirical Fisher from autodiff per-sample gradients,
 * - the reference fixtures' `hessian`/`ggn` matrices (BackPACK, float64;
 *   includes Conv2D, max/average pooling and zero padding) times random vectors.
 *
 * Tolerance 1e-5 relative to the largest reference entry: the operators and
 * the autodiff references both run in float32 (measured differences ~1e-7);
 * a missing second-order term or a wrong batch weight gives errors ≥ 1e-2.
 */
import * as tf from '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import {
  CurvatureOperator,
  RestrictedOperator,
  empiricalFisherOperator,
  ggnOperator,
  hessianOperator,
  paramBlocks,
  paramGroups,
} from '../../src/operators/index';
import { fixtureFiles } from '../conformance/runner';
import { loadFixture, readFixture, type T } from '../conformance/fixture';
import {
  autodiffHessian,
  buildMlp,
  classTargets,
  explicitGgn,
  expectNoLeak,
  expectNoLeakAsync,
  flatParams,
  matmul64,
  meanLoss,
  perSampleGradients,
  randomTensor,
  maxRelErr,
  type MlpSpec,
} from './reference';

const TOL = 1e-5;

interface Case {
  spec: MlpSpec;
  N: number;
  targets: (N: number, C: number) => tf.Tensor;
}

const CASES: Case[] = [
  { spec: { inputs: 4, units: [5, 3], activation: 'tanh', loss: 'softmaxCrossEntropy', reduction: 'mean' }, N: 7, targets: (N, C) => classTargets(N, C, 5) },
  { spec: { inputs: 3, units: [4, 4, 2], activation: 'elu', loss: 'mse', reduction: 'sum' }, N: 6, targets: (N, C) => randomTensor([N, C], 9) },
  { spec: { inputs: 3, units: [6, 1], activation: 'sigmoid', loss: 'sigmoidCrossEntropy', reduction: 'mean' }, N: 5, targets: (N) => tf.step(randomTensor([N, 1], 4)) },
  { spec: { inputs: 4, units: [5, 3], activation: 'relu', loss: 'mse', reduction: 'mean' }, N: 5, targets: (N, C) => randomTensor([N, C], 6) },
];

function setup(c: Case) {
  const model = buildMlp(c.spec, 3);
  const ext = extend(model, { loss: c.spec.loss, reduction: c.spec.reduction });
  const x = randomTensor([c.N, c.spec.inputs], 7) as tf.Tensor2D;
  const C = c.spec.units[c.spec.units.length - 1] as number;
  const y = c.targets(c.N, C);
  return { model, ext, x, y, D: ext.numParams };
}

describe.each(CASES)('curvature operators: $spec.activation $spec.loss/$spec.reduction', (c) => {
  const { model, ext, x, y, D } = setup(c);
  const theta = flatParams(model);
  const H = autodiffHessian((t) => meanLoss(c.spec, t, x, y), theta);
  const G = explicitGgn(c.spec, theta, x, y);
  const grads = perSampleGradients(c.spec, theta, x, y);
  const F = new Float64Array(D * D);
  for (const g of grads) for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) F[i * D + j] = (F[i * D + j] as number) + (g[i] as number) * (g[j] as number) / c.N;

  it('Hessian, GGN and empirical Fisher match the autodiff references (batches of 3 with a short last batch)', () => {
    const data = { x, y, batchSize: 3 };
    expectNoLeak(() => {
      expect(maxRelErr(hessianOperator(ext, data).toDense(), H)).toBeLessThan(TOL);
      expect(maxRelErr(ggnOperator(ext, data).toDense(), G)).toBeLessThan(TOL);
      expect(maxRelErr(empiricalFisherOperator(ext, data).toDense(), F)).toBeLessThan(TOL);
    });
  });

  it('batching does not change the operator; stacks equal vector products', () => {
    const one = hessianOperator(ext, { x, y });
    const two = hessianOperator(ext, { x, y, batchSize: 2 });
    const V = tf.randomNormal([3, D], 0, 1, 'float32', 1);
    const a = one.apply(V);
    const b = two.apply(V);
    expect(maxRelErr(a.dataSync(), b.dataSync())).toBeLessThan(TOL);
    const rows = tf.unstack(V).map((v) => one.apply(v));
    expect(maxRelErr(tf.stack(rows).dataSync(), a.dataSync())).toBeLessThan(TOL);
    tf.dispose([V, a, b, ...rows]);
  });

  it('restriction to parameters equals the dense submatrix (params option, aligned and unaligned restrict)', () => {
    const ps = ext.params;
    const chosen = [ps[ps.length - 1], ps[0]].map((p) => (p as { name: string }).name);
    const op = ggnOperator(ext, { x, y }, { params: chosen });
    const blocks = paramBlocks(ext, [{ params: chosen }]);
    const idx = (blocks[0] as { indices: readonly (readonly [number, number])[] }).indices.flatMap(([a, b]) => Array.from({ length: b - a }, (_, k) => a + k));
    const sub = Float64Array.from({ length: idx.length ** 2 }, (_, k) => G[(idx[Math.floor(k / idx.length)] as number) * D + (idx[k % idx.length] as number)] as number);
    expect(op.size).toBe(idx.length);
    expect(maxRelErr(op.toDense(), sub)).toBeLessThan(TOL);
    const full = ggnOperator(ext, { x, y });
    const aligned = full.restrict((blocks[0] as { indices: readonly (readonly [number, number])[] }).indices);
    expect(aligned).toBeInstanceOf(CurvatureOperator);
    expect(maxRelErr(aligned.toDense(), sub)).toBeLessThan(TOL);
    const unaligned = full.restrict([0, 2, D - 1]);
    expect(unaligned).toBeInstanceOf(RestrictedOperator);
    const ref3 = [0, 2, D - 1];
    expect(maxRelErr(unaligned.toDense(), Float64Array.from({ length: 9 }, (_, k) => G[(ref3[Math.floor(k / 3)] as number) * D + (ref3[k % 3] as number)] as number))).toBeLessThan(TOL);
  });

  it('layer-wise block diagonal equals the dense block-diagonal part', () => {
    const op = hessianOperator(ext, { x, y }).blockDiagonal(paramGroups(ext, 'layer'));
    const layerOf = new Int32Array(D);
    for (const p of ext.params) layerOf.fill(p.layerIndex, p.offset, p.offset + p.size);
    const ref = Float64Array.from(H, (h, k) => (layerOf[Math.floor(k / D)] === layerOf[k % D] ? h : 0));
    expect(maxRelErr(op.toDense(), ref)).toBeLessThan(TOL);
  });
});

describe('curvature operators over a tf.data.Dataset', () => {
  const c = CASES[0] as Case;
  const { ext, x, y, D } = setup(c);

  it('applyAsync streams the dataset and equals the in-memory operator; apply points to applyAsync', async () => {
    const ds = tf.data.zip({ xs: tf.data.array(tf.unstack(x)), ys: tf.data.array(tf.unstack(y)) }).batch(3);
    const op = hessianOperator(ext, ds as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>);
    expect(op.isAsync).toBe(true);
    const v = tf.randomNormal([D], 0, 1, 'float32', 2);
    expect(() => op.apply(v)).toThrow(/applyAsync/);
    const ref = hessianOperator(ext, { x, y }).apply(v);
    const got = await expectNoLeakAsync(async () => {
      const r = await op.applyAsync(v);
      const d = Float64Array.from(r.dataSync());
      r.dispose();
      return d;
    });
    expect(maxRelErr(got, ref.dataSync())).toBeLessThan(TOL);
    const dense = await op.toDenseAsync();
    expect(maxRelErr(dense, hessianOperator(ext, { x, y }).toDense())).toBeLessThan(TOL);
    tf.dispose([v, ref]);
  });
});

describe('fixtures: products with the reference hessian/ggn matrices', () => {
  const dir = fileURLToPath(new URL('../fixtures/reference', import.meta.url));
  for (const file of fixtureFiles(dir)) {
    const fx = readFixture(file);
    if (fx.quantities.hessian === undefined) continue;
    it(`${fx.name}: H v and G v for 3 random vectors`, () => {
      const lf = loadFixture(fx);
      try {
        const D = lf.ext.numParams;
        // Fixture order = flat order for every shipped case (checked here).
        lf.params.forEach((p, i) => expect(p.index).toBe(i));
        const N = lf.x.shape[0] as number;
        const scale = fx.loss.reduction === 'sum' ? N : 1; // fixture: batch loss; operator: mean loss
        const V = tf.randomNormal([3, D], 0, 1, 'float32', 3);
        const Vd = V.dataSync();
        for (const [key, op] of [['hessian', hessianOperator(lf.ext, { x: lf.x, y: lf.y })], ['ggn', ggnOperator(lf.ext, { x: lf.x, y: lf.y })]] as const) {
          const M = (fx.quantities[key] as T).data;
          const ref = matmul64(Vd, M, 3, D, D); // rows v_kᵀ M = (M v_k)ᵀ, M symmetric
          const R = expectNoLeak(() => {
            const r = op.apply(V);
            const d = Float64Array.from(r.dataSync(), (a) => a * scale);
            r.dispose();
            return d;
          });
          expect(maxRelErr(R, ref)).toBeLessThan(TOL);
        }
        V.dispose();
      } finally {
        lf.dispose();
      }
    });
  }
});

describe('bad input', () => {
  const c = CASES[0] as Case;
  const { ext, x, y, D } = setup(c);

  it('clear errors and no leaked tensors', () => {
    expect(() => hessianOperator(ext, { x: tf.zeros([0, 4]), y: tf.zeros([0]) })).toThrow(/empty/);
    expect(() => hessianOperator(ext, { x, y: tf.zeros([3]) })).toThrow(/same number of rows/);
    expect(() => ggnOperator(ext, { x, y }, { params: ['nope'] })).toThrow(/unknown parameter 'nope'/);
    expect(() => ggnOperator(ext, { x, y }, { params: [] })).toThrow(/at least one/);
    const op = hessianOperator(ext, { x, y });
    const w = tf.ones([D + 1]);
    expect(() => expectNoLeak(() => op.apply(w))).toThrow(new RegExp(`\\[${D + 1}\\].*\\[${D}\\]`));
    // Data that does not fit the model: the derivative's shape error, no leak.
    const op2 = hessianOperator(ext, { x: tf.ones([2, 3]), y: tf.tensor1d([0, 1], 'int32') });
    const v = tf.ones([D]);
    expect(() => expectNoLeak(() => op2.apply(v))).toThrow();
    // Targets out of range: the loss's error, no leak.
    const op3 = hessianOperator(ext, { x, y: tf.fill([c.N], 7, 'int32') });
    expect(() => expectNoLeak(() => op3.apply(v))).toThrow(/class id/);
    tf.dispose([w, v]);
  });

  it('non-finite operator output is reported by toDense', () => {
    const bad = hessianOperator(ext, { x: tf.fill([2, 4], NaN), y: tf.tensor1d([0, 1], 'int32') });
    expect(() => expectNoLeak(() => bad.toDense())).toThrow(/NaN/);
  });
});
