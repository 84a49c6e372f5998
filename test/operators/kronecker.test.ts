/**
 * KFLR/KFAC and EKFAC operators against references built independently:
 *
 * - the bias block of KFLR is exactly the bias GGN block (FORMAT.md §6.1), and
 *   for a single Dense layer with MSE the kernel block kron(A, G) is the
 *   exact kernel GGN block — both compared with the GGN operator (itself
 *   checked against autodiff in curvature.test.ts);
 * - A of the first layer is (1/P) Σ x xᵀ of the raw inputs;
 * - EKFAC's lambda equals diag(Qᵀ GGN_block Q) (resp. the empirical Fisher
 *   block) with Q = kron(UA, UG) from the operator's bases (FORMAT.md §6.3),
 *   and its product is Q diag(lambda) Qᵀ;
 * - KFLR/EKFAC factors are sums over data points, so any batching (short last
 *   batch included) gives the same operator;
 * - inverses against dense solves.
 *
 * Tolerance 1e-5 relative to the largest reference entry (float32 products
 * and float64 eigendecompositions of O(10)-sized factors; measured ≤ 1e-6).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import {
  ekfacOperator,
  ekfacOperatorAsync,
  empiricalFisherOperator,
  ggnOperator,
  kroneckerOperator,
  kroneckerOperatorFromFactors,
  type EkfacBlock,
} from '../../src/operators/index';
import { KFLR } from '../../extensions/secondorder/index';
import type { KroneckerFactors } from '../../extensions/secondorder/kroneckerFactors';
import { buildMlp, classTargets, denseSolve, expectNoLeak, randomTensor, maxRelErr, type MlpSpec } from './reference';

const TOL = 1e-5;
const spec: MlpSpec = { inputs: 4, units: [5, 3], activation: 'tanh', loss: 'softmaxCrossEntropy', reduction: 'mean' };
const model = buildMlp(spec, 5);
const ext = extend(model, { loss: spec.loss, reduction: spec.reduction });
const N = 9;
const x = randomTensor([N, 4], 2) as tf.Tensor2D;
const y = classTargets(N, 3, 8);
const D = ext.numParams;

/** Square block [off, off+size) of a row-major D×D matrix. */
function block(M: Float64Array, n: number, off: number, size: number): Float64Array {
  return Float64Array.from({ length: size * size }, (_, k) => M[(off + Math.floor(k / size)) * n + off + (k % size)] as number);
}

/** Row-major kron(A, B). */
function kron(A: ArrayLike<number>, a: number, B: ArrayLike<number>, b: number): Float64Array {
  const out = new Float64Array(a * b * a * b);
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) for (let k = 0; k < b; k++) for (let l = 0; l < b; l++) {
    out[(i * b + k) * (a * b) + j * b + l] = (A[i * a + j] as number) * (B[k * b + l] as number);
  }
  return out;
}

