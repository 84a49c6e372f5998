/**
 * EkfacInfluence against the EKFAC formula built from explicit matrices
 * (cpu backend, test/influence/reference.ts), independently of curvpack:
 *
 *   A_l = (1/P) Σ_j a_j a_jᵀ  (layer inputs from a plain forward pass),
 *   G_l = the GGN block of the layer's bias (FORMAT.md §6.1: KFLR's G is
 *         exactly that block, here for the mean of the single-sample losses),
 *   Q = UA ⊗ UG (float64 Jacobi eigenvectors), lambda = diag(Qᵀ M_kernel Q)
 *   with M the explicit GGN (or empirical Fisher) kernel block,
 *   kernel block inverse Q diag(1/(lambda + λ)) Qᵀ, bias block
 *   UG diag(1/(diag(UGᵀ M_bias UG) + λ)) UGᵀ,
 *
 * influence = Σ_params g_test,pᵀ inv_p g_train,p. λ = 0.05·(largest
 * eigenvalue of the GGN). Tolerance 1e-4 relative to the largest |influence|:
 * curvpack's eigenvectors come from float32 factors (rounding ~1e-7 divided
 * by the relative eigenvalue gaps of A and G, ≳ 1e-2 here); measured ≤ 2e-7.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import { DirectInfluence } from '../../src/influence/direct';
import { EkfacInfluence } from '../../src/influence/ekfac';
import { buildReference, flatParams, jacobiEigen, makeProblem, range, maxRelErr, type Problem, type Reference } from './reference';

const I0 = 4;
const H = 5;
const C = 3;

let p: Problem;
let ref: Reference;
let ext: ExtendedModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  p = makeProblem({ inputs: I0, hidden: H, outputs: C, loss: 'softmaxCrossEntropy', reduction: 'mean' }, 8, 3, 51);
  ref = buildReference(p, { hessian: false });
  ext = extend(p.model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
});
afterAll(() => p.dispose());

/** Inputs of both Dense layers `[P, in]` (x, and tanh(x W1 + b1)), as float64 rows. */
function layerInputs(): Float64Array[][] {
  const theta = flatParams(p.model);
  const x = p.xTrain.arraySync() as number[][];
  const W1 = theta.subarray(0, I0 * H);
  const b1 = theta.subarray(I0 * H, I0 * H + H);
  const h = x.map((row) =>
    Float64Array.from(range(0, H), (o) => Math.tanh(row.reduce((s, v, i) => s + v * (W1[i * H + o] as number), b1[o] as number))),
  );
  return [x.map((r) => Float64Array.from(r)), h];
}

function gram(rows: Float64Array[]): Float64Array {
  const n = (rows[0] as Float64Array).length;
  const A = new Float64Array(n * n);
  for (const r of rows) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) A[i * n + j] = (A[i * n + j] as number) + ((r[i] as number) * (r[j] as number)) / rows.length;
  return A;
}

function sub(M: Float64Array, D: number, idx: number[]): Float64Array {
  const n = idx.length;
  const out = new Float64Array(n * n);
  idx.forEach((i, r) => idx.forEach((j, q) => (out[r * n + q] = M[i * D + j] as number)));
  return out;
}

/** The explicit EKFAC inverse (block diagonal over the 4 parameters), D×D; `lam[p]` per parameter. */
function ekfacInverse(M: Float64Array, lam: number[]): Float64Array {
  const D = ref.D;
  const inputs = layerInputs();
  const out = new Float64Array(D * D);
  const layers = [
    { in: I0, out: H, kernel: 0, bias: I0 * H },
    { in: H, out: C, kernel: I0 * H + H, bias: I0 * H + H + H * C },
  ];
  layers.forEach((l, li) => {
    const UA = jacobiEigen(gram(inputs[li] as Float64Array[]), l.in).vectors;
    const biasIdx = range(l.bias, l.bias + l.out);
    const UG = jacobiEigen(sub(ref.ggn, D, biasIdx), l.out).vectors;
    const kIdx = range(l.kernel, l.kernel + l.in * l.out);
    const K = sub(M, D, kIdx);
    const n = l.in * l.out;
    // Kernel: columns q_ag of Q = UA ⊗ UG (row-major [in, out] vec).
    for (let a = 0; a < l.in; a++)
      for (let g = 0; g < l.out; g++) {
        const q = new Float64Array(n);
        for (let i = 0; i < l.in; i++) for (let o = 0; o < l.out; o++) q[i * l.out + o] = (UA[i * l.in + a] as number) * (UG[o * l.out + g] as number);
        let lambda = 0;
        for (let r = 0; r < n; r++) for (let s = 0; s < n; s++) lambda += (q[r] as number) * (K[r * n + s] as number) * (q[s] as number);
        const w = 1 / (lambda + (lam[2 * li] as number));
        for (let r = 0; r < n; r++) for (let s = 0; s < n; s++) out[(kIdx[r] as number) * D + (kIdx[s] as number)] = (out[(kIdx[r] as number) * D + (kIdx[s] as number)] as number) + w * (q[r] as number) * (q[s] as number);
      }
    // Bias: eigenbasis UG of G, corrected eigenvalues diag(UGᵀ M_bias UG).
    const Mb = sub(M, D, biasIdx);
    for (let g = 0; g < l.out; g++) {
      let lambda = 0;
      for (let r = 0; r < l.out; r++) for (let s = 0; s < l.out; s++) lambda += (UG[r * l.out + g] as number) * (Mb[r * l.out + s] as number) * (UG[s * l.out + g] as number);
      const w = 1 / (lambda + (lam[2 * li + 1] as number));
      for (let r = 0; r < l.out; r++) for (let s = 0; s < l.out; s++) out[(biasIdx[r] as number) * D + (biasIdx[s] as number)] = (out[(biasIdx[r] as number) * D + (biasIdx[s] as number)] as number) + w * (UG[r * l.out + g] as number) * (UG[s * l.out + g] as number);
    }
  });
  return out;
}

