/**
 * gramProducts: the chunked explicit Gram route (`explicitGram`: per-sample
 * products formed chunk by chunk over the output channels, sample blocks,
 * only the lower blocks multiplied) and the Dense kernel+bias Gram
 * (`withBias`) against per-sample products built by brute force in float64.
 * Sizes are chosen so that the route really cuts the contraction into
 * several chunks (I·O > 8192) and the samples into uneven blocks.
 *
 * Tolerance: float32 Gram entries from sums of ~10⁴ products against float64
 * references: 2e-5 relative to the largest entry.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { biasCrossGram, chooseKernelGramRoute, explicitGram, kernelCrossGram } from '../../hooks/gramProducts';
import { maxRelErr } from '../conformance/compare';
import { perSampleKernelProducts } from '../helpers/ggnBruteForce';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const TOL = 2e-5;

expectNoLeaksPerTest();

function gramOf(A: Float64Array[], B: Float64Array[]): Float64Array {
  const G = new Float64Array(A.length * B.length);
  A.forEach((p, i) =>
    B.forEach((q, j) => {
      let s = 0;
      for (let k = 0; k < p.length; k++) s += (p[k] as number) * (q[k] as number);
      G[i * B.length + j] = s;
    }),
  );
  return G;
}

describe('explicitGram (chunked per-sample products)', () => {
  it('Gram and cross-Gram with several chunks and uneven sample blocks equal brute-force products', () => {
    // I·O = 1500·6 > 8192: chunks of 3 output channels (2 chunks); n = 5 → sample blocks of 1, 2, 1, 1.
    const [n, T, I, O, V] = [5, 3, 1500, 6, 2];
    const X = tf.randomNormal([n, T, I], 0, 1, 'float32', 1) as tf.Tensor3D;
    const D = tf.randomNormal([V, n, T, O], 0, 1, 'float32', 2) as tf.Tensor4D;
    const Xb = tf.randomNormal([3, T, I], 0, 1, 'float32', 3) as tf.Tensor3D;
    const Db = tf.randomNormal([1, 3, T, O], 0, 1, 'float32', 4) as tf.Tensor4D;
    const P = perSampleKernelProducts(X, D);
    const Pb = perSampleKernelProducts(Xb, Db);
    const g = explicitGram(X, D);
    expect(g.shape).toEqual([V * n, V * n]);
    expect(maxRelErr(g.dataSync(), gramOf(P, P))).toBeLessThan(TOL);
    const c = explicitGram(X, D, Xb, Db);
    expect(c.shape).toEqual([V * n, 3]);
    expect(maxRelErr(c.dataSync(), gramOf(P, Pb))).toBeLessThan(TOL);
    // kernelCrossGram's explicit route is this one.
    const k = kernelCrossGram(X, D, X, D, 'explicit');
    expect(maxRelErr(k.dataSync(), gramOf(P, P))).toBeLessThan(TOL);
    tf.dispose([X, D, Xb, Db, g, c, k]);
  });

  it('one sample, one channel per chunk (I large), V = 1', () => {
    const [n, T, I, O, V] = [1, 2, 9000, 2, 1];
    const X = tf.randomNormal([n, T, I], 0, 1, 'float32', 5) as tf.Tensor3D;
    const D = tf.randomNormal([V, n, T, O], 0, 1, 'float32', 6) as tf.Tensor4D;
    const P = perSampleKernelProducts(X, D);
    const g = explicitGram(X, D);
    expect(maxRelErr(g.dataSync(), gramOf(P, P))).toBeLessThan(TOL);
    tf.dispose([X, D, g]);
  });

  it('the route chooser prefers explicit products for conv layers of the benchmark shapes', () => {
    // 2c2d's second conv: T = 196 patches, I = 800, O = 64, V = 9, n = 32.
    expect(chooseKernelGramRoute(9, 32, 9, 32, 196, 800, 64, true)).toBe('explicit');
    // Few patches with huge kernels: the patch route (T² n² (I + V² O) ≪ V n T I O).
    expect(chooseKernelGramRoute(1, 2, 1, 2, 2, 500, 500, true)).toBe('patches');
    expect(chooseKernelGramRoute(2, 3, 2, 3, 1, 5, 6, true)).toBe('dense');
  });
});

describe('Dense kernel and bias at once (withBias)', () => {
  it('(X Xᵀ + 1) ⊙ (D Dᵀ) is the Gram of [kernel, bias] per-sample products (Gram and cross)', () => {
    const X = tf.randomNormal([4, 1, 5], 0, 1, 'float32', 7) as tf.Tensor3D;
    const D = tf.randomNormal([3, 4, 1, 6], 0, 1, 'float32', 8) as tf.Tensor4D;
    const Xg = tf.randomNormal([2, 1, 5], 0, 1, 'float32', 9) as tf.Tensor3D;
    const G = tf.randomNormal([1, 2, 1, 6], 0, 1, 'float32', 10) as tf.Tensor4D;
    const P = perSampleKernelProducts(X, D, true);
    const Pg = perSampleKernelProducts(Xg, G, true);
    const g = kernelCrossGram(X, D, X, D, undefined, true);
    expect(maxRelErr(g.dataSync(), gramOf(P, P))).toBeLessThan(TOL);
    const c = kernelCrossGram(X, D, Xg, G, undefined, true);
    expect(maxRelErr(c.dataSync(), gramOf(P, Pg))).toBeLessThan(TOL);
    // Without the bias: the kernel alone; the bias alone is D Dᵀ.
    const k = kernelCrossGram(X, D, X, D);
    const b = biasCrossGram(D, D);
    const both = tf.add(k, b);
    expect(maxRelErr(both.dataSync(), g.dataSync())).toBeLessThan(TOL);
    const X3 = tf.zeros([2, 3, 5]) as tf.Tensor3D;
    const D3 = tf.zeros([1, 2, 3, 6]) as tf.Tensor4D;
    expect(() => kernelCrossGram(X3, D3, X3, D3, 'patches', true)).toThrow(/withBias/);
    tf.dispose([X, D, Xg, G, g, c, k, b, both, X3, D3]);
  });
});
