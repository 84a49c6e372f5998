/**
 * KFLR against independent float64 references from TF.js autodiff
 * (kroneckerReference.ts): the exact GGN `Σ_n J_nᵀ H_n J_n` with J_n from
 * `tf.variableGrads` and H_n from the loss formulas, layer inputs from the
 * tf.layers forward pass, conv patches from an explicit im2col loop.
 *
 * Tolerance TOL = 1e-5 relative to the reference's max entry: curvpack computes
 * in float32 (relative rounding 6e-8 per op); these small nets chain a few
 * products and sums of ≤ 100 terms, measured errors are ≤ 1e-6. A wrong
 * convention (missing 1/N, transposed kernel order, averaged positions) gives
 * errors ≥ 1e-1.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../../src/engine/extend';
import { SUPPORTED_LAYERS } from '../../../src/derivatives/index';
import { EKFAC, KFAC, KFLR, type KernelFactors } from '../../../extensions/secondorder/index';
import {
  block,
  exactGgn,
  kron,
  layerInputs,
  makeModel,
  maxRelErr,
  paramSlices,
  randomTensor,
  type LossKind,
} from './kroneckerReference';

const TOL = 1e-5;

function mlp(act: string, sizes: number[], seed: number): tf.Sequential {
  const layers: ((f: { inputShape?: number[] }) => tf.layers.Layer)[] = [];
  sizes.slice(1).forEach((u, i) => {
    layers.push((f) => tf.layers.dense({ ...f, units: u }));
    if (i < sizes.length - 2 && act !== 'linear') layers.push(() => tf.layers.activation({ activation: act as 'tanh' }));
  });
  return makeModel([sizes[0] as number], layers, seed);
}

function targets(kind: LossKind, N: number, C: number, seed: number): tf.Tensor {
  if (kind === 'softmaxCrossEntropy') return tf.tensor1d(Array.from({ length: N }, (_, n) => (n * 7 + seed) % C), 'int32');
  if (kind === 'sigmoidCrossEntropy') return tf.tensor2d(Array.from({ length: N * C }, (_, i) => (i * 5 + seed) % 2), [N, C]);
  return randomTensor([N, C], seed + 1);
}

/** KFLR results per parameter (JS arrays) and the exact GGN on the same batch. */
function runKflr(model: tf.Sequential, kind: LossKind, reduction: 'mean' | 'sum', x: tf.Tensor, y: tf.Tensor) {
  const ext = extend(model, { loss: kind, reduction });
  const kflr = new KFLR();
  const r = ext.backward(x, y, { extensions: [kflr], training: false });
  const res = ext.params.map((p) => {
    const f = r.get(kflr, p) as Partial<KernelFactors>;
    return { A: f.A?.dataSync().slice(), G: (f.G as tf.Tensor).dataSync().slice(), shapeA: f.A?.shape, shapeG: f.G?.shape };
  });
  r.dispose();
  return res;
}

