/**
 * Eigvalsh: the eigenvalues from the Gram matrix equal the nonzero
 * eigenvalues of the explicit D_g × D_g GGN block (brute force: autodiff
 * Jacobians, FORMAT.md's loss factor, float64 Jacobi), for every block
 * structure, with curvature subsampling, and the cutoff option works.
 *
 * Tolerance: the Gram matrix is float32 (entry noise ~1e-7 · max), so
 * eigenvalues carry absolute errors ~1e-6 · λ_max: we compare eigenvalues
 * above 1e-5 · λ_max (the only reproducible ones, FORMAT.md §6.4) to 1e-5 · λ_max.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { Eigvalsh } from '../../hooks/eigvalsh';
import { groupsFull, groupsPerLayer, groupsPerParam } from '../../hooks/groups';
import { addOuter, bruteForce, groupIndices, jacobiEigen, makeTargets, restrictMat, restrictVec, smallMlp, type BruteForce } from '../helpers/ggnBruteForce';
import type { LossKind } from '../helpers/autodiff';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const REL = 1e-5;

expectNoLeaksPerTest();

/** Eigenvalues above REL·max of a (group-restricted) GGN. */
function reliable(values: readonly number[], max: number): number[] {
  return values.filter((v) => Math.abs(v) > REL * max);
}

function expectSameSpectrum(got: readonly number[], reference: readonly number[]): void {
  const max = Math.max(...reference.map(Math.abs));
  const a = reliable(got, max);
  const b = reliable(reference, max);
  expect(a.length).toBe(b.length);
  a.forEach((v, i) => expect(Math.abs(v - (b[i] as number))).toBeLessThan(REL * max));
  // Ascending order.
  for (let i = 1; i < got.length; i++) expect(got[i]).toBeGreaterThanOrEqual(got[i - 1] as number);
}

function groupGgnEigenvalues(bf: BruteForce, names: readonly string[], ggn = bf.ggn): number[] {
  const idx = groupIndices(bf, names);
  return jacobiEigen(restrictMat(ggn, bf.D, idx), idx.length).values;
}

