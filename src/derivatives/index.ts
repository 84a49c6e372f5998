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

export * from './types';
export { DenseDerivatives } from './dense';
export { ACTIVATIONS, SUPPORTED_ACTIVATIONS, ElementwiseDerivatives, activationDerivatives } from './activation';
export { leakyReLUDerivatives } from './leakyReLU';

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
