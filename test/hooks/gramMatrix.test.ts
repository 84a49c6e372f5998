/**
 * GramMatrix: the Gram matrix of the GGN square root equals the explicit
 * `[⟨s_vm, s_wn⟩]` of per-sample square-root vectors built by brute force
 * (autodiff Jacobians × FORMAT.md's loss factor), for every block structure,
 * with curvature subsampling (factor N/n) and Monte-Carlo sampling
 * (statistical test), and the Gram routes for several patches per sample
 * agree with explicit per-sample products.
 *
 * Tolerances: float32 Gram entries from sums of a few hundred products
 * against float64 references: 1e-5 relative to the largest entry (~100 ulps).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { GramMatrix } from '../../hooks/gramMatrix';
import { groupsFull, groupsPerLayer, groupsPerParam } from '../../hooks/groups';
import { biasCrossGram, kernelCrossGram, weightedParamProduct } from '../../hooks/gramProducts';
import { bruteForce, dot, groupIndices, makeTargets, perSampleKernelProducts, restrictVec, smallMlp, type BruteForce } from '../helpers/ggnBruteForce';
import type { LossKind } from '../helpers/autodiff';
import { maxRelErr } from '../conformance/compare';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const TOL = 1e-5;

expectNoLeaksPerTest();

/** Brute-force Gram of a group over curvature samples `samples` (v-major), times N/n. */
function bruteGram(bf: BruteForce, names: readonly string[], samples: readonly number[]): Float64Array {
  const idx = groupIndices(bf, names);
  const vecs: Float64Array[] = [];
  for (let v = 0; v < bf.C; v++) for (const n of samples) vecs.push(restrictVec((bf.sqrt[v] as Float64Array[])[n] as Float64Array, idx));
  const k = vecs.length;
  const G = new Float64Array(k * k);
  const c2 = bf.N / samples.length;
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) G[i * k + j] = c2 * dot(vecs[i] as Float64Array, vecs[j] as Float64Array);
  return G;
}