function influenceWith(A: Float64Array): Float64Array {
  const D = ref.D;
  const out = new Float64Array(ref.gTest.length * ref.gTrain.length);
  ref.gTest.forEach((gt, t) => {
    const v = Float64Array.from(range(0, D), (i) => range(0, D).reduce((s, j) => s + (A[i * D + j] as number) * (gt[j] as number), 0));
    ref.gTrain.forEach((g, n) => (out[t * ref.gTrain.length + n] = range(0, D).reduce((s, i) => s + (v[i] as number) * (g[i] as number), 0)));
  });
  return out;
}

function topGgn(): number {
  return Math.max(...Array.from(jacobiEigen(ref.ggn, ref.D).values));
}

describe('EkfacInfluence vs the EKFAC formula from explicit matrices (tanh MLP 4-5-3, softmax CE)', () => {
  it('GGN correction, per-parameter blocks', () => {
    const lambda = 0.05 * topGgn();
    const before = tf.memory().numTensors;
    const m = new EkfacInfluence(ext, { regularization: lambda, progress: false });
    expect(m.blocks.length).toBe(4);
    m.fit({ x: p.xTrain, y: p.yTrain, batchSize: 3 });
    const S = m.influences(p.xTest, p.yTest);
    const expected = influenceWith(ekfacInverse(ref.ggn, [lambda, lambda, lambda, lambda]));
    expect(maxRelErr(S.dataSync(), expected)).toBeLessThan(1e-4);
    // EKFAC is an approximation: it differs from the exact GGN influence (so the check is not vacuous).
    const d = new DirectInfluence(ext, { regularization: lambda, curvature: 'ggn', blocks: 'param', progress: false });
    d.fit({ x: p.xTrain, y: p.yTrain });
    const Sd = d.influences(p.xTest, p.yTest);
    expect(maxRelErr(S.dataSync(), Sd.dataSync())).toBeGreaterThan(1e-3);
    tf.dispose([S, Sd]);
    d.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('empirical-Fisher correction; layer blocks with one λ each; per-block influences sum to the total', () => {
    const t = topGgn();
    const l0 = 0.05 * t;
    const l1 = 0.02 * t;
    const m = new EkfacInfluence(ext, { regularization: [l0, l1], blocks: 'layer', correction: 'empiricalFisher', progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const S = m.influences(p.xTest, p.yTest);
    const expected = influenceWith(ekfacInverse(ref.empiricalFisher, [l0, l0, l1, l1]));
    expect(maxRelErr(S.dataSync(), expected)).toBeLessThan(1e-4);
    const B = m.influencesByBlock(p.xTest, p.yTest);
    const sum = tf.sum(B, 0);
    expect(maxRelErr(sum.dataSync(), S.dataSync())).toBeLessThan(1e-5);
    tf.dispose([S, B, sum]);
    m.dispose();
  });

  it('needs λ > 0 and approximates the GGN only', () => {
    expect(() => new EkfacInfluence(ext, { regularization: 0 })).toThrow(/regularization of block 0 must be a finite number > 0/);
    expect(() => new EkfacInfluence(ext, { regularization: 0.1, curvature: 'hessian' } as never)).toThrow(/EKFAC approximates the GGN/);
  });
});
