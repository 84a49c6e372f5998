/**
 * DirectionalDampedNewton: the step s = Σ_k −mean γ_k / (mean λ_k + δ_k) e_k
 * against a brute-force step from the explicit GGN's eigenpairs
 * (−Σ_k ⟨e_k, g⟩/(λ_k + δ_k) e_k, basis-independent for constant damping),
 * the damping callable's arguments and effect, the constant-damping helper,
 * gradient subsampling, errors and leaks.
 *
 * Tolerance: the step is a float32 combination of float32 eigenvectors:
 * 1e-4 relative to its largest entry.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { DirectionalDampedNewton, newtonStepMap, type DirectionalDampedNewtonResult } from '../../hooks/directionalDampedNewton';
import { GramMatrix } from '../../hooks/gramMatrix';
import { constantDamping, groupsFull, groupsPerLayer, groupsPerParam, topK, type HostMatrix } from '../../hooks/groups';
import { bruteForce, dot, flattenRows, groupIndices, jacobiEigen, makeTargets, restrictMat, restrictVec, smallMlp, type BruteForce } from '../helpers/ggnBruteForce';
import { maxRelErr } from '../conformance/compare';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const TOL = 1e-4;

expectNoLeaksPerTest();

/**
 * Brute-force step of a group: eigenpairs of the explicit GGN block with
 * λ > ratio·λ_max (ratio = ViViT's 1e-4 by default), s = −Σ ⟨e, ḡ⟩/(λ + δ(λ)) e,
 * ḡ = the mean over `gradSamples` of N·g_n (the gradient without subsampling).
 */
function bruteStep(bf: BruteForce, names: readonly string[], delta: (l: number) => number, gradSamples: readonly number[], ratio = 1e-4): Float64Array {
  const idx = groupIndices(bf, names);
  const { values, vectors } = jacobiEigen(restrictMat(bf.ggn, bf.D, idx), idx.length);
  const lmax = Math.max(...values);
  const g = new Float64Array(idx.length);
  for (const n of gradSamples) {
    const gn = restrictVec(bf.grads[n] as Float64Array, idx);
    for (let i = 0; i < g.length; i++) g[i] += (bf.N * (gn[i] as number)) / gradSamples.length;
  }
  const s = new Float64Array(idx.length);
  values.forEach((l, k) => {
    if (!(l > ratio * lmax)) return;
    const e = vectors[k] as Float64Array;
    const a = -dot(e, g) / (l + delta(l));
    for (let i = 0; i < s.length; i++) s[i] += a * (e[i] as number);
  });
  return s;
}

function flatStep(res: DirectionalDampedNewtonResult): Float64Array {
  return Float64Array.from(res.newtonStep.flatMap((t) => Array.from(t.dataSync())));
}

