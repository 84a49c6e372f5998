/**
 * Eigh: parameter-space eigenvectors satisfy GGN e = λ e for the explicit
 * (brute-force) GGN block, are unit and orthogonal, follow the group's
 * criterion, warn (never print) for tiny eigenvalues, and bad groups or
 * criteria get clear errors without leaking tensors.
 *
 * Tolerances: e_k = V u_k / √λ_k from a float32 Gram matrix (entry noise
 * ~1e-7 · λ_max) has residual ‖G e − λ e‖ ≈ 1e-7 · λ_max / √(λ_k/λ_max); with
 * the default selection λ_k > 1e-4 · λ_max that is < 1e-5 · λ_max: we allow
 * 1e-4 · λ_max. Orthogonality errors scale like noise/λ_k: ≤ 1e-3 for the
 * default selection.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it, vi } from 'vitest';
import { extend } from '../../src/engine/extend';
import { Eigh, type EighResult } from '../../hooks/eigh';
import { Eigvalsh } from '../../hooks/eigvalsh';
import { aboveThreshold, allPositive, groupsFull, groupsPerLayer, groupsPerParam, topK } from '../../hooks/groups';
import type { VivitWarning } from '../../hooks/gramSpace';
import { bruteForce, dot, flattenRows, groupIndices, makeTargets, matVec, restrictMat, smallMlp, type BruteForce } from '../helpers/ggnBruteForce';
import { expectNoLeaksPerTest } from '../helpers/leaks';

expectNoLeaksPerTest();

function setup(kind: 'softmaxCrossEntropy' | 'mse' = 'softmaxCrossEntropy', N = 5, seed = 3) {
  const model = smallMlp(4, 5, 3, 'tanh', seed);
  const x = tf.randomNormal([N, 4], 0, 1, 'float32', seed + 1);
  const y = makeTargets(kind, N, 3, seed);
  const ext = extend(model, { loss: kind });
  const dispose = () => {
    tf.dispose([x, y]);
    model.dispose();
  };
  return { model, x, y, ext, dispose };
}

/** Check GGN_g e = λ e, unit norm and orthogonality for one group result. */
function checkEigenpairs(bf: BruteForce, names: readonly string[], res: EighResult): void {
  const idx = groupIndices(bf, names);
  const G = restrictMat(bf.ggn, bf.D, idx);
  const K = res.selected.length;
  const E = flattenRows(res.evecs, K);
  const lmax = Math.max(...res.evals);
  E.forEach((e, k) => {
    expect(e.length).toBe(idx.length);
    const lam = res.evals[res.selected[k] as number] as number;
    const Ge = matVec(G, e);
    let r = 0;
    for (let i = 0; i < e.length; i++) r += ((Ge[i] as number) - lam * (e[i] as number)) ** 2;
    expect(Math.sqrt(r)).toBeLessThan(1e-4 * lmax);
    expect(Math.abs(Math.sqrt(dot(e, e)) - 1)).toBeLessThan(1e-5);
    for (let j = 0; j < k; j++) expect(Math.abs(dot(e, E[j] as Float64Array))).toBeLessThan(1e-3);
  });
}

