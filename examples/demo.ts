/**
 * curvpack demo: train a small MLP on real MNIST digits with an ordinary
 * optimizer, and let every step's backward pass also compute per-sample
 * gradient norms (BatchL2Grad) and the gradient variance (Variance).
 *
 *   npm install && npm run demo
 */
import * as tf from '@tensorflow/tfjs';
import { BatchL2Grad, Variance, extend, initBackend } from '../src/index';
import { loadMnist } from './data/mnist';

const backend = await initBackend();
console.log(`curvpack demo — backend: ${backend}`);

const { xTrain, yTrain, xTest, yTest } = loadMnist({ train: 4000, test: 1000, seed: 1 });
// Seeded initialisers: the demo prints the same numbers on every run.
const init = (seed: number) => ({ kernelInitializer: tf.initializers.glorotUniform({ seed }) });
const model = tf.sequential({
  layers: [
    tf.layers.dense({ inputShape: [784], units: 128, activation: 'relu', ...init(1) }),
    tf.layers.dense({ units: 64, activation: 'relu', ...init(2) }),
    tf.layers.dense({ units: 10, ...init(3) }),
  ],
});
const ext = extend(model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
const optimizer = tf.train.adam(1e-3);
const seed = 7; // Dropout-free model: the seed only fixes the engine's per-step random streams
const l2 = new BatchL2Grad();
const variance = new Variance();
const batchSize = 128;
const steps = Math.floor(4000 / batchSize);

function accuracy(): number {
  return tf.tidy(() => {
    const pred = ext.forward(xTest).argMax(1);
    return pred.equal(yTest).mean().dataSync()[0] as number;
  });
}

console.log(`MLP 784-128-64-10, ${ext.numParams} parameters, ${steps} steps/epoch of ${batchSize} digits`);
console.log('epoch  loss    test-acc  ‖g_n‖ median / max (layer 1 kernel)   gradient SNR per layer');
for (let epoch = 1; epoch <= 3; epoch++) {
  let lossSum = 0;
  let norms: number[] = [];
  let snr: number[] = [];
  for (let s = 0; s < steps; s++) {
    const [x, y] = tf.tidy(() => [xTrain.slice(s * batchSize, batchSize), yTrain.slice(s * batchSize, batchSize)]);
    const r = ext.backward(x as tf.Tensor, y as tf.Tensor, { extensions: [l2, variance], seed: seed + s });
    optimizer.applyGradients(r.grads);
    lossSum += r.loss;
    if (s === steps - 1) {
      // Per-sample gradient norms ‖∂ℓ_n/∂W‖ (sqrt of BatchL2Grad; ×N undoes the 1/N of the mean loss).
      norms = Array.from(r.get(l2, 0).dataSync(), (v) => Math.sqrt(v) * batchSize).sort((a, b) => a - b);
      // Gradient signal-to-noise per layer: ‖g‖² / (N·Σ variance).
      snr = [0, 1, 2].map((layer) =>
        tf.tidy(() => {
          const ps = ext.layerParams(layer);
          const g2 = ps.reduce((acc, p) => acc + (tf.sum(tf.square(r.grad(p))).dataSync()[0] as number), 0);
          const v = ps.reduce((acc, p) => acc + (tf.sum(r.get(variance, p)).dataSync()[0] as number), 0);
          return g2 / (batchSize * v);
        }),
      );
    }
    r.dispose();
    tf.dispose([x as tf.Tensor, y as tf.Tensor]);
  }
  const median = norms[Math.floor(norms.length / 2)] as number;
  const max = norms[norms.length - 1] as number;
  console.log(
    `${String(epoch).padStart(5)}  ${(lossSum / steps).toFixed(4)}  ${(accuracy() * 100).toFixed(1).padStart(6)}%   ${median.toFixed(3).padStart(8)} / ${max.toFixed(3).padEnd(8)}                ${snr.map((v) => v.toFixed(3)).join('  ')}`,
  );
}
console.log(`tensors alive at the end: ${tf.memory().numTensors} (model weights, optimizer state, data)`);
