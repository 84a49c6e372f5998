/**
 * The engine: gradients and losses equal TF.js autodiff of the same model,
 * results are queryable and disposable, nothing leaks across steps, models
 * are not mutated, and bad input gets clear errors.
 *
 * Tolerance: curvpack and TF.js autodiff both compute in float32 through
 * different op sequences; 1e-5 relative to the largest gradient entry is
 * ~100 float32 ulps, far below any real error.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { BatchGrad, BatchL2Grad, SumGradSquared, Variance } from '../../extensions/firstorder/index';
import { referenceGrads, maxRelErr, type LossKind } from '../helpers/autodiff';
import type { LinearModuleDerivatives } from '../../src/derivatives/types';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const TOL = 1e-5;

function mlp(activation: string, inputDim = 5, seed = 1): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [inputDim], units: 6, activation: activation as 'relu', kernelInitializer: tf.initializers.glorotNormal({ seed }) , biasInitializer: tf.initializers.randomNormal({ seed: seed + 1 }) }),
      tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }), biasInitializer: tf.initializers.randomNormal({ seed: seed + 3 }) }),
    ],
  });
}

function targets(kind: LossKind, N: number, C: number, seed = 3): tf.Tensor {
  if (kind === 'softmaxCrossEntropy') return tf.tensor1d(Array.from({ length: N }, (_, i) => (i * 7 + seed) % C), 'int32');
  if (kind === 'sigmoidCrossEntropy') return tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([N, C], 0, 1, 'float32', seed), 0.5), 'float32'));
  return tf.randomNormal([N, C], 0, 1, 'float32', seed);
}

expectNoLeaksPerTest(); // every test disposes what it creates

describe('gradients equal TF.js autodiff', () => {
  const acts = ['linear', 'relu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus', 'softsign', 'relu6'];
  const losses: LossKind[] = ['mse', 'softmaxCrossEntropy', 'sigmoidCrossEntropy'];
  for (const act of acts) {
    for (const kind of losses) {
      for (const reduction of ['mean', 'sum'] as const) {
        it(`${act} / ${kind} / ${reduction}`, () => {
          const model = mlp(act);
          const x = tf.randomNormal([4, 5], 0, 1.5, 'float32', 7);
          const y = targets(kind, 4, 3);
          const ext = extend(model, { loss: kind, reduction });
          const r = ext.backward(x, y);
          const ref = referenceGrads(model, kind, reduction, x, y);
          expect(Math.abs(r.loss - ref.loss) / Math.abs(ref.loss)).toBeLessThan(TOL);
          for (const p of ext.params) expect(maxRelErr(r.grads[p.name] as tf.Tensor, ref.grads[p.name] as tf.Tensor)).toBeLessThan(TOL);
          r.dispose();
          tf.dispose([x, y, ...Object.values(ref.grads)]);
          model.dispose();
        });
      }
    }
  }

  it('LeakyReLU and Activation layers, batch size 1, one-hot targets', () => {
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ inputShape: [4], units: 5 }),
        tf.layers.leakyReLU({ alpha: 0.2 }),
        tf.layers.dense({ units: 5, useBias: false }),
        tf.layers.activation({ activation: 'tanh' }),
        tf.layers.dense({ units: 3 }),
      ],
    });
    const x = tf.randomNormal([1, 4], 0, 1, 'float32', 11);
    const y = tf.tensor2d([[0, 0, 1]]);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    expect(ext.params.map((p) => p.shortName)).toEqual(['0/kernel', '0/bias', '2/kernel', '4/kernel', '4/bias']);
    const r = ext.backward(x, y);
    const ref = referenceGrads(model, 'softmaxCrossEntropy', 'mean', x, y);
    for (const p of ext.params) expect(maxRelErr(r.grad(p), ref.grads[p.name] as tf.Tensor)).toBeLessThan(TOL);
    r.dispose();
    tf.dispose([x, y, ...Object.values(ref.grads)]);
    model.dispose();
  });

  it('functional models whose layers form a chain', () => {
    const input = tf.input({ shape: [3] });
    const h = tf.layers.dense({ units: 4, activation: 'tanh' }).apply(input) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 2 }).apply(h) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: out });
    const x = tf.randomNormal([6, 3], 0, 1, 'float32', 2);
    const y = tf.randomNormal([6, 2], 0, 1, 'float32', 4);
    const ext = extend(model, { loss: 'mse', reduction: 'sum' });
    const r = ext.backward(x, y);
    const ref = referenceGrads(model, 'mse', 'sum', x, y);
    for (const p of ext.params) expect(maxRelErr(r.grad(p), ref.grads[p.name] as tf.Tensor)).toBeLessThan(TOL);
    r.dispose();
    tf.dispose([x, y, ...Object.values(ref.grads)]);
    model.dispose();
  });

  it('forward equals model.predict', () => {
    const model = mlp('elu');
    const x = tf.randomNormal([7, 5], 0, 1, 'float32', 3);
    const ext = extend(model, { loss: 'mse' });
    const a = ext.forward(x);
    const b = model.predict(x) as tf.Tensor;
    expect(maxRelErr(a, b)).toBeLessThan(1e-6);
    tf.dispose([a, b, x]);
    model.dispose();
  });
});

describe('results and training', () => {
  it('grads drive optimizer.applyGradients and the loss decreases', () => {
    const model = mlp('tanh');
    const ext = extend(model, { loss: 'mse' });
    const x = tf.randomNormal([16, 5], 0, 1, 'float32', 5);
    const y = tf.randomNormal([16, 3], 0, 1, 'float32', 6);
    const opt = tf.train.sgd(0.1);
    const losses: number[] = [];
    for (let s = 0; s < 20; s++) {
      const r = ext.backward(x, y);
      losses.push(r.loss);
      opt.applyGradients(r.grads);
      r.dispose();
    }
    expect(losses[19]).toBeLessThan((losses[0] as number) * 0.8);
    opt.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('results are queryable per parameter and per extension', () => {
    const model = mlp('relu');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const x = tf.randomNormal([4, 5]);
    const y = tf.tensor1d([0, 1, 2, 1], 'int32');
    const bg = new BatchGrad();
    const l2 = new BatchL2Grad();
    const r = ext.backward(x, y, { extensions: [bg, l2] });
    const k = ext.params[0]!;
    expect(r.get(bg, k).shape).toEqual([4, 5, 6]);
    expect(r.get('BatchGrad', k.name)).toBe(r.get(bg, k.shortName));
    expect(Object.keys(r.forExtension(l2))).toEqual(ext.params.map((p) => p.name));
    expect(Object.keys(r.forParam(k))).toEqual(['BatchGrad', 'BatchL2Grad']);
    expect(r.list(bg).map((t) => t?.shape[0])).toEqual([4, 4, 4, 4]);
    // Σ_n batch_grad = grad
    const summed = tf.sum(r.get(bg, k), 0);
    expect(maxRelErr(summed, r.grad(k))).toBeLessThan(1e-6);
    summed.dispose();
    expect(() => r.get('KFAC', k)).toThrow(/no results for extension 'KFAC'.*BatchGrad, BatchL2Grad/);
    expect(() => r.get(bg, 'nope')).toThrow(/unknown parameter 'nope'.*dense/);
    r.dispose();
    expect(() => r.get(bg, k)).toThrow(/disposed/);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('no tensor growth across 50 steps with extensions', () => {
    const model = mlp('sigmoid');
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const x = tf.randomNormal([8, 5]);
    const y = tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1], 'int32');
    const opt = tf.train.adam(0.01);
    const exts = [new BatchGrad(), new BatchL2Grad({ subsampling: [1, 3] }), new SumGradSquared(), new Variance()];
    const counts: number[] = [];
    for (let s = 0; s < 50; s++) {
      const r = ext.backward(x, y, { extensions: exts });
      opt.applyGradients(r.grads);
      r.dispose();
      counts.push(tf.memory().numTensors);
    }
    // the optimizer creates its slots in step 1; afterwards nothing may grow
    expect(new Set(counts.slice(1)).size).toBe(1);
    opt.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('does not mutate the model or the inputs', () => {
    const model = mlp('tanh');
    const cfg = JSON.stringify(model.getConfig());
    const w = model.getWeights().map((t) => Array.from(t.dataSync()));
    const ext = extend(model, { loss: 'mse' });
    const x = tf.randomNormal([3, 5]);
    const y = tf.randomNormal([3, 3]);
    const xv = Array.from(x.dataSync());
    const r = ext.backward(x, y, { extensions: [new BatchGrad({ subsampling: [2, 0] })] });
    r.dispose();
    expect(JSON.stringify(model.getConfig())).toBe(cfg);
    model.getWeights().forEach((t, i) => expect(Array.from(t.dataSync())).toEqual(w[i]));
    expect(Array.from(x.dataSync())).toEqual(xv);
    expect(x.isDisposed).toBe(false);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('Conv2D: the gradient needs no patches; extensions share one unfolded input per module and step', () => {
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.conv2d({ filters: 2, kernelSize: 2, strides: 2 }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 3 }),
      ],
    });
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const convs = ext.modules.map((m) => m.derivatives).filter((d): d is LinearModuleDerivatives => d.kind === 'Conv2D');
    expect(convs.length).toBe(2);
    let unfolds = 0;
    for (const d of convs) {
      const own = d.unfoldInput.bind(d);
      d.unfoldInput = (rec) => {
        unfolds++;
        return own(rec);
      };
    }
    const x = tf.randomNormal([4, 6, 6, 2], 0, 1, 'float32', 12);
    const y = tf.tensor1d([0, 1, 2, 1], 'int32');
    const plain = ext.backward(x, y);
    expect(unfolds).toBe(0);
    // Two extensions that need the patches of both convs: one unfold per conv.
    const bg = new BatchGrad();
    const sgs = new SumGradSquared();
    const r = ext.backward(x, y, { extensions: [bg, sgs] });
    expect(unfolds).toBe(2);
    for (const p of ext.params) {
      // The conv-based gradient equals the sum of the per-sample gradients (patch route).
      expect(maxRelErr(r.grads[p.name] as tf.Tensor, plain.grads[p.name] as tf.Tensor)).toBe(0);
      const summed = tf.sum(r.get(bg, p), 0);
      expect(maxRelErr(summed, plain.grads[p.name] as tf.Tensor)).toBeLessThan(TOL);
      summed.dispose();
    }
    plain.dispose();
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('subsampling selects samples in the given order', () => {
    const model = mlp('tanh');
    const ext = extend(model, { loss: 'mse' });
    const x = tf.randomNormal([5, 5]);
    const y = tf.randomNormal([5, 3]);
    const all = new BatchGrad();
    const sub = new BatchGrad({ subsampling: [4, 1], name: 'sub' });
    const r = ext.backward(x, y, { extensions: [all, sub] });
    for (const p of ext.params) {
      const rows = tf.gather(r.get(all, p), [4, 1]);
      expect(maxRelErr(r.get(sub, p), rows)).toBeLessThan(1e-7);
      rows.dispose();
    }
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('bad input', () => {
  it('unsupported layer names its class and the supported list', () => {
    const model = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [3], units: 4 }), tf.layers.batchNormalization(), tf.layers.dense({ units: 2 })],
    });
    expect(() => extend(model, { loss: 'mse' })).toThrow(/class BatchNormalization is not supported.*supported layers: .*Dense/);
    model.dispose();
  });

  it('a softmax output activation is refused with the fix', () => {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 4, activation: 'softmax' })] });
    expect(() => extend(model, { loss: 'softmaxCrossEntropy' })).toThrow(/activation 'softmax' is not supported.*remove the softmax/);
    model.dispose();
  });

  it('non-chain functional models are refused', () => {
    const input = tf.input({ shape: [3] });
    const a = tf.layers.dense({ units: 4 }).apply(input) as tf.SymbolicTensor;
    const b = tf.layers.dense({ units: 4 }).apply(input) as tf.SymbolicTensor;
    const s = tf.layers.add().apply([a, b]) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2 }).apply(s) as tf.SymbolicTensor });
    expect(() => extend(model, { loss: 'mse' })).toThrow(/form a chain/);
    model.dispose();
  });

  it('unknown loss or reduction names the option', () => {
    const model = mlp('relu');
    expect(() => extend(model, { loss: 'hinge' as 'mse' })).toThrow(/option 'loss': unknown loss 'hinge'; use one of mse, softmaxCrossEntropy, sigmoidCrossEntropy/);
    expect(() => extend(model, { loss: 'mse', reduction: 'avg' as 'mean' })).toThrow(/option 'reduction': unknown reduction 'avg'/);
    model.dispose();
  });

  it('target and input shape mismatches name both shapes', () => {
    const model = mlp('relu');
    const mse = extend(model, { loss: 'mse' });
    const ce = extend(model, { loss: 'softmaxCrossEntropy' });
    const x = tf.randomNormal([4, 5]);
    const y = tf.randomNormal([4, 2]);
    const ids = tf.tensor1d([0, 1, 5, 2], 'int32');
    const xBad = tf.randomNormal([4, 6]);
    expect(() => mse.backward(x, y)).toThrow(/targets of shape \[4, 2\] do not fit model output of shape \[4, 3\]/);
    expect(() => ce.backward(x, y)).toThrow(/targets of shape \[4, 2\] do not fit model output of shape \[4, 3\]/);
    expect(() => ce.backward(x, ids)).toThrow(/target 2 is 5, not a class id in 0..2/);
    expect(() => mse.backward(xBad, y)).toThrow(/input of shape \[4, 6\] does not fit the model input \[N, 5\]/);
    tf.dispose([x, y, ids, xBad]);
    model.dispose();
  });

  it('a NaN/Inf loss is reported, not propagated', () => {
    const model = mlp('relu');
    const ext = extend(model, { loss: 'mse' });
    const x = tf.tensor2d([[NaN, 0, 0, 0, 0]]);
    const y = tf.zeros([1, 3]);
    expect(() => ext.backward(x, y, { extensions: [new BatchGrad()] })).toThrow(/the loss is NaN \(not finite\)/);
    const xi = tf.tensor2d([[1e38, 1e38, 1e38, 1e38, 1e38]]);
    expect(() => ext.backward(xi, y)).toThrow(/not finite/);
    tf.dispose([x, y, xi]);
    model.dispose();
  });

  it('subsampling out of range and duplicate names are refused', () => {
    const model = mlp('relu');
    const ext = extend(model, { loss: 'mse' });
    const x = tf.randomNormal([3, 5]);
    const y = tf.randomNormal([3, 3]);
    expect(() => ext.backward(x, y, { extensions: [new BatchGrad({ subsampling: [0, 3] })] })).toThrow(
      /BatchGrad: option 'subsampling' has index 3, outside the batch of 3 samples/,
    );
    expect(() => ext.backward(x, y, { extensions: [new BatchGrad({ subsampling: [] })] })).toThrow(/'subsampling' is empty/);
    expect(() => ext.backward(x, y, { extensions: [new BatchGrad(), new BatchGrad()] })).toThrow(/two extensions or hooks are named 'BatchGrad'/);
    tf.dispose([x, y]);
    model.dispose();
  });
});
