/**
 * EKFAC against float64 references from TF.js autodiff (kroneckerReference.ts):
 * the exact GGN block B = Σ_n J_nᵀ H_n J_n, the empirical Fisher Σ_n g_n g_nᵀ
 * (g_n = J_nᵀ ∇_f ℓ_n), and explicit `[I·O, I·O]` matrices built from the
 * returned bases.
 *
 * Tolerances (relative to the reference's max entry):
 *  - TOL = 1e-5 for lambda and the eigen-relations: float32 products of a few
 *    terms (rounding ~1e-7 relative), float64 eigh of the float32 factors;
 *    measured ≤ 1e-6.
 *  - Applying/inverting: float32 matMuls with float32 bases (~1e-7 relative
 *    each); the damped inverse's residual `(M + δI)x − v` is bounded by
 *    ~eps·cond(M + δI), with δ chosen so that cond ≤ 100 → TOL_SOLVE = 1e-4.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../../src/engine/extend';
import {
  EKFAC,
  KFAC,
  KFLR,
  ekfacApply,
  ekfacInverseApply,
  type EkfacBias,
  type EkfacKernel,
  type EkfacResult,
  type KernelFactors,
} from '../../../extensions/secondorder/index';
import {
  block,
  diagInBasis,
  eigenbasisMatrix,
  exactGgn,
  frobenius,
  kron,
  lcg,
  lossGradients,
  makeModel,
  matVec,
  matmul,
  maxRelErr,
  paramSlices,
  perSampleGradients,
  randomOrthogonal,
  randomTensor,
  sub,
  transpose,
  type Mat,
} from './kroneckerReference';

const TOL = 1e-5;
const TOL_SOLVE = 1e-4;

function mlp(seed: number): tf.Sequential {
  return makeModel(
    [4],
    [
      (f) => tf.layers.dense({ ...f, units: 5 }),
      () => tf.layers.activation({ activation: 'tanh' }),
      () => tf.layers.dense({ units: 4 }),
      () => tf.layers.activation({ activation: 'sigmoid' }),
      () => tf.layers.dense({ units: 3 }),
    ],
    seed,
  );
}

const N = 6;
const labels = [0, 2, 1, 1, 2, 0];

type Arr = Float32Array | Int32Array | Uint8Array;
const data = (t: tf.Tensor | undefined): Arr => (t as tf.Tensor).dataSync();

describe('EKFAC', () => {
  it('bases are the eigenvectors of KFLR’s factors; lambda = diag(Qᵀ B Q) of the exact GGN block; bias lambda = evalsG', () => {
    const model = mlp(3);
    const x = randomTensor([N, 4], 4, 1.5);
    const y = tf.tensor1d(labels, 'int32');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const ekfac = new EKFAC();
    const kflr = new KFLR();
    const r = ext.backward(x, y, { extensions: [ekfac, kflr], training: false });
    const ref = exactGgn(model, x, 'softmaxCrossEntropy', 'mean');
    paramSlices(model).forEach((p, i) => {
      const B = block(ref.ggn, ref.D, p.offset, p.size);
      const f = r.get(kflr, i) as Partial<KernelFactors>;
      const e = r.get(ekfac, i);
      const O = p.shape[p.shape.length - 1] as number;
      const checkEigen = (M: Arr, U: Arr, evals: Arr, n: number) => {
        // M U = U diag(evals), UᵀU = I, ascending
        const MU = matmul(M, U, n, n, n);
        const UL = Float64Array.from(U, (v, k) => v * (evals[k % n] as number));
        expect(maxRelErr(MU, UL) * Math.max(...Array.from(UL, Math.abs)) / Math.max(...Array.from(M, Math.abs))).toBeLessThan(TOL);
        const UtU = matmul(transpose(U, n, n), U, n, n, n);
        for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) expect(Math.abs((UtU[a * n + b] as number) - (a === b ? 1 : 0))).toBeLessThan(1e-5);
        for (let k = 1; k < n; k++) expect(evals[k] as number).toBeGreaterThanOrEqual(evals[k - 1] as number);
      };
      checkEigen(data(f.G), data(e.UG), data(e.evalsG), O);
      if (p.shape.length === 2) {
        const k = e as EkfacKernel;
        const I = p.shape[0] as number;
        expect(k.lambda.shape).toEqual([I, O]);
        checkEigen(data(f.A), data(k.UA), data(k.evalsA), I);
        expect(maxRelErr(data(k.lambda), diagInBasis(data(k.UA), I, data(k.UG), O, B))).toBeLessThan(TOL);
      } else {
        const b = e as EkfacBias;
        expect(b.lambda.shape).toEqual([O]);
        expect(maxRelErr(data(b.lambda), diagInBasis(undefined, 1, data(b.UG), O, B))).toBeLessThan(TOL);
        expect(maxRelErr(data(b.lambda), data(b.evalsG))).toBeLessThan(TOL);
      }
    });
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('is at least as close to the exact GGN kernel block (Frobenius) as kron(A, G), for the KFLR and the KFAC basis', () => {
    const model = mlp(5);
    const x = randomTensor([N, 4], 6, 1.5);
    const y = tf.tensor1d(labels, 'int32');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const ref = exactGgn(model, x, 'softmaxCrossEntropy', 'mean');
    const eKflr = new EKFAC({ name: 'EKFAC-kflr' });
    const eKfac = new EKFAC({ name: 'EKFAC-kfac', basis: 'kfac', mcSamples: 2, seed: 9 });
    const kflr = new KFLR();
    const kfac = new KFAC({ mcSamples: 2, seed: 9 }); // same samples as eKfac (shared quantity)
    const r = ext.backward(x, y, { extensions: [eKflr, eKfac, kflr, kfac], training: false });
    const slices = paramSlices(model);
    for (const p of slices.filter((q) => q.shape.length === 2)) {
      const [I, O] = p.shape as [number, number];
      const i = slices.indexOf(p);
      const B = block(ref.ggn, ref.D, p.offset, p.size);
      for (const [e, k] of [
        [eKflr, kflr],
        [eKfac, kfac],
      ] as const) {
        const res = r.get(e, i) as EkfacKernel;
        const fac = r.get(k, i) as KernelFactors;
        const approx = eigenbasisMatrix(data(res.UA), I, data(res.UG), O, data(res.lambda));
        const kr = kron(data(fac.A), I, data(fac.G), O);
        const errE = frobenius(sub(B, approx));
        const errK = frobenius(sub(B, kr));
        expect(errE).toBeLessThanOrEqual(errK * (1 + 1e-5));
        // generic case: strictly better
        expect(errE).toBeLessThan(0.99 * errK);
        // the KFAC basis diagonalises KFAC's G
        const Gd = diagInBasis(undefined, 1, data(res.UG), O, data(fac.G));
        expect(maxRelErr(Gd, data(res.evalsG))).toBeLessThan(TOL);
      }
    }
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it("correction 'empiricalFisher': lambda = diag(Qᵀ F Q) with F = Σ_n g_n g_nᵀ from per-sample gradients", () => {
    const model = mlp(7);
    const x = randomTensor([N, 4], 8, 1.5);
    const y = tf.tensor1d(labels, 'int32');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const e = new EKFAC({ correction: 'empiricalFisher' });
    const r = ext.backward(x, y, { extensions: [e], training: false });
    const ref = exactGgn(model, x, 'softmaxCrossEntropy', 'mean');
    const gs = perSampleGradients(ref.Js, lossGradients('softmaxCrossEntropy', 'mean', ref.f, labels), 3);
    paramSlices(model).forEach((p, i) => {
      const F = new Float64Array(p.size * p.size);
      for (const g of gs)
        for (let a = 0; a < p.size; a++)
          for (let b = 0; b < p.size; b++) F[a * p.size + b] += (g[p.offset + a] as number) * (g[p.offset + b] as number);
      const res = r.get(e, i);
      const O = p.shape[p.shape.length - 1] as number;
      const I = p.size / O;
      const UA = 'UA' in res ? data(res.UA) : undefined;
      expect(maxRelErr(data(res.lambda), diagInBasis(UA, I, data(res.UG), O, F))).toBeLessThan(TOL);
    });
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  /** A synthetic result: random orthonormal bases, positive lambda (independent of the extension). */
  function synthetic(I: number | undefined, O: number, seed: number): { result: EkfacResult; M: Mat; n: number } {
    const rand = lcg(seed);
    const UG = randomOrthogonal(O, rand);
    const UA = I === undefined ? undefined : randomOrthogonal(I, rand);
    const n = (I ?? 1) * O;
    const lam = Float64Array.from({ length: n }, () => 0.1 + 2 * (rand() + 0.5));
    const M = eigenbasisMatrix(UA, I ?? 1, UG, O, lam);
    const t2 = (a: Mat, k: number) => tf.tensor2d(Float32Array.from(a), [k, k]);
    const result: EkfacResult = UA
      ? { UA: t2(UA, I as number), UG: t2(UG, O), lambda: tf.tensor2d(Float32Array.from(lam), [I as number, O]), evalsA: tf.zeros([I as number]), evalsG: tf.zeros([O]) }
      : { UG: t2(UG, O), lambda: tf.tensor1d(Float32Array.from(lam)), evalsG: tf.zeros([O]) };
    return { result, M, n };
  }

  it('ekfacApply and ekfacInverseApply equal the explicit matrices (Dense, Conv2D-shaped, batched, bias)', () => {
    const cases: { I?: number; O: number; shape: number[] }[] = [
      { I: 4, O: 3, shape: [4, 3] },
      { I: 12, O: 2, shape: [2, 2, 3, 2] }, // Conv2D kernel [kh, kw, inC, outC], I = kh·kw·inC
      { I: 4, O: 3, shape: [5, 4, 3] }, // K = 5 vectors
      { O: 3, shape: [3] }, // bias
      { O: 3, shape: [2, 3] }, // two bias vectors
    ];
    const before = tf.memory().numTensors;
    cases.forEach((c, k) => {
      const { result, M, n } = synthetic(c.I, c.O, 100 + k);
      const v = randomTensor(c.shape, 200 + k);
      const vd = v.dataSync();
      const K = vd.length / n;
      const damping = 0.3;
      const Md = Float64Array.from(M, (m, idx) => m + (idx % (n + 1) === 0 ? damping : 0));
      const applied = ekfacApply(result, v);
      const inv = ekfacInverseApply(result, v, damping);
      expect(applied.shape).toEqual(c.shape);
      expect(inv.shape).toEqual(c.shape);
      for (let j = 0; j < K; j++) {
        const vj = vd.slice(j * n, (j + 1) * n);
        expect(maxRelErr(applied.dataSync().slice(j * n, (j + 1) * n), matVec(M, vj, n))).toBeLessThan(TOL_SOLVE);
        const resid = sub(matVec(Md, inv.dataSync().slice(j * n, (j + 1) * n), n), vj);
        expect(Math.max(...Array.from(resid, Math.abs)) / Math.max(...Array.from(vj, Math.abs))).toBeLessThan(TOL_SOLVE);
      }
      tf.dispose([applied, inv, v, result as unknown as tf.TensorContainer]);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad input with clear errors and leaks no tensors (error paths included)', () => {
    const { result } = synthetic(3, 2, 1);
    const v = tf.zeros([3, 2]);
    const before = tf.memory().numTensors;
    for (const d of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => ekfacInverseApply(result, v, d)).toThrow(/damping must be a finite number > 0/);
    }
    const wrong = tf.zeros([4, 2]);
    const mid = tf.memory().numTensors;
    expect(() => ekfacApply(result, wrong)).toThrow(/\[4, 2\].*\[3, 2\]/);
    expect(() => ekfacInverseApply(result, wrong, 1)).toThrow(/\[4, 2\].*\[3, 2\]/);
    expect(tf.memory().numTensors).toBe(mid);
    wrong.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => new EKFAC({ basis: 'foo' as 'kflr' })).toThrow(/basis.*'kflr' or 'kfac'/);
    expect(() => new EKFAC({ correction: 'x' as 'ggn' })).toThrow(/correction.*'ggn' or 'empiricalFisher'/);
    expect(() => new EKFAC({ mcSamples: 3 })).toThrow(/basis 'kfac' only/);
    expect(() => new EKFAC({ basis: 'kfac', mcSamples: 0 })).toThrow(/mcSamples.*integer ≥ 1/);
    tf.dispose([v, result as unknown as tf.TensorContainer]);

    const model = mlp(1);
    const x = randomTensor([3, 4], 2);
    const y = tf.tensor1d([0, 1, 2], 'int32');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const n0 = tf.memory().numTensors;
    ext.backward(x, y, { extensions: [new EKFAC(), new EKFAC({ name: 'E2', basis: 'kfac', correction: 'empiricalFisher', seed: 1 })] }).dispose();
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([x, y]);
    model.dispose();
  });
});