describe('DirectionalDampedNewton equals the brute-force damped Newton step', () => {
  for (const [kind, reduction] of [
    ['softmaxCrossEntropy', 'mean'],
    ['mse', 'mean'],
  ] as const) {
    it(`${kind}/${reduction}: constant damping 1, every block structure`, () => {
      const model = smallMlp(4, 5, 3, 'tanh', 14);
      const x = tf.randomNormal([5, 4], 0, 1, 'float32', 15);
      const y = makeTargets(kind, 5, 3, 1);
      const ext = extend(model, { loss: kind, reduction });
      const bf = bruteForce(model, kind, reduction, x, y);
      const hooks = [groupsFull(ext), groupsPerLayer(ext), groupsPerParam(ext)].map((groups, i) => new DirectionalDampedNewton({ name: `n${i}`, groups }));
      const r = ext.backward(x, y, { hooks });
      for (const h of hooks) {
        h.groups.forEach((g, i) => {
          const res = r.groups(h)[i] as DirectionalDampedNewtonResult;
          res.newtonStep.forEach((t, p) => expect(t.shape).toEqual(ext.layout.resolve(res.params[p] as string).shape));
          expect(res.damping).toEqual(res.selected.map(() => 1));
          const ref = bruteStep(bf, g.params as string[], () => 1, [0, 1, 2, 3, 4]);
          expect(maxRelErr(flatStep(res), ref)).toBeLessThan(TOL);
        });
      }
      // newtonStepMap: variable name → the per-layer steps (the results' own tensors).
      const map = newtonStepMap(r.groups(hooks[1] as DirectionalDampedNewton));
      expect(Object.keys(map)).toEqual(ext.params.map((p) => p.name));
      (r.groups(hooks[1] as DirectionalDampedNewton) as DirectionalDampedNewtonResult[]).forEach((res) =>
        res.params.forEach((name, p) => expect(map[name]).toBe(res.newtonStep[p])),
      );
      r.dispose();
      tf.dispose([x, y]);
      model.dispose();
    });
  }

  it('the damping callable gets (evals, gramEvecs, gammas, lambdas) and its δ is used', () => {
    const model = smallMlp(4, 5, 3, 'tanh', 16);
    const x = tf.randomNormal([6, 4], 0, 1, 'float32', 17);
    const y = makeTargets('softmaxCrossEntropy', 6, 3, 2);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    const calls: { evals: number[]; U: HostMatrix; G: HostMatrix; L: HostMatrix }[] = [];
    const damping = (evals: readonly number[], U: HostMatrix, G: HostMatrix, L: HostMatrix) => {
      calls.push({ evals: [...evals], U, G, L });
      return evals.map((l) => 0.5 * l);
    };
    const gradS = [4, 0, 3];
    // reduceFactor false: gramEvecs live in the Gram space of BackPACK's factor (C·n rows), checked against GramMatrix.
    const hook = new DirectionalDampedNewton({ groups: groupsFull(ext, { damping, criterion: topK(4) }), subsamplingGrad: gradS, evecs: true, reduceFactor: false });
    const gram = new GramMatrix({ groups: groupsFull(ext) });
    const r = ext.backward(x, y, { hooks: [hook, gram] });
    const res = r.groups(hook)[0] as DirectionalDampedNewtonResult;
    expect(calls.length).toBe(1);
    const c = calls[0] as (typeof calls)[number];
    expect(c.evals).toEqual(res.selected.map((s) => res.evals[s]));
    expect([c.U.rows, c.U.cols, c.G.rows, c.G.cols, c.L.rows, c.L.cols]).toEqual([18, 4, 3, 4, 6, 4]);
    // gramEvecs are unit eigenvectors of the Gram matrix: Gram u_k = λ_k u_k.
    const Gm = (r.groups(gram)[0] as { gram: tf.Tensor2D }).gram.arraySync() as number[][];
    for (let k = 0; k < 4; k++) {
      const u = Array.from({ length: 18 }, (_, i) => c.U.data[i * 4 + k] as number);
      expect(Math.abs(dot(u, u) - 1)).toBeLessThan(1e-12);
      const Gu = Gm.map((row) => dot(row, u));
      expect(maxRelErr(Gu, u.map((v) => v * (c.evals[k] as number)))).toBeLessThan(1e-4);
    }
    expect(maxRelErr(c.G.data, res.gammas.dataSync())).toBeLessThan(1e-6);
    expect(maxRelErr(c.L.data, res.lambdas.dataSync())).toBeLessThan(1e-6);
    expect(res.damping).toEqual(c.evals.map((l) => 0.5 * l));
    // Coefficients a_k = −mean γ_k / (mean λ_k + δ_k) (computed from float64 λ; the result holds float32 copies).
    const g = res.gammas.arraySync() as number[][];
    const l = res.lambdas.arraySync() as number[][];
    res.coefficients.forEach((a, k) => {
      const mg = g.reduce((s, row) => s + (row[k] as number), 0) / g.length;
      const ml = l.reduce((s, row) => s + (row[k] as number), 0) / l.length;
      expect(Math.abs(a - -mg / (ml + (res.damping[k] as number)))).toBeLessThan(1e-6 * Math.abs(a));
    });
    // s = Σ a_k e_k, and the brute-force step with δ = λ/2 over the top 4 directions.
    const E = flattenRows(res.evecs as tf.Tensor[], 4);
    const fromEvecs = new Float64Array(bf.D);
    E.forEach((e, k) => e.forEach((v, i) => (fromEvecs[i] += (res.coefficients[k] as number) * v)));
    const step = flatStep(res);
    expect(maxRelErr(step, fromEvecs)).toBeLessThan(TOL);
    const lambdasSorted = [...res.evals].sort((a, b) => a - b);
    const ratio = (((lambdasSorted[lambdasSorted.length - 4] as number) * 0.999) / Math.max(...res.evals));
    expect(maxRelErr(step, bruteStep(bf, bf.names, (lam) => 0.5 * lam, gradS, ratio))).toBeLessThan(TOL);
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('hook-level damping option and constantDamping; bad damping answers throw clearly (no leaks)', () => {
    const model = smallMlp(4, 5, 3, 'tanh', 18);
    const x = tf.randomNormal([4, 4], 0, 1, 'float32', 19);
    const y = makeTargets('mse', 4, 3, 3);
    const ext = extend(model, { loss: 'mse' });
    const bf = bruteForce(model, 'mse', 'mean', x, y);
    const hook = new DirectionalDampedNewton({ groups: groupsPerLayer(ext), damping: constantDamping(0.1) });
    const r = ext.backward(x, y, { hooks: [hook] });
    hook.groups.forEach((g, i) => {
      const res = r.groups(hook)[i] as DirectionalDampedNewtonResult;
      expect(maxRelErr(flatStep(res), bruteStep(bf, g.params as string[], () => 0.1, [0, 1, 2, 3]))).toBeLessThan(TOL);
    });
    r.dispose();
    const run = (damping: (e: readonly number[], ...rest: HostMatrix[]) => ArrayLike<number> | number) =>
      ext.backward(x, y, { hooks: [new DirectionalDampedNewton({ groups: groupsFull(ext, { damping }) })] });
    expect(() => run(() => [1])).toThrow(/returned 1 values for \d+ directions/);
    expect(() => run(() => NaN)).toThrow(/damping values must be finite/);
    expect(() =>
      run((_e, _u, _g, L) => {
        const K = L.cols;
        return Array.from({ length: K }, (_, k) => {
          let s = 0;
          for (let n = 0; n < L.rows; n++) s += L.data[n * K + k] as number;
          return -s / L.rows;
        });
      }),
    ).toThrow(/non-finite Newton coefficient/);
    expect(() => constantDamping(Infinity)).toThrow(/finite/);
    expect(() => new DirectionalDampedNewton({ groups: groupsFull(ext), damping: 1 as unknown as () => number })).toThrow(/'damping' must be a function/);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('no tensors leak across repeated steps (several hooks, exact and Monte-Carlo)', () => {
    const model = smallMlp(4, 5, 3, 'relu', 20);
    const x = tf.randomNormal([5, 4], 0, 1, 'float32', 21);
    const y = makeTargets('softmaxCrossEntropy', 5, 3, 4);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const hooks = [
      new DirectionalDampedNewton({ name: 'exact', groups: groupsPerParam(ext), evecs: true }),
      new DirectionalDampedNewton({ name: 'mc', groups: groupsFull(ext), mcSamplesGgn: 1, seed: 3, subsamplingGgn: [0, 1, 2] }),
    ];
    ext.backward(x, y, { hooks }).dispose();
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) ext.backward(x, y, { hooks }).dispose();
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([x, y]);
    model.dispose();
  });
});