describe('GramMatrix equals the brute-force Gram of the GGN square root', () => {
  const cases: { kind: LossKind; reduction: 'mean' | 'sum'; act: string }[] = [
    { kind: 'softmaxCrossEntropy', reduction: 'mean', act: 'tanh' },
    { kind: 'mse', reduction: 'sum', act: 'relu' },
    { kind: 'sigmoidCrossEntropy', reduction: 'mean', act: 'sigmoid' },
  ];
  for (const c of cases) {
    it(`${c.kind}/${c.reduction}/${c.act}: full, per-layer and per-param blocks`, () => {
      const C = c.kind === 'sigmoidCrossEntropy' ? 2 : 3;
      const model = smallMlp(4, 5, C, c.act, 11);
      const x = tf.randomNormal([5, 4], 0, 1, 'float32', 3);
      const y = makeTargets(c.kind, 5, C, 2);
      const ext = extend(model, { loss: c.kind, reduction: c.reduction });
      const bf = bruteForce(model, c.kind, c.reduction, x, y);
      const structures = { full: groupsFull(ext), perLayer: groupsPerLayer(ext), perParam: groupsPerParam(ext) };
      const hooks = Object.entries(structures).map(([name, groups]) => new GramMatrix({ name, groups }));
      const r = ext.backward(x, y, { hooks });
      for (const h of hooks) {
        const res = r.groups(h);
        expect(res.length).toBe(h.groups.length);
        h.groups.forEach((g, i) => {
          const names = g.params as string[];
          const expected = bruteGram(bf, names, [0, 1, 2, 3, 4]);
          const got = res[i] as { gram: tf.Tensor2D; V: number; n: number };
          expect(got.gram.shape).toEqual([C * 5, C * 5]);
          expect(got.V).toBe(C);
          expect(got.n).toBe(5);
          expect(maxRelErr(got.gram.dataSync(), expected)).toBeLessThan(TOL);
        });
      }
      r.dispose();
      tf.dispose([x, y]);
      model.dispose();
    });
  }

  it('curvature subsampling: rows of the given samples, scaled by N/n', () => {
    const model = smallMlp(4, 5, 3, 'tanh', 5);
    const x = tf.randomNormal([6, 4], 0, 1, 'float32', 8);
    const y = makeTargets('softmaxCrossEntropy', 6, 3, 1);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    const samples = [4, 0, 2];
    const hook = new GramMatrix({ groups: groupsFull(ext), subsampling: samples });
    const r = ext.backward(x, y, { hooks: [hook] });
    const got = r.groups(hook)[0] as { gram: tf.Tensor2D; n: number };
    expect(got.n).toBe(3);
    expect(maxRelErr(got.gram.dataSync(), bruteGram(bf, bf.names, samples))).toBeLessThan(TOL);
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('Monte-Carlo: unbiased trace (statistical, fixed seed), reproducible per seed', () => {
    // trace(Gram_MC) = Σ_{m,n} ‖s̃_mn‖² is an unbiased estimate of trace(GGN).
    // z_mn = M‖s̃_mn‖² are M i.i.d. single-draw estimates of tr(GGN_n) per
    // sample n, so the standard error of the trace is √(Σ_n var_m(z_mn)/M);
    // we require agreement within 4 standard errors (two-sided p ≈ 6e-5).
    const model = smallMlp(3, 4, 3, 'tanh', 21);
    const x = tf.randomNormal([4, 3], 0, 1, 'float32', 4);
    const y = makeTargets('softmaxCrossEntropy', 4, 3, 0);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    let exactTrace = 0;
    for (let d = 0; d < bf.D; d++) exactTrace += bf.ggn[d * bf.D + d] as number;
    const M = 400;
    const hook = new GramMatrix({ groups: groupsFull(ext), mcSamples: M, seed: 7 });
    const r = ext.backward(x, y, { hooks: [hook] });
    const G = (r.groups(hook)[0] as { gram: tf.Tensor2D }).gram;
    expect(G.shape).toEqual([M * 4, M * 4]);
    const g = G.dataSync();
    const size = M * 4;
    let trace = 0;
    let varSum = 0;
    for (let n = 0; n < 4; n++) {
      const z: number[] = [];
      for (let m = 0; m < M; m++) z.push(M * (g[(m * 4 + n) * size + (m * 4 + n)] as number));
      const mean = z.reduce((a, b) => a + b, 0) / M;
      trace += mean;
      varSum += z.reduce((a, b) => a + (b - mean) ** 2, 0) / (M - 1);
    }
    const se = Math.sqrt(varSum / M);
    expect(Math.abs(trace - exactTrace)).toBeLessThan(4 * se);
    // Same seed → same samples; another seed → different samples.
    const again = ext.backward(x, y, { hooks: [new GramMatrix({ groups: groupsFull(ext), mcSamples: 2, seed: 7 })] });
    const again2 = ext.backward(x, y, { hooks: [new GramMatrix({ groups: groupsFull(ext), mcSamples: 2, seed: 7 })] });
    const other = ext.backward(x, y, { hooks: [new GramMatrix({ groups: groupsFull(ext), mcSamples: 2, seed: 8 })] });
    const a = (again.groups('GramMatrix')[0] as { gram: tf.Tensor }).gram.dataSync();
    const b = (again2.groups('GramMatrix')[0] as { gram: tf.Tensor }).gram.dataSync();
    const o = (other.groups('GramMatrix')[0] as { gram: tf.Tensor }).gram.dataSync();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(maxRelErr(o, a)).toBeGreaterThan(1e-3);
    tf.dispose([x, y]);
    [r, again, again2, other].forEach((q) => q.dispose());
    model.dispose();
  });

  it('no tensors leak across repeated steps', () => {
    const model = smallMlp(4, 5, 3, 'relu', 1);
    const x = tf.randomNormal([4, 4], 0, 1, 'float32', 1);
    const y = makeTargets('softmaxCrossEntropy', 4, 3, 1);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const hook = new GramMatrix({ groups: groupsPerLayer(ext), subsampling: [1, 3] });
    ext.backward(x, y, { hooks: [hook] }).dispose();
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) ext.backward(x, y, { hooks: [hook] }).dispose();
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('Gram routes for several patches per sample (T > 1)', () => {
  it('dense, patches and explicit routes equal explicit per-sample products', () => {
    const Xa = tf.randomNormal([3, 4, 5], 0, 1, 'float32', 1) as tf.Tensor3D;
    const Da = tf.randomNormal([2, 3, 4, 6], 0, 1, 'float32', 2) as tf.Tensor4D;
    const Xb = tf.randomNormal([2, 4, 5], 0, 1, 'float32', 3) as tf.Tensor3D;
    const Db = tf.randomNormal([1, 2, 4, 6], 0, 1, 'float32', 4) as tf.Tensor4D;
    const Pa = perSampleKernelProducts(Xa, Da);
    const Pb = perSampleKernelProducts(Xb, Db);
    const cross = new Float64Array(Pa.length * Pb.length);
    Pa.forEach((p, i) => Pb.forEach((q, j) => (cross[i * Pb.length + j] = dot(p, q))));
    const gram = new Float64Array(Pa.length * Pa.length);
    Pa.forEach((p, i) => Pa.forEach((q, j) => (gram[i * Pa.length + j] = dot(p, q))));
    for (const route of ['patches', 'explicit'] as const) {
      const c = kernelCrossGram(Xa, Da, Xb, Db, route);
      expect(c.shape).toEqual([6, 2]);
      expect(maxRelErr(c.dataSync(), cross)).toBeLessThan(TOL);
      const g = kernelCrossGram(Xa, Da, Xa, Da, route);
      expect(maxRelErr(g.dataSync(), gram)).toBeLessThan(TOL);
      tf.dispose([c, g]);
    }
    expect(() => kernelCrossGram(Xa, Da, Xb, Db, 'dense')).toThrow(/T = 1/);
    // Dense route (T = 1) against the same brute force.
    const X1 = tf.randomNormal([3, 1, 5], 0, 1, 'float32', 5) as tf.Tensor3D;
    const D1 = tf.randomNormal([2, 3, 1, 6], 0, 1, 'float32', 6) as tf.Tensor4D;
    const P1 = perSampleKernelProducts(X1, D1);
    const g1 = new Float64Array(36);
    P1.forEach((p, i) => P1.forEach((q, j) => (g1[i * 6 + j] = dot(p, q))));
    const k1 = kernelCrossGram(X1, D1, X1, D1);
    expect(maxRelErr(k1.dataSync(), g1)).toBeLessThan(TOL);
    // Bias: b = Σ_t D.
    const bg = biasCrossGram(Da, Db);
    const dA = Da.dataSync();
    const dB = Db.dataSync();
    const bias = (d: ArrayLike<number>, V: number, n: number, vi: number, m: number) =>
      Float64Array.from({ length: 6 }, (_, o) => {
        let s = 0;
        for (let t = 0; t < 4; t++) s += d[((vi * n + m) * 4 + t) * 6 + o] as number;
        return s + 0 * V;
      });
    const bexp = new Float64Array(12);
    for (let i = 0; i < 6; i++) for (let j = 0; j < 2; j++) bexp[i * 2 + j] = dot(bias(dA, 2, 3, Math.floor(i / 3), i % 3), bias(dB, 1, 2, 0, j));
    expect(maxRelErr(bg.dataSync(), bexp)).toBeLessThan(TOL);
    tf.dispose([Xa, Da, Xb, Db, X1, D1, k1, bg]);
  });

  it('weightedParamProduct equals Σ_i W[k,i] P_i (kernel and bias, V = 1 and V > 1)', () => {
    for (const V of [1, 3]) {
      const X = tf.randomNormal([3, 4, 5], 0, 1, 'float32', 10 + V) as tf.Tensor3D;
      const D = tf.randomNormal([V, 3, 4, 2], 0, 1, 'float32', 20 + V) as tf.Tensor4D;
      const W = tf.randomNormal([2, V * 3], 0, 1, 'float32', 30 + V) as tf.Tensor2D;
      const P = perSampleKernelProducts(X, D);
      const w = W.dataSync();
      const expected = new Float64Array(2 * 10);
      for (let k = 0; k < 2; k++) P.forEach((p, i) => p.forEach((pv, j) => (expected[k * 10 + j] += (w[k * V * 3 + i] as number) * pv)));
      const got = weightedParamProduct('kernel', [5, 2], X, D, W);
      expect(got.shape).toEqual([2, 5, 2]);
      expect(maxRelErr(got.dataSync(), expected)).toBeLessThan(TOL);
      const gb = weightedParamProduct('bias', [2], undefined, D, W);
      const d = D.dataSync();
      const eb = new Float64Array(4);
      for (let k = 0; k < 2; k++) {
        for (let i = 0; i < V * 3; i++) {
          for (let t = 0; t < 4; t++) for (let o = 0; o < 2; o++) eb[k * 2 + o] += (w[k * V * 3 + i] as number) * (d[(i * 4 + t) * 2 + o] as number);
        }
      }
      expect(maxRelErr(gb.dataSync(), eb)).toBeLessThan(TOL);
      tf.dispose([X, D, W, got, gb]);
    }
  });
});
