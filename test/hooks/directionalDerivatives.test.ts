/**
 * DirectionalDerivatives: γ_nk = N ⟨e_k, g_n⟩ and λ_nk = N Σ_v ⟨e_k, s_vn⟩²
 * (FORMAT.md §6.4) against brute-force per-sample gradients g_n and GGN
 * square-root vectors s_vn (autodiff Jacobians), with separate gradient and
 * curvature subsampling, and Monte-Carlo curvature (identities that hold
 * for any sample + a statistical test of the MC GGN with fixed seeds).
 *
 * Tolerance: γ and λ are float32 products of float32 eigenvectors (errors
 * ≲ 1e-5 relative, see eigh.test.ts) with float32 gradients: 1e-4 relative
 * to the largest entry of the reference.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { DirectionalDerivatives, type DirectionalDerivativesResult } from '../../hooks/directionalDerivatives';
import { allPositive, groupsFull, groupsPerLayer, groupsPerParam } from '../../hooks/groups';
import { addOuter, bruteForce, dot, flattenRows, groupIndices, makeTargets, matVec, restrictMat, restrictVec, smallMlp, type BruteForce } from '../helpers/ggnBruteForce';
import { maxRelErr } from '../conformance/compare';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const TOL = 1e-4;

expectNoLeaksPerTest();

/** Brute-force γ [gradSamples, K] and λ [ggnSamples, K] along the given eigenvectors. */
function bruteGammasLambdas(bf: BruteForce, names: readonly string[], E: Float64Array[], gradSamples: readonly number[], ggnSamples: readonly number[]) {
  const idx = groupIndices(bf, names);
  const N = bf.N;
  const gammas: number[] = [];
  for (const n of gradSamples) for (const e of E) gammas.push(N * dot(e, restrictVec(bf.grads[n] as Float64Array, idx)));
  const lambdas: number[] = [];
  for (const n of ggnSamples) {
    for (const e of E) {
      let s = 0;
      for (let v = 0; v < bf.C; v++) s += dot(e, restrictVec((bf.sqrt[v] as Float64Array[])[n] as Float64Array, idx)) ** 2;
      lambdas.push(N * s);
    }
  }
  return { gammas, lambdas };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('DirectionalDerivatives equal the brute-force directional derivatives', () => {
  for (const [kind, reduction] of [
    ['softmaxCrossEntropy', 'mean'],
    ['mse', 'sum'],
  ] as const) {
    it(`${kind}/${reduction}: full, per-layer and per-param blocks`, () => {
      const model = smallMlp(4, 5, 3, 'tanh', 6);
      const x = tf.randomNormal([5, 4], 0, 1, 'float32', 7);
      const y = makeTargets(kind, 5, 3, 2);
      const ext = extend(model, { loss: kind, reduction });
      const bf = bruteForce(model, kind, reduction, x, y);
      const hooks = [groupsFull(ext), groupsPerLayer(ext), groupsPerParam(ext)].map(
        (groups, i) => new DirectionalDerivatives({ name: `dd${i}`, groups, evecs: true }),
      );
      const r = ext.backward(x, y, { hooks });
      for (const h of hooks) {
        h.groups.forEach((g, i) => {
          const res = r.groups(h)[i] as DirectionalDerivativesResult;
          const K = res.selected.length;
          expect(res.gammas.shape).toEqual([5, K]);
          expect(res.lambdas.shape).toEqual([5, K]);
          const E = flattenRows(res.evecs as tf.Tensor[], K);
          const ref = bruteGammasLambdas(bf, g.params as string[], E, range(5), range(5));
          expect(maxRelErr(res.gammas.dataSync(), ref.gammas)).toBeLessThan(TOL);
          expect(maxRelErr(res.lambdas.dataSync(), ref.lambdas)).toBeLessThan(TOL);
          // mean_n λ_nk = λ_k (exact identity of the definition).
          const lam = res.lambdas.arraySync() as number[][];
          res.selected.forEach((s, k) => {
            const mean = lam.reduce((a, row) => a + (row[k] as number), 0) / 5;
            expect(Math.abs(mean - (res.evals[s] as number))).toBeLessThan(1e-5 * Math.max(...res.evals));
          });
        });
      }
      r.dispose();
      tf.dispose([x, y]);
      model.dispose();
    });
  }

  it('separate gradient and curvature subsampling', () => {
    const model = smallMlp(4, 5, 3, 'tanh', 9);
    const x = tf.randomNormal([7, 4], 0, 1, 'float32', 3);
    const y = makeTargets('softmaxCrossEntropy', 7, 3, 1);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    const gradS = [5, 1];
    const ggnS = [0, 6, 2, 3];
    const hook = new DirectionalDerivatives({ groups: groupsPerLayer(ext), subsamplingGrad: gradS, subsamplingGgn: ggnS, evecs: true });
    const r = ext.backward(x, y, { hooks: [hook] });
    // Eigenvectors of (N/n) Σ_{n ∈ ggnS} J_nᵀ H_n J_n.
    const sub = new Float64Array(bf.D * bf.D);
    for (let v = 0; v < bf.C; v++) for (const n of ggnS) addOuter(sub, (bf.sqrt[v] as Float64Array[])[n] as Float64Array, 7 / 4);
    hook.groups.forEach((g, i) => {
      const res = r.groups(hook)[i] as DirectionalDerivativesResult;
      const K = res.selected.length;
      expect(res.gammas.shape).toEqual([2, K]);
      expect(res.lambdas.shape).toEqual([4, K]);
      const idx = groupIndices(bf, g.params as string[]);
      const G = restrictMat(sub, bf.D, idx);
      const E = flattenRows(res.evecs as tf.Tensor[], K);
      const lmax = Math.max(...res.evals);
      E.forEach((e, k) => {
        const Ge = matVec(G, e);
        const lam = res.evals[res.selected[k] as number] as number;
        let r2 = 0;
        for (let j = 0; j < e.length; j++) r2 += ((Ge[j] as number) - lam * (e[j] as number)) ** 2;
        expect(Math.sqrt(r2)).toBeLessThan(1e-4 * lmax);
      });
      const ref = bruteGammasLambdas(bf, g.params as string[], E, gradS, ggnS);
      expect(maxRelErr(res.gammas.dataSync(), ref.gammas)).toBeLessThan(TOL);
      expect(maxRelErr(res.lambdas.dataSync(), ref.lambdas)).toBeLessThan(TOL);
    });
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('Monte-Carlo curvature: γ identity for MC directions, and the MC GGN is unbiased (fixed seeds)', () => {
    const model = smallMlp(3, 4, 3, 'tanh', 12);
    const x = tf.randomNormal([4, 3], 0, 1, 'float32', 5);
    const y = makeTargets('softmaxCrossEntropy', 4, 3, 3);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    const w = bf.grad; // a fixed direction
    const exact = dot(w, matVec(bf.ggn, w));
    // q_r = wᵀ Ĝ_r w = Σ_k λ_k ⟨e_k, w⟩² (stable: λ⟨e, w⟩² = ⟨V u, w⟩²) is an
    // unbiased estimate of wᵀ G w for each seed; R independent seeds give a
    // mean whose standard error is std/√R: require 4 standard errors.
    const R = 12;
    const q: number[] = [];
    for (let seed = 0; seed < R; seed++) {
      const hook = new DirectionalDerivatives({ groups: groupsFull(ext, { criterion: allPositive() }), mcSamplesGgn: 3, seed: 100 + seed, evecs: true, warnSmallEigvals: 0 });
      const r = ext.backward(x, y, { hooks: [hook] });
      const res = r.groups(hook)[0] as DirectionalDerivativesResult;
      const K = res.selected.length;
      expect(res.lambdas.shape).toEqual([4, K]);
      const E = flattenRows(res.evecs as tf.Tensor[], K);
      q.push(E.reduce((s, e, k) => s + (res.evals[res.selected[k] as number] as number) * dot(e, w) ** 2, 0));
      if (seed === 0) {
        // γ = N ⟨e_k, g_n⟩ holds for any directions; check on the well-conditioned ones.
        const top = res.selected.map((s, k) => ((res.evals[s] as number) > 1e-3 * Math.max(...res.evals) ? k : -1)).filter((k) => k >= 0);
        const g = res.gammas.arraySync() as number[][];
        for (const k of top) {
          for (let n = 0; n < 4; n++) {
            const ref = 4 * dot(E[k] as Float64Array, bf.grads[n] as Float64Array);
            expect(Math.abs((g[n] as number[])[k] as number - ref)).toBeLessThan(1e-3 * Math.max(1e-12, ...g.flat().map(Math.abs)));
          }
        }
      }
      r.dispose();
    }
    const mean = q.reduce((a, b) => a + b, 0) / R;
    const sd = Math.sqrt(q.reduce((a, b) => a + (b - mean) ** 2, 0) / (R - 1));
    expect(sd).toBeGreaterThan(0);
    expect(Math.abs(mean - exact)).toBeLessThan(4 * (sd / Math.sqrt(R)));
    tf.dispose([x, y]);
    model.dispose();
  });

  it('without evecs no parameter-space vectors are returned; K = 0 works; no leaks across steps', () => {
    const model = smallMlp(4, 5, 3, 'relu', 2);
    const x = tf.randomNormal([4, 4], 0, 1, 'float32', 2);
    const y = makeTargets('softmaxCrossEntropy', 4, 3, 2);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const a = new DirectionalDerivatives({ name: 'a', groups: groupsPerLayer(ext), subsamplingGrad: [0, 2] });
    const none = new DirectionalDerivatives({ name: 'none', groups: groupsFull(ext, { criterion: () => [] }) });
    ext.backward(x, y, { hooks: [a, none] }).dispose();
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const r = ext.backward(x, y, { hooks: [a, none] });
      const ra = r.groups(a)[0] as DirectionalDerivativesResult;
      expect(ra.evecs).toBeUndefined();
      expect(ra.gammas.shape[0]).toBe(2);
      const rn = r.groups(none)[0] as DirectionalDerivativesResult;
      expect(rn.gammas.shape).toEqual([4, 0]);
      expect(rn.lambdas.shape).toEqual([4, 0]);
      r.dispose();
    }
    expect(tf.memory().numTensors).toBe(n0);
    expect(() => ext.backward(x, y, { hooks: [new DirectionalDerivatives({ groups: groupsFull(ext), subsamplingGrad: [4] })] })).toThrow(/outside the batch of 4/);
    expect(() => new DirectionalDerivatives({ groups: groupsFull(ext), mcSamplesGgn: -1 })).toThrow(/mcSamplesGgn/);
    expect(() => new DirectionalDerivatives({ groups: groupsFull(ext), subsampling: [0] } as unknown as { groups: [] })).toThrow(
      /unknown option 'subsampling'; use 'subsamplingGgn'/,
    );
    tf.dispose([x, y]);
    model.dispose();
  });
});
