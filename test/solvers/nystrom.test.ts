/**
 * Randomized Nyström sketch against the explicit formula
 * Â = (AΩᵀ)(ΩAΩᵀ)⁻¹(AΩᵀ)ᵀ computed in float64 from the dense GGN and the same
 * test matrix Ω (nystromTestMatrix with the same seed). The stabilising
 * shift ν = √D·ε₃₂·‖AΩ‖ perturbs Â by O(ν) ≈ 1e-6·‖A‖, so 1e-4 relative to
 * max|Â| is a real check. Full rank: Â = A and the sketch-and-solve inverse
 * equals the dense solve to 1e-4.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { LinearOperator } from '../../src/operators/index';
import { nystromSketch, nystromSketchAsync, nystromTestMatrix } from '../../src/solvers/index';
import { Rng } from '../../src/utils/random';
import { denseSolve, expectNoLeak, matmul64, maxRelErr } from '../operators/reference';
import { curvatureProblem } from './problem';

const P = curvatureProblem();
const { D, G, lambda } = P;
const b = tf.randomNormal([D], 0, 1, 'float32', 51);
const bd = Float64Array.from(b.dataSync());

function explicitNystrom(rank: number, seed: number): Float64Array {
  const Om = nystromTestMatrix(D, rank, new Rng(seed));
  const O = Float64Array.from(Om.dataSync()); // [ℓ, D]
  Om.dispose();
  const Ot = Float64Array.from({ length: D * rank }, (_, k) => O[(k % rank) * D + Math.floor(k / rank)] as number); // [D, ℓ]
  const Y = matmul64(G, Ot, D, D, rank); // [D, ℓ]
  const M = matmul64(O, Y, rank, D, rank); // ΩAΩᵀ
  // Â = Y M⁻¹ Yᵀ: columns of M⁻¹Yᵀ by dense solves.
  const MinvYt = new Float64Array(rank * D);
  for (let j = 0; j < D; j++) {
    const col = denseSolve(M, rank, 0, Float64Array.from({ length: rank }, (_, i) => Y[j * rank + i] as number));
    for (let i = 0; i < rank; i++) MinvYt[i * D + j] = col[i] as number;
  }
  return matmul64(Y, MinvYt, D, rank, D);
}

describe('nystromSketch', () => {
  it('rank 12 equals the explicit Nyström formula with the same Ω; its inverse is the Woodbury solve', () => {
    const before = tf.memory().numTensors;
    const ny = nystromSketch(P.ggn, 12, { seed: 3 });
    const ref = explicitNystrom(12, 3);
    expect(ny.rank).toBeLessThanOrEqual(12);
    expect(maxRelErr(ny.toDense(), ref)).toBeLessThan(1e-4);
    const inv = ny.inverse(lambda);
    const x = inv.apply(b);
    expect(maxRelErr(x.dataSync(), denseSolve(ref, D, lambda, bd))).toBeLessThan(1e-4);
    // Eigenvalues ascending and non-negative.
    expect(Array.from(ny.values)).toEqual([...ny.values].sort((a, c) => a - c));
    expect(Math.min(...ny.values)).toBeGreaterThanOrEqual(0);
    tf.dispose([x]);
    inv.dispose();
    ny.dispose();
    expect(tf.memory().numTensors).toBe(before); // the sketch owns U, Uᵀ and its eigenvalues only
  });

  it('full rank reproduces A; sketch-and-solve equals the dense solve to 1e-4', () => {
    const ny = nystromSketch(P.ggn, D, { seed: 1 });
    expect(maxRelErr(ny.toDense(), G)).toBeLessThan(1e-4);
    const inv = ny.inverse(lambda);
    const x = inv.apply(b);
    expect(maxRelErr(x.dataSync(), denseSolve(G, D, lambda, bd))).toBeLessThan(1e-4);
    tf.dispose([x]);
    inv.dispose();
    ny.dispose();
  });

  it('async operators; bad input: rank > D, indefinite operator, NaN, product function without size', async () => {
    const aop = LinearOperator.fromMatvec(D, async (v) => P.ggn.apply(v), { async: true, stacked: true });
    expect(() => nystromSketch(aop, 4)).toThrow(/nystromSketchAsync/);
    const ny = await nystromSketchAsync(aop, 8, { seed: 2 });
    expect(maxRelErr(ny.toDense(), explicitNystrom(8, 2))).toBeLessThan(1e-4);
    ny.dispose();
    expect(() => expectNoLeak(() => nystromSketch(P.ggn, D + 1))).toThrow(/larger than the operator size/);
    expect(() => expectNoLeak(() => nystromSketch(P.hessian, D))).toThrow(/positive semi-definite/);
    const nan = LinearOperator.fromMatvec(D, (v) => tf.mul(v, NaN));
    expect(() => expectNoLeak(() => nystromSketch(nan, 3))).toThrow(/non-finite/);
    expect(() => nystromSketch((v: tf.Tensor) => tf.clone(v), 3)).toThrow(/option 'size'/);
    const viaFn = nystromSketch((v: tf.Tensor) => P.ggn.apply(v), 5, { size: D, seed: 9 });
    expect(maxRelErr(viaFn.toDense(), explicitNystrom(5, 9))).toBeLessThan(1e-4);
    viaFn.dispose();
  });
});
