/**
 * From TF.js layers to module derivatives. One entry per supported layer
 * class; a layer may become several modules (Dense with a fused activation →
 * Dense + Activation).
 */
import type * as tf from '@tensorflow/tfjs';
import type { ModuleDerivatives } from './types';
import { DenseDerivatives } from './dense';
import { activationDerivatives } from './activation';
import { leakyReLUDerivatives } from './leakyReLU';
import { Conv2DDerivatives } from './conv2d';
import { MaxPooling2DDerivatives } from './maxPooling2d';
import { AveragePooling2DDerivatives } from './averagePooling2d';
import { GlobalAveragePooling2DDerivatives } from './globalAveragePooling2d';
import { FlattenDerivatives } from './flatten';
import { ReshapeDerivatives } from './reshape';
import { ZeroPadding2DDerivatives } from './zeroPadding2d';
import { DropoutDerivatives } from './dropout';
import { asPair, type Pooling2DOptions, type WindowPadding } from './im2col';

export * from './types';
export { DenseDerivatives } from './dense';
export { ACTIVATIONS, SUPPORTED_ACTIVATIONS, ElementwiseDerivatives, activationDerivatives } from './activation';
export { leakyReLUDerivatives } from './leakyReLU';
export { Conv2DDerivatives, type Conv2DOptions } from './conv2d';
export { MaxPooling2DDerivatives } from './maxPooling2d';
export { AveragePooling2DDerivatives } from './averagePooling2d';
export { GlobalAveragePooling2DDerivatives } from './globalAveragePooling2d';
export { FlattenDerivatives } from './flatten';
export { ReshapeDerivatives } from './reshape';
export { ZeroPadding2DDerivatives } from './zeroPadding2d';
export { DropoutDerivatives } from './dropout';
export type { Pooling2DOptions } from './im2col';

type Layer = tf.layers.Layer;
type Config = Record<string, unknown>;

/** The layer's variable with the given role (`kernel`, `bias`), trainable or not. */
export function layerVariable(layer: Layer, role: string): tf.Variable | undefined {
  const w = layer.weights.find((v) => v.originalName.split('/').pop() === role || v.name.split('/').pop() === role);
  return w === undefined ? undefined : (w.read() as tf.Variable);
}

/** A fused activation as a module (none for 'linear'). */
export function fusedActivation(layer: Layer, config: Config): ModuleDerivatives[] {
  const act = (config.activation as string | undefined) ?? 'linear';
  return act === 'linear' ? [] : [activationDerivatives(act, `${layer.getClassName()} layer '${layer.name}'`)];
}

/** `<Class> layer '<name>'` for messages. */
function layerWhere(layer: Layer): string {
  return `${layer.getClassName()} layer '${layer.name}'`;
}

/** curvpack handles NHWC only. */
function requireChannelsLast(layer: Layer, config: Config): void {
  const df = config.dataFormat;
  if (df !== undefined && df !== null && df !== 'channelsLast') {
    throw new Error(
      `${layerWhere(layer)}: option dataFormat '${String(df)}' is not supported; curvpack supports dataFormat 'channelsLast' (NHWC) only.`,
    );
  }
}

function windowPadding(layer: Layer, config: Config): WindowPadding {
  const p = (config.padding as string | undefined) ?? 'valid';
  if (p !== 'valid' && p !== 'same') {
    throw new Error(`${layerWhere(layer)}: option padding '${p}' is not supported; use 'valid' or 'same'.`);
  }
  return p;
}

function poolingOptions(layer: Layer, config: Config): Pooling2DOptions {
  requireChannelsLast(layer, config);
  const where = layerWhere(layer);
  const poolSize = asPair(config.poolSize ?? 2, 'poolSize', where);
  const strides = config.strides === undefined || config.strides === null ? poolSize : asPair(config.strides, 'strides', where);
  return { poolSize, strides, padding: windowPadding(layer, config) };
}

export type ModuleFactory = (layer: Layer, config: Config) => ModuleDerivatives[];

export const LAYER_DERIVATIVES: Readonly<Record<string, ModuleFactory>> = {
  InputLayer: () => [],
  Dense: (layer, config) => {
    const kernel = layerVariable(layer, 'kernel') as tf.Variable;
    return [new DenseDerivatives(kernel, layerVariable(layer, 'bias')), ...fusedActivation(layer, config)];
  },
  Activation: (layer, config) => [
    activationDerivatives(config.activation as string, `Activation layer '${layer.name}'`),
  ],
  LeakyReLU: (_layer, config) => [leakyReLUDerivatives((config.alpha as number | undefined) ?? 0.3)],
  Conv2D: (layer, config) => {
    requireChannelsLast(layer, config);
    const where = layerWhere(layer);
    const kernel = layerVariable(layer, 'kernel') as tf.Variable;
    const conv = new Conv2DDerivatives(
      kernel,
      layerVariable(layer, 'bias'),
      {
        strides: asPair(config.strides ?? 1, 'strides', where),
        padding: windowPadding(layer, config),
        dilationRate: asPair(config.dilationRate ?? 1, 'dilationRate', where),
      },
      where,
    );
    return [conv, ...fusedActivation(layer, config)];
  },
  MaxPooling2D: (layer, config) => [new MaxPooling2DDerivatives(poolingOptions(layer, config), layerWhere(layer))],
  AveragePooling2D: (layer, config) => [new AveragePooling2DDerivatives(poolingOptions(layer, config), layerWhere(layer))],
  GlobalAveragePooling2D: (layer, config) => {
    requireChannelsLast(layer, config);
    if (config.keepDims === true) {
      throw new Error(`${layerWhere(layer)}: option keepDims true is not supported; curvpack supports keepDims false only.`);
    }
    return [new GlobalAveragePooling2DDerivatives(layerWhere(layer))];
  },
  Flatten: (layer, config) => {
    requireChannelsLast(layer, config);
    return [new FlattenDerivatives()];
  },
  Reshape: (layer, config) => [
    new ReshapeDerivatives(config.targetShape as (number | null)[], layerWhere(layer)),
  ],
  ZeroPadding2D: (layer, config) => {
    requireChannelsLast(layer, config);
    return [new ZeroPadding2DDerivatives(config.padding ?? 1, layerWhere(layer))];
  },
  Dropout: (layer, config) => {
    if (config.noiseShape !== undefined && config.noiseShape !== null) {
      throw new Error(
        `${layerWhere(layer)}: option noiseShape is not supported; curvpack draws an independent mask entry per activation (remove noiseShape).`,
      );
    }
    return [new DropoutDerivatives(config.rate as number, layerWhere(layer))];
  },
};

export const SUPPORTED_LAYERS: readonly string[] = Object.keys(LAYER_DERIVATIVES).filter((k) => k !== 'InputLayer');

/** The modules of a layer; throws naming the class and the supported list. */
export function modulesForLayer(layer: Layer): ModuleDerivatives[] {
  const cls = layer.getClassName();
  const factory = LAYER_DERIVATIVES[cls];
  if (factory === undefined) {
    throw new Error(
      `layer '${layer.name}' of class ${cls} is not supported by curvpack; supported layers: ${SUPPORTED_LAYERS.join(', ')}.`,
    );
  }
  return factory(layer, layer.getConfig() as Config);
}
