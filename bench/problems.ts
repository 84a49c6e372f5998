/**
 * The benchmark problems of bench/reference/BENCH-PROBLEMS.md, built with
 * tf.layers: `mlp`, `2c2d` (DeepOBS fmnist_2c2d), `3c3d` (DeepOBS
 * cifar10_3c3d). Inputs standard normal, labels uniform in 0..9, softmax
 * cross-entropy with reduction mean.
 */
import * as tf from '@tensorflow/tfjs';

export type ProblemName = 'mlp' | '2c2d' | '3c3d';
export const PROBLEMS: readonly ProblemName[] = ['mlp', '2c2d', '3c3d'];

export interface Problem {
  name: ProblemName;
  model: tf.Sequential;
  x: tf.Tensor;
  y: tf.Tensor1D;
  batchSize: number;
  dispose(): void;
}

const relu = () => tf.layers.activation({ activation: 'relu' });

function layers(name: ProblemName): tf.layers.Layer[] {
  switch (name) {
    case 'mlp':
      return [
        tf.layers.dense({ inputShape: [784], units: 256 }),
        relu(),
        tf.layers.dense({ units: 128 }),
        relu(),
        tf.layers.dense({ units: 10 }),
      ];
    case '2c2d':
      return [
        tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 5, padding: 'same' }),
        relu(),
        tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'valid' }),
        tf.layers.conv2d({ filters: 64, kernelSize: 5, padding: 'same' }),
        relu(),
        tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'valid' }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 1024 }),
        relu(),
        tf.layers.dense({ units: 10 }),
      ];
    case '3c3d':
      return [
        tf.layers.conv2d({ inputShape: [32, 32, 3], filters: 64, kernelSize: 5, padding: 'valid' }),
        relu(),
        tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
        tf.layers.conv2d({ filters: 96, kernelSize: 3, padding: 'valid' }),
        relu(),
        tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
        tf.layers.conv2d({ filters: 128, kernelSize: 3, padding: 'same' }),
        relu(),
        tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 512 }),
        relu(),
        tf.layers.dense({ units: 256 }),
        relu(),
        tf.layers.dense({ units: 10 }),
      ];
  }
}

const INPUT: Record<ProblemName, { shape: number[]; batch: number }> = {
  mlp: { shape: [784], batch: 128 },
  '2c2d': { shape: [28, 28, 1], batch: 32 },
  '3c3d': { shape: [32, 32, 3], batch: 32 },
};

export function buildProblem(name: ProblemName, seed = 0): Problem {
  const model = tf.sequential({ layers: layers(name) });
  const { shape, batch } = INPUT[name];
  const x = tf.randomNormal([batch, ...shape], 0, 1, 'float32', seed + 1);
  const y = tf.tidy(() => tf.cast(tf.floor(tf.randomUniform([batch], 0, 10, 'float32', seed + 2)), 'int32')) as tf.Tensor1D;
  return {
    name,
    model,
    x,
    y,
    batchSize: batch,
    dispose: () => {
      tf.dispose([x, y]);
      model.dispose();
    },
  };
}
