/**
 * KFAC: a Monte-Carlo estimate of KFLR's output factor. With M samples,
 * `G_KFAC = (1/M) Σ_m Σ_n u_nm u_nmᵀ`, `u_nm = J_nᵀ s̃_nm` (J_n = ∂f_n/∂z the
 * output Jacobian of the layer, s̃ the sampled loss factor, E[s̃ s̃ᵀ] = H_n), so
 * E[G_KFAC] = G_KFLR and, samples being independent,
 *
 *   Var(G_KFAC[a,b]) = (1/M) Σ_n Var(u_a u_b),
 *
 * computed EXACTLY here from the float64 reference: MSE (s̃ = √(2/norm)·z,
 * z ~ N(0, I), u ~ N(0, G_n)): Var(u_a u_b) = G_n[a,a] G_n[b,b] + G_n[a,b]²;
 * softmax CE (s̃ = (p − e_y)/√norm, y ~ Cat(p)): Σ_y p_y (u_a(y) u_b(y))² − G_n[a,b]²,
 * with G_n = J_nᵀ H_n J_n the exact per-sample bias GGN block (autodiff).
 * The test demands every entry within 5 standard errors (M = 3000 makes the
 * estimate close to Gaussian; with ≤ 60 entries a 5σ excursion has probability
 * < 4e-5, and the seed is fixed), plus 1e-6·max|G| for float32 rounding.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../../src/engine/extend';
import { KFAC, KFLR, type KernelFactors } from '../../../extensions/secondorder/index';
import {
  exactGgn,
  frobenius,
  lossHessians,
  makeModel,
  matmul,
  normalizer,
  paramSlices,
  randomTensor,
  sub,
  transpose,
  type LossKind,
  type Mat,
} from './kroneckerReference';

function model3(seed: number, C: number): tf.Sequential {
  return makeModel(
    [4],
    [(f) => tf.layers.dense({ ...f, units: 5 }), () => tf.layers.activation({ activation: 'tanh' }), () => tf.layers.dense({ units: C })],
    seed,
  );
}

/** Per-sample u(y) vectors for CE, or G_n for MSE: the exact per-sample distribution of u = J_bᵀ s̃. */
function entryVariances(kind: LossKind, reduction: 'mean' | 'sum', Js: Mat[], f: number[][], offset: number, O: number, M: number): Mat {
  const C = (f[0] as number[]).length;
  const D = (Js[0] as Mat).length / C;
  const Hs = lossHessians(kind, reduction, f);
  const norm = normalizer(kind, reduction, f.length, C);
  const varSum = new Float64Array(O * O);
  Js.forEach((J, n) => {
    // J_b [C, O]: the bias columns of J_n.
    const Jb = new Float64Array(C * O);
    for (let c = 0; c < C; c++) for (let o = 0; o < O; o++) Jb[c * O + o] = J[c * D + offset + o] as number;
    const Gn = matmul(transpose(Jb, C, O), matmul(Hs[n] as Mat, Jb, C, C, O), O, C, O);
    if (kind === 'mse') {
      for (let a = 0; a < O; a++)
        for (let b = 0; b < O; b++) varSum[a * O + b] += (Gn[a * O + a] as number) * (Gn[b * O + b] as number) + (Gn[a * O + b] as number) ** 2;
    } else {
      const fn = f[n] as number[];
      const mx = Math.max(...fn);
      const e = fn.map((v) => Math.exp(v - mx));
      const s = e.reduce((p, q) => p + q, 0);
      const p = e.map((v) => v / s);
      for (let y = 0; y < C; y++) {
        const sv = p.map((pc, c) => (pc - (c === y ? 1 : 0)) / Math.sqrt(norm));
        const u = matmul(sv, Jb, 1, C, O);
        for (let a = 0; a < O; a++)
          for (let b = 0; b < O; b++) varSum[a * O + b] += (p[y] as number) * ((u[a] as number) * (u[b] as number)) ** 2;
      }
      for (let i = 0; i < O * O; i++) varSum[i] -= (Gn[i] as number) ** 2;
    }
  });
  return varSum.map((v) => v / M);
}

