/**
 * Backend selection, and running on the user's TF.js instance: a model
 * built from `@tensorflow/tfjs-layers` / `@tensorflow/tfjs-core` imported
 * directly (what tfjs-node and tfjs-node-gpu re-export) works with curvpack.
 */
import * as tfc from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { extend } from '../src/engine/extend';
import { BatchGrad } from '../extensions/firstorder/index';

afterEach(() => {
  delete process.env.CURVPACK_BACKEND;
});

describe('initBackend', () => {
  it('picks wasm when tfjs-node is not installed', async () => {
    expect(await initBackend()).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('honours CURVPACK_BACKEND and the option (the option wins)', async () => {
    process.env.CURVPACK_BACKEND = 'cpu';
    expect(await initBackend()).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(await initBackend({ backend: 'wasm' })).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('explains an unknown or unavailable backend', async () => {
    process.env.CURVPACK_BACKEND = 'webgpu';
    await expect(initBackend()).rejects.toThrow(/CURVPACK_BACKEND='webgpu' is not a known backend; use one of tensorflow, wasm, cpu/);
    delete process.env.CURVPACK_BACKEND;
    await expect(initBackend({ backend: 'tensorflow' })).rejects.toThrow(
      /backend 'tensorflow' was requested but is not available: install @tensorflow\/tfjs-node.*tfjs-node-gpu/,
    );
  });
});

describe("the user's TF.js instance", () => {
  it('a model and tensors built from tfjs-layers / tfjs-core directly', async () => {
    await initBackend({ backend: 'wasm' });
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ inputShape: [3], units: 4, activation: 'tanh' }), tfl.layers.dense({ units: 2 })],
    });
    const x = tfc.randomNormal([5, 3]);
    const y = tfc.tensor1d([0, 1, 1, 0, 1], 'int32');
    const ext = extend(model as unknown as tf.LayersModel, { loss: 'softmaxCrossEntropy' });
    const bg = new BatchGrad();
    const r = ext.backward(x, y, { extensions: [bg] });
    // reference: autodiff through the same instance
    const vars = model.trainableWeights.map((w) => w.read() as tfc.Variable);
    const { grads, value } = tfc.variableGrads(
      () => tfc.losses.softmaxCrossEntropy(tfc.oneHot(y, 2), model.apply(x) as tfc.Tensor) as tfc.Scalar,
      vars,
    );
    expect(Math.abs(r.loss - (value.dataSync()[0] as number))).toBeLessThan(1e-5);
    for (const v of vars) {
      const a = r.grads[v.name]!.dataSync();
      const b = grads[v.name]!.dataSync();
      Array.from(a).forEach((ai, i) => expect(Math.abs(ai - (b[i] as number))).toBeLessThan(1e-5));
    }
    expect(r.get(bg, 0).shape).toEqual([5, 3, 4]);
    r.dispose();
    tfc.dispose([x, y, value, ...Object.values(grads)]);
    model.dispose();
  });
});
