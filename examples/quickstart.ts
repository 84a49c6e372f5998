import * as tf from '@tensorflow/tfjs';
import { BatchGrad, DiagGGNExact, KFAC, extend, initBackend } from '../src/index';

await initBackend(); // tensorflow (tfjs-node) if installed, else wasm, else cpu
const model = tf.sequential({
  layers: [tf.layers.dense({ inputShape: [784], units: 64, activation: 'relu' }), tf.layers.dense({ units: 10 })],
});
const ext = extend(model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
const [batchGrad, diagGgn, kfac] = [new BatchGrad(), new DiagGGNExact(), new KFAC({ seed: 0 })];
const x = tf.randomNormal([32, 784]);
const y = tf.randomUniform([32], 0, 10, 'int32');
const r = ext.backward(x, y, { extensions: [batchGrad, diagGgn, kfac] }); // one backward pass
tf.train.adam(1e-3).applyGradients(r.grads); // an ordinary training step
console.log(r.loss, r.get(batchGrad, 0).shape, r.get(diagGgn, 0).shape, r.get(kfac, 0).G.shape); // [32,784,64] [784,64] [64,64]
r.dispose();