describe('KFLR operator', () => {
  it('bias blocks equal the exact GGN bias blocks; first-layer A is (1/P) Σ x xᵀ; batching does not matter', () => {
    const op = kroneckerOperator(ext, { x, y, batchSize: 4 });
    const G = ggnOperator(ext, { x, y }).toDense();
    const K = op.toDense();
    for (const p of ext.params.filter((q) => q.role === 'bias')) {
      expect(maxRelErr(block(K, D, p.offset, p.size), block(G, D, p.offset, p.size))).toBeLessThan(TOL);
    }
    const f = op.block(ext.params[0] as never).factors as { A: tf.Tensor2D };
    const xs = x.dataSync();
    const A = new Float64Array(16);
    for (let n = 0; n < N; n++) for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) A[i * 4 + j] = (A[i * 4 + j] as number) + (xs[n * 4 + i] as number) * (xs[n * 4 + j] as number) / N;
    expect(maxRelErr(f.A.dataSync(), A)).toBeLessThan(TOL);
    const whole = kroneckerOperator(ext, { x, y });
    expect(maxRelErr(whole.toDense(), K)).toBeLessThan(TOL);
    // Kernel block = kron(A, G) of its factors; cross-parameter blocks are 0.
    const k0 = ext.params[0] as (typeof ext.params)[number];
    const fk = op.block(k0).factors as { A: tf.Tensor2D; G: tf.Tensor2D };
    const [I, O] = k0.shape as [number, number];
    expect(maxRelErr(block(K, D, 0, k0.size), kron(fk.A.dataSync(), I, fk.G.dataSync(), O))).toBeLessThan(TOL);
    expect(K[0 * D + (ext.params[1] as { offset: number }).offset]).toBe(0);
    op.dispose();
    whole.dispose();
  });

  it('is exact for a single Dense layer with MSE (kernel block = GGN kernel block)', () => {
    const lin = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [4], kernelInitializer: tf.initializers.glorotNormal({ seed: 1 }) })] });
    const e = extend(lin, { loss: 'mse', reduction: 'mean' });
    const t = randomTensor([N, 3], 3);
    const K = kroneckerOperator(e, { x, y: t, batchSize: 5 });
    const G = ggnOperator(e, { x, y: t }).toDense();
    expect(maxRelErr(K.toDense(), Float64Array.from(G, (g, k) => (Math.floor(k / 15) < 12) === (k % 15 < 12) ? g : 0))).toBeLessThan(TOL);
    K.dispose();
    lin.dispose();
  });

  it('inverse(λ) equals the dense solve; dispose frees everything', () => {
    const before = tf.memory().numTensors;
    const op = kroneckerOperator(ext, { x, y });
    const M = op.toDense();
    const lam = 0.05;
    const inv = op.inverse(lam);
    const b = tf.randomNormal([D], 0, 1, 'float32', 4);
    const r = inv.apply(b);
    expect(maxRelErr(r.dataSync(), denseSolve(M, D, lam, b.dataSync()))).toBeLessThan(1e-4);
    expect(() => op.inverse(0)).toThrow(/damping must be a finite number > 0/);
    tf.dispose([b, r]);
    op.dispose();
    inv.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('from existing factors (a KFLR extension result on the batch) gives the same operator', () => {
    const kflr = new KFLR();
    const res = ext.backward(x, y, { extensions: [kflr], training: false });
    const op = kroneckerOperatorFromFactors(ext.params, ext.params.map((p) => res.get(kflr, p) as KroneckerFactors));
    res.dispose();
    const ref = kroneckerOperator(ext, { x, y });
    expect(maxRelErr(op.toDense(), ref.toDense())).toBeLessThan(TOL);
    op.dispose();
    ref.dispose();
  });
});