describe('Eigvalsh equals the eigenvalues of the explicit GGN', () => {
  const cases: { kind: LossKind; reduction: 'mean' | 'sum'; act: string; N: number }[] = [
    { kind: 'softmaxCrossEntropy', reduction: 'mean', act: 'tanh', N: 5 },
    { kind: 'mse', reduction: 'mean', act: 'sigmoid', N: 3 },
    { kind: 'sigmoidCrossEntropy', reduction: 'sum', act: 'elu', N: 6 },
  ];
  for (const c of cases) {
    it(`${c.kind}/${c.reduction}/${c.act}, N = ${c.N}: full, per-layer, per-param`, () => {
      const C = c.kind === 'sigmoidCrossEntropy' ? 1 : 3;
      const model = smallMlp(4, 5, C, c.act, 3);
      const x = tf.randomNormal([c.N, 4], 0, 1, 'float32', 9);
      const y = makeTargets(c.kind, c.N, C, 4);
      const ext = extend(model, { loss: c.kind, reduction: c.reduction });
      const bf = bruteForce(model, c.kind, c.reduction, x, y);
      const hooks = [
        new Eigvalsh({ name: 'full', groups: groupsFull(ext) }),
        new Eigvalsh({ name: 'layer', groups: groupsPerLayer(ext) }),
        new Eigvalsh({ name: 'param', groups: groupsPerParam(ext) }),
      ];
      const r = ext.backward(x, y, { hooks });
      for (const h of hooks) {
        h.groups.forEach((g, i) => {
          const got = (r.groups(h)[i] as { evals: number[] }).evals;
          expect(got.length).toBeLessThanOrEqual(C * c.N);
          expectSameSpectrum(got, groupGgnEigenvalues(bf, g.params as string[]));
        });
      }
      r.dispose();
      tf.dispose([x, y]);
      model.dispose();
    });
  }

  it('curvature subsampling: eigenvalues of (N/n) Σ_{n ∈ sub} J_nᵀ H_n J_n', () => {
    const model = smallMlp(4, 6, 3, 'tanh', 8);
    const x = tf.randomNormal([8, 4], 0, 1, 'float32', 2);
    const y = makeTargets('softmaxCrossEntropy', 8, 3, 5);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    const samples = [6, 1, 3];
    const sub = new Float64Array(bf.D * bf.D);
    for (let v = 0; v < bf.C; v++) for (const n of samples) addOuter(sub, (bf.sqrt[v] as Float64Array[])[n] as Float64Array, 8 / 3);
    const hook = new Eigvalsh({ groups: groupsPerLayer(ext), subsampling: samples });
    const r = ext.backward(x, y, { hooks: [hook] });
    hook.groups.forEach((g, i) => {
      expectSameSpectrum((r.groups(hook)[i] as { evals: number[] }).evals, groupGgnEigenvalues(bf, g.params as string[], sub));
    });
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('relativeCutoff: negative keeps all V·n Gram eigenvalues; a large one keeps only the top', () => {
    const model = smallMlp(3, 4, 3, 'tanh', 2);
    const x = tf.randomNormal([4, 3], 0, 1, 'float32', 2);
    const y = makeTargets('softmaxCrossEntropy', 4, 3, 5);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const all = new Eigvalsh({ name: 'all', groups: groupsFull(ext), relativeCutoff: -1, reduceFactor: false });
    const allReduced = new Eigvalsh({ name: 'allReduced', groups: groupsFull(ext), relativeCutoff: -1 });
    const dflt = new Eigvalsh({ name: 'default', groups: groupsFull(ext), reduceFactor: false });
    const top = new Eigvalsh({ name: 'top', groups: groupsFull(ext), relativeCutoff: 0.999999 });
    const r = ext.backward(x, y, { hooks: [all, allReduced, dflt, top] });
    const a = (r.groups(all)[0] as { evals: number[] }).evals;
    const ar = (r.groups(allReduced)[0] as { evals: number[] }).evals;
    const d = (r.groups(dflt)[0] as { evals: number[] }).evals;
    const t = (r.groups(top)[0] as { evals: number[] }).evals;
    // BackPACK's factor: C·n = 12 Gram eigenvalues; the reduced factor (default): (C−1)·n = 8.
    expect(a.length).toBe(12);
    expect(ar.length).toBe(8);
    // Softmax CE: each sample's factor has rank C − 1, so 4 Gram eigenvalues are (numerically) zero.
    expect(d.length).toBeLessThanOrEqual(12);
    expect(d.length).toBeGreaterThanOrEqual(8);
    // The 8 nonzero ones are the reduced Gram matrix's (float32 Gram matrices: 1e-5 relative).
    const nonzero = [...a].sort((u, v) => Math.abs(v) - Math.abs(u)).slice(0, 8).sort((u, v) => u - v);
    expectSameSpectrum(ar, nonzero);
    expect(t).toEqual([Math.max(...ar)]);
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it("method 'twoStage' (TF.js band reduction) agrees with 'float64'; bad methods are refused", () => {
    // Gram size 3·16 = 48 > 2·bandwidth + 2, so the two-stage route really runs.
    // Its absolute error is ≲ 1e-6 · λ_max (src/linalg/large.ts): compare to 1e-5 · λ_max.
    const model = smallMlp(6, 8, 3, 'tanh', 12);
    const x = tf.randomNormal([16, 6], 0, 1, 'float32', 13);
    const y = makeTargets('softmaxCrossEntropy', 16, 3, 3);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const a = new Eigvalsh({ name: 'f64', groups: groupsFull(ext), method: 'float64' });
    const b = new Eigvalsh({ name: 'two', groups: groupsFull(ext), method: 'twoStage' });
    const r = ext.backward(x, y, { hooks: [a, b] });
    const ea = (r.groups(a)[0] as { evals: number[] }).evals;
    const eb = (r.groups(b)[0] as { evals: number[] }).evals;
    expectSameSpectrum(eb, ea);
    // The two-stage route drops eigenvalues below its accuracy (1e-6 · λ_max).
    const max = Math.max(...eb);
    expect(Math.min(...eb.map(Math.abs))).toBeGreaterThan(1e-6 * max);
    r.dispose();
    expect(() => new Eigvalsh({ groups: groupsFull(ext), method: 'fast' as 'auto' })).toThrow(/'auto', 'float64' or 'twoStage'/);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('restricting a GGN to a group is what per-layer blocks use (sanity of the reference)', () => {
    // The per-param block of a bias is Σ_vn b bᵀ: its trace equals Σ‖b_vn‖².
    const model = smallMlp(3, 4, 2, 'tanh', 4);
    const x = tf.randomNormal([3, 3], 0, 1, 'float32', 1);
    const y = makeTargets('mse', 3, 2, 1);
    const bf = bruteForce(model, 'mse', 'mean', x, y);
    const bias = bf.names[3] as string;
    const idx = groupIndices(bf, [bias]);
    let tr = 0;
    for (let v = 0; v < bf.C; v++) for (let n = 0; n < 3; n++) tr += restrictVec((bf.sqrt[v] as Float64Array[])[n] as Float64Array, idx).reduce((s, q) => s + q * q, 0);
    const ev = groupGgnEigenvalues(bf, [bias]);
    expect(Math.abs(ev.reduce((s, q) => s + q, 0) - tr)).toBeLessThan(1e-12 * Math.max(1, tr));
    tf.dispose([x, y]);
    model.dispose();
  });
});