describe('Eigh eigenvectors are GGN eigenvectors', () => {
  for (const kind of ['softmaxCrossEntropy', 'mse'] as const) {
    it(`${kind}: full, per-layer and per-param blocks (default criterion λ > 1e-4 λ_max)`, () => {
      const s = setup(kind);
      const bf = bruteForce(s.model, kind, 'mean', s.x, s.y);
      const hooks = [
        new Eigh({ name: 'full', groups: groupsFull(s.ext) }),
        new Eigh({ name: 'layer', groups: groupsPerLayer(s.ext) }),
        new Eigh({ name: 'param', groups: groupsPerParam(s.ext) }),
      ];
      const r = s.ext.backward(s.x, s.y, { hooks });
      for (const h of hooks) {
        h.groups.forEach((g, i) => {
          const res = r.groups(h)[i] as EighResult;
          expect(res.params).toEqual(g.params);
          const lmax = Math.max(...res.evals);
          // Default selection: λ > 1e-4 λ_max, ascending.
          expect(res.selected).toEqual(res.evals.map((l, j) => (l > 1e-4 * lmax ? j : -1)).filter((j) => j >= 0));
          res.evecs.forEach((e, p) => expect(e.shape).toEqual([res.selected.length, ...(s.ext.layout.resolve(g.params[p] as string).shape as number[])]));
          checkEigenpairs(bf, g.params as string[], res);
        });
      }
      r.dispose();
      s.dispose();
    });
  }

  it('Gram size ≥ 320: the two-stage route (selected vectors only, custom order) agrees with float64 eigh and the GGN', () => {
    // C = 5 → reduced factor V = 4, N = 80: Gram size 320 = LARGE_EIGEN_THRESHOLD, so 'auto' takes eighLarge.
    const model = smallMlp(6, 8, 5, 'tanh', 31);
    const x = tf.randomNormal([80, 6], 0, 1, 'float32', 32);
    const y = makeTargets('softmaxCrossEntropy', 80, 5, 3);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    // Top eigenvalue first, then the 2nd and 4th largest (an order the criterion chooses).
    const criterion = (e: readonly number[]) => [e.length - 1, e.length - 2, e.length - 4];
    const two = new Eigh({ name: 'two', groups: groupsFull(ext, { criterion }) });
    const f64 = new Eigh({ name: 'f64', groups: groupsFull(ext, { criterion }), method: 'float64' });
    const r = ext.backward(x, y, { hooks: [two, f64] });
    const a = r.groups(two)[0] as EighResult;
    const b = r.groups(f64)[0] as EighResult;
    const lmax = Math.max(...b.evals);
    // Two-stage eigenvalues: absolute error ≲ 1e-6 · λ_max (large.ts); it drops values below that.
    expect(Math.min(...a.evals.map(Math.abs))).toBeGreaterThan(1e-6 * lmax);
    const la = a.selected.map((i) => a.evals[i] as number);
    const lb = b.selected.map((i) => b.evals[i] as number);
    la.forEach((l, k) => expect(Math.abs(l - (lb[k] as number))).toBeLessThan(2e-6 * lmax));
    expect(la.some((l, k) => l !== lb[k])).toBe(true); // really the float32 two-stage route
    // Eigenvectors: angle ≲ 1e-6 · λ_max / gap (two-stage) + 1e-7 · λ_max / gap (float32 Gram).
    const sorted = [...b.evals].sort((u, v) => u - v);
    const Ea = flattenRows(a.evecs, 3);
    const Eb = flattenRows(b.evecs, 3);
    lb.forEach((l, k) => {
      const j = sorted.indexOf(l);
      const gap = Math.min(...[sorted[j - 1], sorted[j + 1]].filter((v): v is number => v !== undefined).map((v) => Math.abs(v - l)));
      const tol = 1e-4 + (5e-6 * lmax) / gap;
      expect(1 - Math.abs(dot(Ea[k] as Float64Array, Eb[k] as Float64Array))).toBeLessThan(tol * tol + 1e-6);
    });
    checkEigenpairs(bf, bf.names, a);
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('criteria: topK, aboveThreshold, allPositive, and a custom order', () => {
    const s = setup();
    const bf = bruteForce(s.model, 'softmaxCrossEntropy', 'mean', s.x, s.y);
    const ev = new Eigvalsh({ groups: groupsFull(s.ext) });
    const r0 = s.ext.backward(s.x, s.y, { hooks: [ev] });
    const evals = (r0.groups(ev)[0] as { evals: number[] }).evals;
    r0.dispose();
    const E = evals.length;
    const thr = (evals[E - 3] as number) * 0.999;
    const seen: number[][] = [];
    const hooks = [
      new Eigh({ name: 'top2', groups: groupsFull(s.ext, { criterion: topK(2) }) }),
      new Eigh({ name: 'thr', groups: groupsFull(s.ext, { criterion: aboveThreshold(thr) }) }),
      new Eigh({ name: 'all', groups: groupsFull(s.ext, { criterion: allPositive() }), warnSmallEigvals: 0 }),
      new Eigh({
        name: 'custom',
        groups: groupsFull(s.ext, {
          criterion: (e) => {
            seen.push([...e]);
            return [e.length - 1, e.findIndex((l) => l > 0)];
          },
        }),
        warnSmallEigvals: 0,
      }),
    ];
    const r = s.ext.backward(s.x, s.y, { hooks });
    const get = (h: Eigh) => r.groups(h)[0] as EighResult;
    expect(get(hooks[0] as Eigh).selected).toEqual([E - 2, E - 1]);
    expect(get(hooks[1] as Eigh).selected).toEqual([E - 3, E - 2, E - 1]);
    expect(get(hooks[2] as Eigh).selected).toEqual(evals.map((l, j) => (l > 0 ? j : -1)).filter((j) => j >= 0));
    const custom = get(hooks[3] as Eigh);
    expect(custom.selected).toEqual([E - 1, evals.findIndex((l) => l > 0)]);
    expect(seen).toEqual([custom.evals]);
    // Row 0 of the custom result is the top eigenvector (up to sign), row 1 the smallest kept.
    const top = flattenRows(get(hooks[0] as Eigh).evecs, 2)[1] as Float64Array;
    expect(Math.abs(dot(top, flattenRows(custom.evecs, 2)[0] as Float64Array))).toBeGreaterThan(1 - 1e-5);
    checkEigenpairs(bf, bf.names, get(hooks[0] as Eigh));
    r.dispose();
    s.dispose();
  });

  it('signs are deterministic (the largest-magnitude Gram-space entry is positive): two steps agree', () => {
    const s = setup();
    const hook = new Eigh({ groups: groupsPerLayer(s.ext) });
    const a = s.ext.backward(s.x, s.y, { hooks: [hook] });
    const b = s.ext.backward(s.x, s.y, { hooks: [hook] });
    (a.groups(hook) as EighResult[]).forEach((ra, i) => {
      const rb = b.groups(hook)[i] as EighResult;
      ra.evecs.forEach((e, p) => expect(Array.from(e.dataSync())).toEqual(Array.from((rb.evecs[p] as tf.Tensor).dataSync())));
    });
    a.dispose();
    b.dispose();
    s.dispose();
  });
});

describe('Eigh warnings and errors', () => {
  it('tiny selected eigenvalues warn through onWarning and the result, never the console', () => {
    const s = setup();
    const got: VivitWarning[] = [];
    const spy = vi.spyOn(console, 'warn');
    const log = vi.spyOn(console, 'log');
    const err = vi.spyOn(console, 'error');
    // Reduction mean with N = 5 makes eigenvalues ≪ 10: every one is "small" for threshold 10.
    const hook = new Eigh({ groups: groupsPerLayer(s.ext, { criterion: topK(2) }), warnSmallEigvals: 10, onWarning: (w) => got.push(w) });
    const r = s.ext.backward(s.x, s.y, { hooks: [hook] });
    expect(got.length).toBe(2);
    // Groups finish in backward order (the last layer's first).
    expect(got.map((w) => w.group)).toEqual([1, 0]);
    [...got].reverse().forEach((w, i) => {
      expect(w.hook).toBe('Eigh');
      expect(w.group).toBe(i);
      expect(w.code).toBe('smallEigenvalues');
      expect(w.threshold).toBe(10);
      expect(w.eigenvalues.length).toBe(2);
      expect(w.message).toMatch(/numerically unstable/);
      expect((r.groups(hook)[i] as EighResult).warnings).toEqual([w]);
    });
    // The default threshold 1e-4 with the default selection does not warn here.
    const quiet = new Eigh({ name: 'quiet', groups: groupsFull(s.ext), onWarning: (w) => got.push(w) });
    const r2 = s.ext.backward(s.x, s.y, { hooks: [quiet] });
    expect(got.length).toBe(2);
    expect((r2.groups(quiet)[0] as EighResult).warnings).toEqual([]);
    expect(spy).not.toHaveBeenCalled();
    expect(log).not.toHaveBeenCalled();
    expect(err).not.toHaveBeenCalled();
    spy.mockRestore();
    log.mockRestore();
    err.mockRestore();
    r.dispose();
    r2.dispose();
    s.dispose();
  });

  it('group validation: parameter in two groups, unknown parameter, empty group, no groups', () => {
    const s = setup();
    const [k0, b0] = s.ext.params.map((p) => p.name);
    expect(() => s.ext.backward(s.x, s.y, { hooks: [new Eigh({ groups: [{ params: [k0 as string, b0 as string] }, { params: [b0 as string] }] })] })).toThrow(
      /is in group 0 and group 1/,
    );
    expect(() => s.ext.backward(s.x, s.y, { hooks: [new Eigh({ groups: [{ params: ['nope'] }] })] })).toThrow(/unknown parameter 'nope'/);
    expect(() => new Eigh({ groups: [{ params: [] }] })).toThrow(/group 0 has no parameters/);
    expect(() => new Eigh({ groups: [] })).toThrow(/at least one parameter group/);
    expect(() => new Eigh(undefined as unknown as { groups: [] })).toThrow(/options \{ groups/);
    expect(() => new Eigh({ groups: groupsFull(s.ext), subsampling: [1, 1] })).toThrow(/index 1 twice/);
    expect(() => new Eigh({ groups: groupsFull(s.ext), mcSamples: 1.5 })).toThrow(/mcSamples/);
    // Options of the directional hooks are refused, naming this hook's option.
    expect(() => new Eigh({ groups: groupsFull(s.ext), subsamplingGgn: [0] } as unknown as { groups: [] })).toThrow(
      /Eigh: unknown option 'subsamplingGgn'; this hook's curvature subsampling option is 'subsampling'/,
    );
    expect(() => new Eigh({ groups: [{ params: [k0 as string], criterion: 3 as unknown as () => number[] }] })).toThrow(/criterion' must be a function/);
    // Subsampling out of range: checked against the batch.
    expect(() => s.ext.backward(s.x, s.y, { hooks: [new Eigh({ groups: groupsFull(s.ext), subsampling: [9] })] })).toThrow(/outside the batch of 5/);
    s.dispose();
  });

  it('bad criterion answers and non-positive selections throw clear errors (no leaks)', () => {
    const s = setup();
    const run = (criterion: (e: readonly number[]) => readonly number[]) =>
      s.ext.backward(s.x, s.y, { hooks: [new Eigh({ groups: groupsFull(s.ext, { criterion }), warnSmallEigvals: 0 })] });
    expect(() => run((e) => [e.length])).toThrow(/returned index \d+, not an index/);
    expect(() => run(() => [0, 0])).toThrow(/index 0 twice/);
    expect(() => run(() => 'x' as unknown as number[])).toThrow(/must return an array/);
    // With all V·n Gram eigenvalues kept, the smallest is ≤ 0 (numerically zero).
    const all = new Eigh({ groups: groupsFull(s.ext, { criterion: () => [0] }), relativeCutoff: -1, warnSmallEigvals: 0 });
    const r = s.ext.backward(s.x, s.y, { hooks: [new Eigvalsh({ groups: groupsFull(s.ext), relativeCutoff: -1 })] });
    const smallest = (r.groups('Eigvalsh')[0] as { evals: number[] }).evals[0] as number;
    r.dispose();
    if (smallest <= 0) expect(() => s.ext.backward(s.x, s.y, { hooks: [all] })).toThrow(/≤ 0/);
    s.dispose();
  });

  it('no tensors leak across repeated steps', () => {
    const s = setup();
    const hook = new Eigh({ groups: groupsPerParam(s.ext) });
    s.ext.backward(s.x, s.y, { hooks: [hook] }).dispose();
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) s.ext.backward(s.x, s.y, { hooks: [hook] }).dispose();
    expect(tf.memory().numTensors).toBe(n0);
    s.dispose();
  });
});