describe('EKFAC operator', () => {
  const lambdaCheck = (which: 'ggn' | 'empiricalFisher', dense: Float64Array, op: ReturnType<typeof ekfacOperator>) => {
    for (const p of ext.params) {
      const r = (op.block(p) as EkfacBlock).result;
      const UG = r.UG.dataSync();
      const O = r.UG.shape[0];
      const I = 'UA' in r && r.UA ? r.UA.shape[0] : 1;
      const UA = 'UA' in r && r.UA ? r.UA.dataSync() : Float64Array.of(1);
      const Q = kron(UA, I, UG, O); // columns q_(i,o) (row-major vec of the kernel layout)
      const Bk = block(dense, D, p.offset, p.size);
      const lam = r.lambda.dataSync();
      const ref = new Float64Array(p.size);
      for (let c = 0; c < p.size; c++) {
        let s = 0;
        for (let i = 0; i < p.size; i++) for (let j = 0; j < p.size; j++) s += (Q[i * p.size + c] as number) * (Bk[i * p.size + j] as number) * (Q[j * p.size + c] as number);
        ref[c] = s;
      }
      expect(maxRelErr(lam, ref), `${which} ${p.name}`).toBeLessThan(TOL);
      // The block's product is Q diag(lambda) Qᵀ.
      const prod = Float64Array.from({ length: p.size * p.size }, (_, k) => {
        const i = Math.floor(k / p.size);
        const j = k % p.size;
        let s = 0;
        for (let c = 0; c < p.size; c++) s += (Q[i * p.size + c] as number) * (lam[c] as number) * (Q[j * p.size + c] as number);
        return s;
      });
      expect(maxRelErr(block(op.toDense(), D, p.offset, p.size), prod)).toBeLessThan(TOL);
    }
  };

  it('lambda = diag(Qᵀ GGN_block Q) in the KFLR eigenbasis, independent of batching', () => {
    const op = ekfacOperator(ext, { x, y, batchSize: 4 });
    lambdaCheck('ggn', ggnOperator(ext, { x, y }).toDense(), op);
    const whole = ekfacOperator(ext, { x, y });
    expect(maxRelErr(whole.toDense(), op.toDense())).toBeLessThan(TOL);
    op.dispose();
    whole.dispose();
  });

  it('the empirical-Fisher correction gives diag(Qᵀ EF_block Q)', () => {
    const op = ekfacOperator(ext, { x, y, batchSize: 5 }, );
    const ef = ekfacOperator(ext, { x, y, batchSize: 5 }, { correction: 'empiricalFisher' });
    lambdaCheck('empiricalFisher', empiricalFisherOperator(ext, { x, y }).toDense(), ef);
    op.dispose();
    ef.dispose();
  });

  it('inverse(λ) equals the dense solve; streamed dataset equals in-memory; no leaks', async () => {
    const before = tf.memory().numTensors;
    const op = ekfacOperator(ext, { x, y });
    const M = op.toDense();
    const inv = op.inverse(0.02);
    const b = tf.randomNormal([D], 0, 1, 'float32', 6);
    const r = inv.apply(b);
    expect(maxRelErr(r.dataSync(), denseSolve(M, D, 0.02, b.dataSync()))).toBeLessThan(1e-4);
    const rows = [tf.unstack(x), tf.unstack(y)];
    const ds = tf.data.zip({ xs: tf.data.array(rows[0] as tf.Tensor[]), ys: tf.data.array(rows[1] as tf.Tensor[]) }).batch(4);
    const aop = await ekfacOperatorAsync(ext, ds as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>);
    expect(maxRelErr(aop.toDense(), M)).toBeLessThan(TOL);
    tf.dispose([b, r, ...(rows.flat() as tf.Tensor[])]);
    for (const o of [op, inv, aop]) o.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad options without leaking', () => {
    expect(() => expectNoLeak(() => ekfacOperator(ext, { x, y }, { correction: 'x' as never }))).toThrow(/correction/);
    expect(() => expectNoLeak(() => kroneckerOperator(ext, { x, y }, { factors: 'kflr', mcSamples: 2 }))).toThrow(/'kfac' only/);
    expect(() => kroneckerOperator(ext, { x: tf.zeros([0, 4]), y: tf.zeros([0]) })).toThrow(/empty/);
  });

  it('KFAC (Monte-Carlo) is reproducible with a seed and has the data’s A', () => {
    const a = kroneckerOperator(ext, { x, y, batchSize: 4 }, { factors: 'kfac', mcSamples: 4, seed: 3 });
    const b = kroneckerOperator(ext, { x, y, batchSize: 4 }, { factors: 'kfac', mcSamples: 4, seed: 3 });
    const k = kroneckerOperator(ext, { x, y, batchSize: 4 });
    expect(maxRelErr(a.toDense(), b.toDense())).toBe(0);
    const p = ext.params[0] as (typeof ext.params)[number];
    expect(maxRelErr((a.block(p).factors as { A: tf.Tensor }).A.dataSync(), (k.block(p).factors as { A: tf.Tensor }).A.dataSync())).toBeLessThan(TOL);
    for (const o of [a, b, k]) o.dispose();
  });
});
