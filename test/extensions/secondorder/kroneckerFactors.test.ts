/**
 * kroneckerApply / kroneckerInverseApply / kroneckerEigen against explicit
 * float64 matrices `kron(A, G)` (row-major vec of the parameter).
 *
 * Tolerances: applying is two float32 matMuls (relative rounding ~1e-7 times
 * the inner dimension) → TOL = 1e-5 relative to the reference max. The damped
 * inverse is checked through its residual `(kron(A, G) + δI)x − v`, bounded by
 * ~eps_float32·cond(kron(A, G) + δI); δ is chosen so that cond ≤ 100 →
 * TOL_SOLVE = 1e-4.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { kroneckerApply, kroneckerEigen, kroneckerInverseApply, type KroneckerFactors } from '../../../extensions/secondorder/index';
import { maxAbs } from '../../conformance/compare';
import { kron, lcg, matVec, maxRelErr, randomPsd, randomTensor, sub, type Mat } from './kroneckerReference';

const TOL = 1e-5;
const TOL_SOLVE = 1e-4;

/** Random PSD factors (A possibly rank-deficient) and the explicit kron(A, G) (bias: G). */
function factors(I: number | undefined, O: number, rankA: number, seed: number): { f: KroneckerFactors; M: Mat; n: number; maxEig: number } {
  const rand = lcg(seed);
  const G = randomPsd(O, O + 1, rand);
  const A = I === undefined ? undefined : randomPsd(I, rankA, rand);
  const M = A ? kron(A, I as number, G, O) : G;
  const n = (I ?? 1) * O;
  // ‖M‖₂ ≤ ‖M‖_F
  let fro = 0;
  for (const v of M) fro += v * v;
  const t = (a: Mat, k: number) => tf.tensor2d(Float32Array.from(a), [k, k]);
  const f: KroneckerFactors = A ? { A: t(A, I as number), G: t(G, O) } : { G: t(G, O) };
  return { f, M, n, maxEig: Math.sqrt(fro) };
}

describe('Kronecker factor algebra', () => {
  const cases: { I?: number; O: number; shape: number[]; rankA: number }[] = [
    { I: 5, O: 3, shape: [5, 3], rankA: 5 },
    { I: 5, O: 3, shape: [5, 3], rankA: 2 }, // rank-deficient A (e.g. fewer samples than inputs)
    { I: 12, O: 2, shape: [2, 2, 3, 2], rankA: 12 }, // Conv2D kernel layout [kh, kw, inC, outC]
    { I: 4, O: 3, shape: [3, 4, 3], rankA: 4 }, // K = 3 vectors
    { O: 4, shape: [4], rankA: 0 }, // bias
    { O: 4, shape: [2, 4], rankA: 0 }, // two bias vectors
  ];

  it('kroneckerApply = kron(A, G)·vec(V) (row-major), i.e. A V G', () => {
    const before = tf.memory().numTensors;
    cases.forEach((c, k) => {
      const { f, M, n } = factors(c.I, c.O, c.rankA, 10 + k);
      const v = randomTensor(c.shape, 20 + k);
      const out = kroneckerApply(f, v);
      expect(out.shape).toEqual(c.shape);
      const vd = v.dataSync();
      for (let j = 0; j < vd.length / n; j++) {
        expect(maxRelErr(out.dataSync().slice(j * n, (j + 1) * n), matVec(M, vd.slice(j * n, (j + 1) * n), n))).toBeLessThan(TOL);
      }
      tf.dispose([out, v, f as unknown as tf.TensorContainer]);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('kroneckerInverseApply is the exact damped inverse (kron(A, G) + δI)⁻¹ (not π-split), also from a reused kroneckerEigen', () => {
    const before = tf.memory().numTensors;
    cases.forEach((c, k) => {
      const { f, M, n, maxEig } = factors(c.I, c.O, c.rankA, 30 + k);
      const damping = maxEig / 99; // cond(M + δI) ≤ (maxEig + δ)/δ = 100
      const Md = Float64Array.from(M, (m, idx) => m + (idx % (n + 1) === 0 ? damping : 0));
      const v = randomTensor(c.shape, 40 + k);
      const eig = kroneckerEigen(f);
      const x1 = kroneckerInverseApply(f, v, damping);
      const x2 = kroneckerInverseApply(eig, v, damping);
      expect(x1.shape).toEqual(c.shape);
      expect(Array.from(x2.dataSync())).toEqual(Array.from(x1.dataSync()));
      const vd = v.dataSync();
      for (let j = 0; j < vd.length / n; j++) {
        const vj = vd.slice(j * n, (j + 1) * n);
        const resid = sub(matVec(Md, x1.dataSync().slice(j * n, (j + 1) * n), n), vj);
        expect(maxAbs(resid) / maxAbs(vj)).toBeLessThan(TOL_SOLVE);
      }
      tf.dispose([x1, x2, v, f as unknown as tf.TensorContainer, eig as unknown as tf.TensorContainer]);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad input with clear errors and leaks no tensors', () => {
    const { f } = factors(3, 2, 3, 1);
    const v = tf.ones([3, 2]);
    const before = tf.memory().numTensors;
    for (const d of [0, -0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => kroneckerInverseApply(f, v, d)).toThrow(/damping must be a finite number > 0/);
    }
    const wrong = tf.ones([2, 3, 5]);
    const mid = tf.memory().numTensors;
    expect(() => kroneckerApply(f, wrong)).toThrow(/v of shape \[2, 3, 5\].*\[3, 2\]/);
    expect(() => kroneckerInverseApply(f, wrong, 1)).toThrow(/v of shape \[2, 3, 5\].*\[3, 2\]/);
    expect(tf.memory().numTensors).toBe(mid);
    const notSquare = { A: tf.ones([3, 2]) as tf.Tensor2D, G: (f as { G: tf.Tensor2D }).G };
    expect(() => kroneckerApply(notSquare, v)).toThrow(/factor A must be a square matrix, got shape \[3, 2\]/);
    expect(() => kroneckerApply({} as KroneckerFactors, v)).toThrow(/expected Kronecker factors/);
    tf.dispose([wrong, notSquare.A]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([v, f as unknown as tf.TensorContainer]);
  });
});

describe('kroneckerEigen error path', () => {
  it('a failing A decomposition leaves no tensors behind', () => {
    const A = tf.tensor2d([[1, NaN], [NaN, 1]]);
    const G = tf.tensor2d([[2, 0], [0, 3]]);
    const before = tf.memory().numTensors;
    expect(() => kroneckerEigen({ A, G })).toThrow(/NaN/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([A, G]);
  });
});
