/**
 * LiSSA against its explicit formula and against the dense solve:
 *
 * - full products: after t iterations x_t = (1/s) Σ_{i≤t} Tⁱ b with
 *   T = (1 − dampen)I − (A + λI)/s, computed densely in float64;
 * - the error to x* = (A + λ + s·dampen)⁻¹ b is exactly T^{t+1} x*, so
 *   ‖x_t − x*‖/‖x*‖ ≤ ρ(T)^{t+1} — "the tolerance its iteration count implies";
 * - minibatches: reproducible with a seed; with batchSize ≥ P it is the
 *   full iteration; with small batches within a loose statistical bound.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { DenseOperator, LinearOperator, ggnOperator } from '../../src/operators/index';
import { lissa, lissaAsync } from '../../src/solvers/index';
import { denseSolve, expectNoLeak, matmul64, maxRelErr } from '../operators/reference';
import { curvatureProblem } from './problem';

const P = curvatureProblem();
const { D, G, lambda, top } = P;
const b = tf.randomNormal([D], 0, 1, 'float32', 31);
const bd = Float64Array.from(b.dataSync());

/** (1/s) Σ_{i≤t} Tⁱ b in float64 (the recurrence h ← b + T h from h = b). */
function neumann(t: number, s: number, damping: number, dampen: number): Float64Array {
  let h = Float64Array.from(bd);
  for (let i = 0; i < t; i++) {
    const Ah = matmul64(G, h, D, D, 1);
    h = Float64Array.from(h, (hv, k) => (bd[k] as number) + (1 - dampen) * hv - ((Ah[k] as number) + damping * hv) / s);
  }
  return h.map((v) => v / s);
}

describe('lissa', () => {
  const s = top; // ρ(T) = max |1 − (λ_i + λ)/s| = 1 − λ/s for the PSD GGN (λ_min ≈ 0)

  it('after t iterations equals the truncated Neumann series (t = 5 and 40)', () => {
    for (const t of [5, 40]) {
      const r = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: t, rtol: 0 });
      expect(r.iterations).toBe(t);
      expect(r.converged).toBe(false);
      expect(maxRelErr(r.x.dataSync(), neumann(t, s, lambda, 0))).toBeLessThan(1e-5);
      r.x.dispose();
    }
  });

  it('reaches the dense solution to the tolerance its iteration count implies; dampen adds s·dampen', () => {
    const rho = 1 - lambda / s;
    for (const t of [30, 120]) {
      const r = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: t, rtol: 0 });
      const ref = denseSolve(G, D, lambda, bd);
      const err = maxRelErr(r.x.dataSync(), ref);
      // maxRelErr is max-norm based; ‖T^{t+1}x*‖_∞ ≤ ‖T^{t+1}x*‖₂ ≤ ρ^{t+1}‖x*‖₂ ≤ ρ^{t+1}√D‖x*‖_∞.
      expect(err).toBeLessThanOrEqual(rho ** (t + 1) * Math.sqrt(D) + 1e-5);
      r.x.dispose();
    }
    const r = lissa(P.ggn, b, { scale: s, damping: 0, dampen: 0.05, maxIter: 400, rtol: 1e-7 });
    expect(r.converged).toBe(true);
    expect(maxRelErr(r.x.dataSync(), denseSolve(G, D, 0.05 * s, bd))).toBeLessThan(1e-4);
    r.x.dispose();
  });

  it('stops at rtol and leaks nothing', () => {
    const r = expectNoLeak(() => {
      const out = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: 1000, rtol: 1e-4 });
      out.x.dispose();
      return out;
    });
    expect(r.converged).toBe(true);
    expect(r.relativeResidual).toBeLessThanOrEqual(1e-4);
    expect(r.history.length).toBe(r.iterations);
  });

  it('minibatches: reproducible, equal to the full iteration when batchSize ≥ P, close to the solution otherwise', () => {
    const full = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: 60, rtol: 0 });
    const all = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: 60, rtol: 0, batchSize: 40, seed: 1 });
    expect(maxRelErr(all.x.dataSync(), full.x.dataSync())).toBeLessThan(1e-5);
    const m1 = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: 150, rtol: 0, batchSize: 20, seed: 5 });
    const m2 = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: 150, rtol: 0, batchSize: 20, seed: 5 });
    const m3 = lissa(P.ggn, b, { scale: s, damping: lambda, maxIter: 150, rtol: 0, batchSize: 20, seed: 6 });
    expect(Array.from(m1.x.dataSync())).toEqual(Array.from(m2.x.dataSync()));
    expect(maxRelErr(m1.x.dataSync(), m3.x.dataSync())).toBeGreaterThan(0);
    // Minibatch curvature noise: the iterate fluctuates around the solution;
    // measured relative errors ~0.05–0.1 with half the data per step; 0.3
    // still rejects a wrong weighting (which biases by a factor ≥ 2).
    const ref = denseSolve(G, D, lambda, bd);
    expect(maxRelErr(m1.x.dataSync(), ref)).toBeLessThan(0.3);
    tf.dispose([full.x, all.x, m1.x, m2.x, m3.x]);
  });

  it('streams a dataset with lissaAsync (minibatches = the dataset’s batches)', async () => {
    const rows = [tf.unstack(P.x), tf.unstack(P.y)];
    const ds = tf.data.zip({ xs: tf.data.array(rows[0] as tf.Tensor[]), ys: tf.data.array(rows[1] as tf.Tensor[]) }).batch(40);
    const op = ggnOperator(P.ext, ds as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>);
    expect(() => lissa(op, b)).toThrow(/lissaAsync/);
    const r = await lissaAsync(op, b, { scale: s, damping: lambda, maxIter: 20, rtol: 0, batchSize: 40 });
    expect(maxRelErr(r.x.dataSync(), neumann(20, s, lambda, 0))).toBeLessThan(1e-5);
    tf.dispose([r.x, ...rows.flat()]);
  });
});

describe('lissa divergence and bad input', () => {
  it('scale too small: a clear divergence error naming the fix, no leaked tensors', () => {
    expect(() => expectNoLeak(() => lissa(P.ggn, b, { scale: 0.3 * top, damping: lambda, maxIter: 500, rtol: 0 }))).toThrow(
      /diverged.*increase 'scale'/,
    );
  });

  it('an indefinite Hessian without damping diverges with a clear error', () => {
    const lmax = Math.max(...Array.from(P.hessEig.values, Math.abs));
    expect(() => expectNoLeak(() => lissa(P.hessian, b, { scale: 2 * lmax, maxIter: 3000, rtol: 0 }))).toThrow(/diverged|non-finite/);
  });

  it('non-finite operator output and bad options', () => {
    const nan = LinearOperator.fromMatvec(D, (v) => tf.mul(v, NaN));
    expect(() => expectNoLeak(() => lissa(nan, b))).toThrow(/non-finite/);
    const dense = new DenseOperator(G, D);
    expect(() => expectNoLeak(() => lissa(dense, b, { batchSize: 4 }))).toThrow(/curvature operator over data/);
    expect(() => lissa(dense, b, { scale: 0 })).toThrow(/scale/);
    expect(() => lissa(dense, b, { maxIter: 0 })).toThrow(/maxIter/);
    dense.dispose();
  });
});
