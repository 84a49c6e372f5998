import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { BatchGrad } from '../../extensions/firstorder/index';

describe('smoke', () => {
  it('runs a backward pass on wasm', () => {
    expect(tf.getBackend()).toBe('wasm');
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2 })] });
    const ext = extend(model, { loss: 'mse' });
    const x = tf.randomNormal([4, 3]);
    const y = tf.randomNormal([4, 2]);
    const bg = new BatchGrad();
    const r = ext.backward(x, y, { extensions: [bg] });
    expect(r.get(bg, 0).shape).toEqual([4, 3, 2]);
    r.dispose();
    tf.dispose([x, y]);
  });
});
