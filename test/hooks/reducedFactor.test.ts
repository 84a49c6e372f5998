/**
 * The reduced softmax cross-entropy factor S̃ (C−1 rows): S̃ᵀS̃ equals the
 * explicit Hessian diag(p) − ppᵀ (over the normaliser) for ordinary and
 * extreme logits; the ViViT hooks give the same eigenvalues, eigenvectors
 * (up to sign), γ, λ and Newton steps with the reduced factor as with
 * BackPACK's factor; the reduced quantity is used for softmax cross-entropy
 * only, and GramMatrix refuses the solver options.
 *
 * Tolerances: S̃ is computed in float64 and stored in float32: 1e-6 relative.
 * Hook results are float32 Gram-space computations on two different Gram
 * matrices of the same GGN: eigenvalues 1e-5·λ_max; eigenvectors, γ and the
 * Newton step 1e-4 relative to their largest entry (the small MLPs here
 * have well separated top eigenvalues, see the checks on the gaps).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { SoftmaxCrossEntropyLoss } from '../../src/derivatives/losses/softmaxCrossEntropy';
import { MSELoss } from '../../src/derivatives/losses/index';
import { hasReducibleFactor, reducedSoftmaxFactor, SqrtGgnReducedQuantity } from '../../hooks/reducedFactor';
import { DirectionalDampedNewton, type DirectionalDampedNewtonResult } from '../../hooks/directionalDampedNewton';
import { DirectionalDerivatives, type DirectionalDerivativesResult } from '../../hooks/directionalDerivatives';
import { Eigh, type EighResult } from '../../hooks/eigh';
import { Eigvalsh } from '../../hooks/eigvalsh';
import { GramMatrix } from '../../hooks/gramMatrix';
import { groupsFull, groupsPerLayer, topK } from '../../hooks/groups';
import { dot, flattenRows, makeTargets, smallMlp } from '../helpers/ggnBruteForce';
import { maxRelErr } from '../conformance/compare';
import { expectNoLeaksPerTest } from '../helpers/leaks';

expectNoLeaksPerTest();

describe('reducedSoftmaxFactor', () => {
  it('S̃ᵀS̃ = (diag p − ppᵀ)/norm for ordinary and extreme logits, C = 2 … 5', () => {
    for (const C of [2, 3, 5]) {
      const rows = [
        Array.from({ length: C }, (_, c) => 0.3 * c - 0.5),
        Array.from({ length: C }, (_, c) => (c === C - 1 ? 30 : 0)), // p ≈ e_C (u_C ≈ 1)
        Array.from({ length: C }, (_, c) => (c === 0 ? 30 : 0)), // p ≈ e_1 (u_C ≈ 0)
        Array.from({ length: C }, () => 0), // uniform
      ];
      const n = rows.length;
      const logits = tf.tensor2d(rows.flat(), [n, C]);
      const norm = 7;
      const S = reducedSoftmaxFactor(logits, norm);
      expect(S.shape).toEqual([C - 1, n, C]);
      const s = S.dataSync();
      rows.forEach((z, m) => {
        const zmax = Math.max(...z);
        const e = z.map((v) => Math.exp(v - zmax));
        const sum = e.reduce((a, b) => a + b, 0);
        const p = e.map((v) => v / sum);
        const H = new Float64Array(C * C);
        const StS = new Float64Array(C * C);
        for (let a = 0; a < C; a++) {
          for (let b = 0; b < C; b++) {
            H[a * C + b] = ((a === b ? (p[a] as number) : 0) - (p[a] as number) * (p[b] as number)) / norm;
            for (let r = 0; r < C - 1; r++) StS[a * C + b] += (s[(r * n + m) * C + a] as number) * (s[(r * n + m) * C + b] as number);
          }
        }
        // Absolute against 1/norm (H's entries are at most 1/(4 norm)): float32 storage of S̃.
        for (let i = 0; i < C * C; i++) expect(Math.abs((StS[i] as number) - (H[i] as number))).toBeLessThan(1e-6 / norm);
      });
      tf.dispose([logits, S]);
    }
    const one = tf.zeros([2, 1]) as tf.Tensor2D;
    expect(() => reducedSoftmaxFactor(one, 1)).toThrow(/C ≥ 2/);
    one.dispose();
  });

  it('only curvpack’s own softmax cross-entropy is reducible', () => {
    expect(hasReducibleFactor(new SoftmaxCrossEntropyLoss('mean'))).toBe(true);
    expect(hasReducibleFactor(new MSELoss('mean'))).toBe(false);
    const custom = Object.assign(Object.create(new SoftmaxCrossEntropyLoss('mean')) as SoftmaxCrossEntropyLoss, {
      sqrtHessian: () => tf.zeros([1, 1, 1]) as tf.Tensor3D,
    });
    expect(hasReducibleFactor(custom)).toBe(false);
    expect(new SqrtGgnReducedQuantity([1, 3]).key).toBe('sqrtGgnExactReduced@1,3');
  });
});

describe('ViViT hooks with the reduced factor equal those with BackPACK’s factor', () => {
  function model(N: number, seed: number) {
    const m = smallMlp(4, 6, 4, 'tanh', seed);
    const x = tf.randomNormal([N, 4], 0, 1, 'float32', seed + 1);
    const y = makeTargets('softmaxCrossEntropy', N, 4, seed);
    return { m, x, y, ext: extend(m, { loss: 'softmaxCrossEntropy' }) };
  }

  /** Rows of `got` equal those of `ref` up to a sign per row (sign from the larger entry). */
  function expectRowsUpToSign(got: Float64Array[], ref: Float64Array[], tol: number): number[] {
    return got.map((g, k) => {
      const r = ref[k] as Float64Array;
      const sign = Math.sign(dot(g, r)) || 1;
      expect(maxRelErr(g.map((v) => sign * v), r)).toBeLessThan(tol);
      return sign;
    });
  }

  it('Eigvalsh, Eigh, DirectionalDerivatives and DirectionalDampedNewton (per layer, top 3; curvature subsampling)', () => {
    const { m, x, y, ext } = model(7, 21);
    const mk = (reduceFactor: boolean) => {
      const tag = reduceFactor ? 'r' : 'f';
      const groups = groupsPerLayer(ext, { criterion: topK(3) });
      return [
        new Eigvalsh({ name: `ev${tag}`, groups: groupsFull(ext), reduceFactor }),
        new Eigvalsh({ name: `evs${tag}`, groups: groupsFull(ext), subsampling: [0, 3, 5], reduceFactor }),
        new Eigh({ name: `eh${tag}`, groups, reduceFactor }),
        new DirectionalDerivatives({ name: `dd${tag}`, groups, subsamplingGrad: [1, 2, 6], reduceFactor }),
        new DirectionalDampedNewton({ name: `dn${tag}`, groups, evecs: true, reduceFactor }),
      ] as const;
    };
    const reduced = mk(true);
    const full = mk(false);
    const r = ext.backward(x, y, { hooks: [...reduced, ...full] });
    expect(reduced[0].sqrtQuantity.key).toBe('sqrtGgnExactReduced');
    expect(full[0].sqrtQuantity.key).toBe('sqrtGgnExact');
    for (const i of [0, 1]) {
      const a = (r.groups(reduced[i] as Eigvalsh)[0] as { evals: number[] }).evals;
      const b = (r.groups(full[i] as Eigvalsh)[0] as { evals: number[] }).evals;
      // BackPACK's factor adds n (numerically) zero Gram eigenvalues; compare the reliable ones.
      const max = Math.max(...b);
      const rel = (v: readonly number[]) => v.filter((l) => l > 1e-5 * max);
      expect(rel(a).length).toBe(rel(b).length);
      rel(a).forEach((l, k) => expect(Math.abs(l - (rel(b)[k] as number))).toBeLessThan(1e-5 * max));
    }
    const groupsCount = groupsPerLayer(ext).length;
    for (let g = 0; g < groupsCount; g++) {
      const eR = r.groups(reduced[2])[g] as EighResult;
      const eF = r.groups(full[2])[g] as EighResult;
      const lam = eF.selected.map((s) => eF.evals[s] as number);
      // Well separated: relative gaps ≥ 1e-2, so float32 eigenvectors agree to ~1e-5.
      for (let k = 1; k < lam.length; k++) expect(Math.abs((lam[k] as number) - (lam[k - 1] as number))).toBeGreaterThan(1e-2 * Math.max(...lam));
      expect(maxRelErr(eR.selected.map((s) => eR.evals[s] as number), lam)).toBeLessThan(1e-5);
      const signs = expectRowsUpToSign(flattenRows(eR.evecs, 3), flattenRows(eF.evecs, 3), 1e-4);
      const dR = r.groups(reduced[3])[g] as DirectionalDerivativesResult;
      const dF = r.groups(full[3])[g] as DirectionalDerivativesResult;
      expect(dR.lambdas.shape).toEqual(dF.lambdas.shape);
      expect(maxRelErr(dR.lambdas.dataSync(), dF.lambdas.dataSync())).toBeLessThan(1e-4);
      const gR = dR.gammas.arraySync() as number[][];
      const gF = dF.gammas.arraySync() as number[][];
      expect(maxRelErr(gR.flatMap((row) => row.map((v, k) => (signs[k] as number) * v)), gF.flat())).toBeLessThan(1e-4);
      const nR = r.groups(reduced[4])[g] as DirectionalDampedNewtonResult;
      const nF = r.groups(full[4])[g] as DirectionalDampedNewtonResult;
      const step = (res: DirectionalDampedNewtonResult) => Float64Array.from(res.newtonStep.flatMap((t) => Array.from(t.dataSync())));
      expect(maxRelErr(step(nR), step(nF))).toBeLessThan(1e-4);
      expect(maxRelErr(nR.coefficients.map((a, k) => (signs[k] as number) * a), nF.coefficients)).toBeLessThan(1e-4);
    }
    r.dispose();
    tf.dispose([x, y]);
    m.dispose();
  });

  it('other losses keep BackPACK’s factor; GramMatrix refuses the solver options', () => {
    const m = smallMlp(3, 4, 2, 'tanh', 5);
    const ext = extend(m, { loss: 'mse' });
    const x = tf.randomNormal([3, 3], 0, 1, 'float32', 6);
    const y = tf.randomNormal([3, 2], 0, 1, 'float32', 7);
    const h = new Eigvalsh({ groups: groupsFull(ext) });
    ext.backward(x, y, { hooks: [h] }).dispose();
    expect(h.sqrtQuantity.key).toBe('sqrtGgnExact');
    expect(() => new GramMatrix({ groups: groupsFull(ext), reduceFactor: true } as never)).toThrow(/BackPACK's factor/);
    expect(() => new GramMatrix({ groups: groupsFull(ext), method: 'float64' } as never)).toThrow(/unknown option 'method'/);
    expect(() => new Eigvalsh({ groups: groupsFull(ext), reduceFactor: 1 as never })).toThrow(/reduceFactor/);
    tf.dispose([x, y]);
    m.dispose();
  });
});
