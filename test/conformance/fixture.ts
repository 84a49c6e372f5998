/**
 * Loading a reference fixture (format `curvature-fixture/1`, see
 * test/fixtures/reference/FORMAT.md): build the model from its spec with
 * tf.layers, set the parameters, extend it with the fixture's loss.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import type { ParamInfo } from '../../src/engine/params';

export interface T {
  shape: number[];
  data: number[];
}

export interface FixtureParam {
  name: string;
  layer: number;
  role: 'kernel' | 'bias';
  tensor: T;
}

export interface Fixture {
  format: string;
  name: string;
  description: string;
  model: { inputShape: number[]; layers: Record<string, unknown>[] };
  loss: { type: 'mse' | 'softmax_cross_entropy' | 'sigmoid_cross_entropy'; reduction: 'mean' | 'sum' };
  inputs: T;
  targets: T;
  params: FixtureParam[];
  quantities: Record<string, unknown>;
}

export function readFixture(path: string): Fixture {
  const fx = JSON.parse(readFileSync(path, 'utf8')) as Fixture;
  if (fx.format !== 'curvature-fixture/1') throw new Error(`${path}: unknown fixture format '${fx.format}'.`);
  return fx;
}

export function toTensor(t: T, dtype: 'float32' | 'int32' = 'float32'): tf.Tensor {
  return tf.tensor(t.data, t.shape, dtype);
}

const LOSS = { mse: 'mse', softmax_cross_entropy: 'softmaxCrossEntropy', sigmoid_cross_entropy: 'sigmoidCrossEntropy' } as const;

/** A tf.layers layer from a fixture spec (FORMAT.md §3). */
export function buildLayer(spec: Record<string, unknown>, inputShape?: number[]): tf.layers.Layer {
  const base = inputShape ? { inputShape } : {};
  const { class: cls, ...cfg } = spec as { class: string } & Record<string, unknown>;
  switch (cls) {
    case 'Dense':
      return tf.layers.dense({ ...base, units: cfg.units as number, useBias: cfg.useBias as boolean });
    case 'Conv2D':
      return tf.layers.conv2d({
        ...base,
        filters: cfg.filters as number,
        kernelSize: cfg.kernelSize as number[],
        strides: cfg.strides as number[],
        padding: cfg.padding as 'valid' | 'same',
        useBias: cfg.useBias as boolean,
      });
    case 'MaxPooling2D':
      return tf.layers.maxPooling2d({ ...base, poolSize: cfg.poolSize as [number, number], strides: cfg.strides as [number, number], padding: cfg.padding as 'valid' | 'same' });
    case 'AveragePooling2D':
      return tf.layers.averagePooling2d({ ...base, poolSize: cfg.poolSize as [number, number], strides: cfg.strides as [number, number], padding: cfg.padding as 'valid' | 'same' });
    case 'ZeroPadding2D':
      return tf.layers.zeroPadding2d({ ...base, padding: cfg.padding as [[number, number], [number, number]] });
    case 'Flatten':
      return tf.layers.flatten(base);
    case 'Activation':
      return tf.layers.activation({ ...base, activation: cfg.activation as 'relu' });
    case 'LeakyReLU':
      return tf.layers.leakyReLU({ ...base, alpha: cfg.alpha as number });
    default:
      throw new Error(`fixture layer class ${cls} is not known to the fixture loader.`);
  }
}

export interface LoadedFixture {
  fx: Fixture;
  model: tf.Sequential;
  ext: ExtendedModel;
  x: tf.Tensor;
  y: tf.Tensor;
  /** curvpack's parameter info for each fixture parameter (same order). */
  params: ParamInfo[];
  dispose(): void;
}

/** Build, set weights and extend. Throws if curvpack cannot handle the model. */
export function loadFixture(fx: Fixture): LoadedFixture {
  const model = tf.sequential();
  fx.model.layers.forEach((spec, i) => model.add(buildLayer(spec, i === 0 ? fx.model.inputShape : undefined)));
  for (const [li, layer] of model.layers.entries()) {
    const ps = fx.params.filter((p) => p.layer === li);
    if (ps.length === 0) continue;
    const byRole = (r: string) => ps.find((p) => p.role === r) as FixtureParam;
    const values = layer.weights.map((w) => toTensor(byRole(w.originalName.split('/').pop() as string).tensor));
    layer.setWeights(values);
    tf.dispose(values);
  }
  let ext: ExtendedModel;
  try {
    ext = extend(model, { loss: LOSS[fx.loss.type], reduction: fx.loss.reduction });
  } catch (e) {
    model.dispose();
    throw e;
  }
  const x = toTensor(fx.inputs);
  const y = fx.loss.type === 'softmax_cross_entropy' ? toTensor(fx.targets, 'int32') : toTensor(fx.targets);
  const params = fx.params.map((p) => ext.layout.resolve(`${p.layer}/${p.role}`));
  return {
    fx,
    model,
    ext,
    x,
    y,
    params,
    dispose: () => {
      tf.dispose([x, y]);
      model.dispose();
    },
  };
}