describe('KFLR', () => {
  it('kron(A, G) is the exact kernel GGN block for N = 1 (linear and tanh nets) and G the exact bias block', () => {
    for (const act of ['linear', 'tanh']) {
      const model = mlp(act, [4, 3, 3], 11);
      const x = randomTensor([1, 4], 3);
      const y = targets('softmaxCrossEntropy', 1, 3, 1);
      const ref = exactGgn(model, x, 'softmaxCrossEntropy', 'mean');
      const res = runKflr(model, 'softmaxCrossEntropy', 'mean', x, y);
      paramSlices(model).forEach((p, i) => {
        const exact = block(ref.ggn, ref.D, p.offset, p.size);
        const r = res[i] as (typeof res)[number];
        if (p.shape.length === 2) {
          const [I, O] = p.shape as [number, number];
          expect(r.shapeA).toEqual([I, I]);
          expect(r.shapeG).toEqual([O, O]);
          expect(maxRelErr(kron(r.A as Float32Array, I, r.G, O), exact)).toBeLessThan(TOL);
        } else {
          expect(maxRelErr(r.G, exact)).toBeLessThan(TOL);
        }
      });
      tf.dispose([x, y]);
      model.dispose();
    }
  });

  it('kron(A, G) is the exact kernel block of a single Dense layer with MSE for any N', () => {
    for (const reduction of ['mean', 'sum'] as const) {
      const model = mlp('linear', [5, 3], 21);
      const x = randomTensor([7, 5], 4);
      const y = targets('mse', 7, 3, 2);
      const ref = exactGgn(model, x, 'mse', reduction);
      const res = runKflr(model, 'mse', reduction, x, y);
      const exact = block(ref.ggn, ref.D, 0, 15);
      expect(maxRelErr(kron(res[0]?.A as Float32Array, 5, res[0]?.G as Float32Array, 3), exact)).toBeLessThan(TOL);
      tf.dispose([x, y]);
      model.dispose();
    }
  });

  it('on a deeper net with N > 1: A = mean a aᵀ of the layer inputs, every G = the exact bias GGN block, kernel G = bias G', () => {
    const cases: { act: string; kind: LossKind; reduction: 'mean' | 'sum' }[] = [
      { act: 'tanh', kind: 'softmaxCrossEntropy', reduction: 'mean' },
      { act: 'relu', kind: 'mse', reduction: 'sum' },
      { act: 'sigmoid', kind: 'sigmoidCrossEntropy', reduction: 'mean' },
    ];
    for (const [k, c] of cases.entries()) {
      const C = c.kind === 'sigmoidCrossEntropy' ? 1 : 3;
      const model = mlp(c.act, [4, 5, 4, C], 30 + k);
      const N = 6;
      const x = randomTensor([N, 4], 40 + k, 1.5);
      const y = targets(c.kind, N, C, k);
      const ref = exactGgn(model, x, c.kind, c.reduction);
      const res = runKflr(model, c.kind, c.reduction, x, y);
      const inputs = layerInputs(model, x);
      const denseInputs = model.layers
        .map((l, i) => (l.getClassName() === 'Dense' ? (inputs[i] as tf.Tensor2D).arraySync() : undefined))
        .filter((v): v is number[][] => v !== undefined);
      tf.dispose(inputs);
      const slices = paramSlices(model);
      let kernelIndex = 0;
      slices.forEach((p, i) => {
        const r = res[i] as (typeof res)[number];
        if (p.shape.length === 2) {
          // A = (1/N) Σ_n a_n a_nᵀ from the layer's inputs.
          const a = denseInputs[kernelIndex++] as number[][];
          const I = p.shape[0] as number;
          const A = new Float64Array(I * I);
          for (const an of a) for (let u = 0; u < I; u++) for (let v = 0; v < I; v++) A[u * I + v] += (an[u] as number) * (an[v] as number) / N;
          expect(maxRelErr(r.A as Float32Array, A)).toBeLessThan(TOL);
          // Kernel G is the same matrix as the bias G (next parameter).
          expect(Array.from(r.G)).toEqual(Array.from((res[i + 1] as (typeof res)[number]).G));
        } else {
          expect(maxRelErr(r.G, block(ref.ggn, ref.D, p.offset, p.size))).toBeLessThan(TOL);
        }
      });
      // The test can fail: with N > 1 and a nonlinearity kron(A, G) is NOT the exact block.
      const [I, O] = slices[0]?.shape as [number, number];
      const approx = kron(res[0]?.A as Float32Array, I, res[0]?.G as Float32Array, O);
      expect(maxRelErr(approx, block(ref.ggn, ref.D, 0, I * O))).toBeGreaterThan(1e-2);
      tf.dispose([x, y]);
      model.dispose();
    }
  });

  it('shares factors with KFAC and EKFAC in one step without changing them, and leaks no tensors', () => {
    const model = mlp('tanh', [4, 5, 3], 7);
    const x = randomTensor([5, 4], 8);
    const y = targets('softmaxCrossEntropy', 5, 3, 0);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const before = tf.memory().numTensors;
    const alone = ext.backward(x, y, { extensions: [new KFLR()], training: false });
    const together = ext.backward(x, y, {
      extensions: [new KFAC({ seed: 1 }), new KFLR(), new EKFAC()],
      training: false,
    });
    for (const p of ext.params) {
      const a = alone.get<Record<string, tf.Tensor>>('KFLR', p);
      const b = together.get<Record<string, tf.Tensor>>('KFLR', p);
      for (const k of Object.keys(a)) expect(Array.from((b[k] as tf.Tensor).dataSync())).toEqual(Array.from((a[k] as tf.Tensor).dataSync()));
    }
    alone.dispose();
    together.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
    model.dispose();
  });

  const convSupported = SUPPORTED_LAYERS.includes('Conv2D');
  it.runIf(convSupported)('Conv2D: A from explicit im2col patches (summed over positions), G = exact conv bias GGN block', async () => {
    // conv 'same' 3×3 (zero padding 1) → relu → conv 'valid' 2×2 stride 2 → flatten → dense
    const model = makeModel(
      [5, 5, 2],
      [
        (f) => tf.layers.conv2d({ ...f, filters: 3, kernelSize: [3, 3], strides: [1, 1], padding: 'same' }),
        () => tf.layers.activation({ activation: 'relu' }),
        () => tf.layers.conv2d({ filters: 2, kernelSize: [2, 2], strides: [2, 2], padding: 'valid' }),
        () => tf.layers.flatten(),
        () => tf.layers.dense({ units: 3 }),
      ],
      5,
      0.5,
    );
    const N = 3;
    const x = randomTensor([N, 5, 5, 2], 6, 1.5);
    const y = targets('softmaxCrossEntropy', N, 3, 2);
    // References on cpu (wasm has no Conv2DBackpropFilter for tf.variableGrads).
    await tf.setBackend('cpu');
    const ref = exactGgn(model, x, 'softmaxCrossEntropy', 'mean');
    const inputs = layerInputs(model, x);
    const convIn = [(inputs[0] as tf.Tensor4D).arraySync(), (inputs[2] as tf.Tensor4D).arraySync()];
    tf.dispose(inputs);
    await tf.setBackend('wasm');
    const res = runKflr(model, 'softmaxCrossEntropy', 'mean', x, y);
    const slices = paramSlices(model);
    const convs = [
      { k: 3, s: 1, pad: 1, Cin: 2, H: 5, Ho: 5 },
      { k: 2, s: 2, pad: 0, Cin: 3, H: 5, Ho: 2 },
    ];
    convs.forEach((cv, li) => {
      const I = cv.k * cv.k * cv.Cin;
      const A = new Float64Array(I * I);
      for (const xn of convIn[li] as number[][][][]) {
        for (let ho = 0; ho < cv.Ho; ho++)
          for (let wo = 0; wo < cv.Ho; wo++) {
            const patch: number[] = [];
            for (let i = 0; i < cv.k; i++)
              for (let j = 0; j < cv.k; j++)
                for (let c = 0; c < cv.Cin; c++) {
                  const h = ho * cv.s + i - cv.pad;
                  const w = wo * cv.s + j - cv.pad;
                  patch.push(h >= 0 && h < cv.H && w >= 0 && w < cv.H ? ((xn[h] as number[][])[w] as number[])[c] as number : 0);
                }
            for (let u = 0; u < I; u++) for (let v = 0; v < I; v++) A[u * I + v] += ((patch[u] as number) * (patch[v] as number)) / N;
          }
      }
      const kernel = res[2 * li] as (typeof res)[number];
      expect(kernel.shapeA).toEqual([I, I]);
      expect(maxRelErr(kernel.A as Float32Array, A)).toBeLessThan(TOL);
      const bias = slices[2 * li + 1] as (typeof slices)[number];
      expect(maxRelErr((res[2 * li + 1] as (typeof res)[number]).G, block(ref.ggn, ref.D, bias.offset, bias.size))).toBeLessThan(TOL);
      expect(Array.from(kernel.G)).toEqual(Array.from((res[2 * li + 1] as (typeof res)[number]).G));
    });
    tf.dispose([x, y]);
    model.dispose();
  });
});