function factors(ext: ReturnType<typeof extend>, e: KFAC | KFLR, x: tf.Tensor, y: tf.Tensor, seed?: number) {
  const r = ext.backward(x, y, { extensions: [e], training: false, ...(seed !== undefined ? { seed } : {}) });
  const out = ext.params.map((p) => {
    const f = r.get(e, p) as Partial<KernelFactors>;
    return { A: f.A?.dataSync().slice(), G: (f.G as tf.Tensor).dataSync().slice() };
  });
  r.dispose();
  return out;
}

describe('KFAC', () => {
  for (const [kind, reduction] of [
    ['mse', 'sum'],
    ['softmaxCrossEntropy', 'mean'],
  ] as const) {
    it(`converges to KFLR within 5 exact standard errors (${kind}, ${reduction}, M = 3000); A equals KFLR's A`, () => {
      const C = 3;
      const model = model3(3, C);
      const N = 4;
      const x = randomTensor([N, 4], 9, 1.5);
      const y = kind === 'mse' ? randomTensor([N, C], 10) : tf.tensor1d([0, 2, 1, 2], 'int32');
      const ext = extend(model, { loss: kind, reduction });
      const M = 3000;
      const kfac = factors(ext, new KFAC({ mcSamples: M, seed: 42 }), x, y);
      const kfacFew = factors(ext, new KFAC({ mcSamples: 30, seed: 42 }), x, y);
      const kflr = factors(ext, new KFLR(), x, y);
      const ref = exactGgn(model, x, kind, reduction);
      paramSlices(model).forEach((p, i) => {
        const O = p.shape[p.shape.length - 1] as number;
        const a = kfac[i] as (typeof kfac)[number];
        const e = kflr[i] as (typeof kflr)[number];
        if (p.shape.length === 2) {
          expect(Array.from(a.A as Float32Array)).toEqual(Array.from(e.A as Float32Array));
          return;
        }
        const variance = entryVariances(kind, reduction, ref.Js, ref.f, p.offset, O, M);
        const scale = Math.max(...Array.from(e.G, Math.abs));
        for (let k = 0; k < O * O; k++) {
          const sd = Math.sqrt(Math.max(0, variance[k] as number));
          expect(Math.abs((a.G[k] as number) - (e.G[k] as number))).toBeLessThanOrEqual(5 * sd + 1e-6 * scale);
        }
        // The error shrinks like 1/√M: 100× the samples, expected 10× smaller (demand 3×).
        const errMany = frobenius(sub(a.G, e.G));
        const errFew = frobenius(sub((kfacFew[i] as (typeof kfac)[number]).G, e.G));
        expect(errMany).toBeLessThan(errFew / 3);
      });
      tf.dispose([x, y]);
      model.dispose();
    });
  }

  it('is reproducible: equal seeds give equal factors, different seeds different ones; the step seed is used without one', () => {
    const model = model3(4, 3);
    const x = randomTensor([3, 4], 1);
    const y = tf.tensor1d([0, 1, 2], 'int32');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const g = (e: KFAC, seed?: number) => Array.from((factors(ext, e, x, y, seed)[0] as { G: Float32Array }).G);
    expect(g(new KFAC({ seed: 5 }))).toEqual(g(new KFAC({ seed: 5 })));
    expect(g(new KFAC({ seed: 5 }))).not.toEqual(g(new KFAC({ seed: 6 })));
    expect(g(new KFAC(), 17)).toEqual(g(new KFAC(), 17));
    tf.dispose([x, y]);
    model.dispose();
  });

  it('rejects bad options with a clear error and leaks no tensors', () => {
    const before = tf.memory().numTensors;
    for (const m of [0, -1, 1.5, Number.NaN]) expect(() => new KFAC({ mcSamples: m })).toThrow(/mcSamples.*integer ≥ 1/);
    expect(() => new KFAC({ seed: Number.NaN })).toThrow(/seed/);
    const model = model3(5, 3);
    const x = randomTensor([2, 4], 1);
    const y = tf.tensor1d([0, 1], 'int32');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const mid = tf.memory().numTensors;
    ext.backward(x, y, { extensions: [new KFAC({ mcSamples: 4 })] }).dispose();
    expect(tf.memory().numTensors).toBe(mid);
    tf.dispose([x, y]);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
