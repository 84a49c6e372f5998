/**
 * curvpack — packs more into backprop for TensorFlow.js.
 */
export * from './backend';
export * from './derivatives/index';
export * from './derivatives/losses/index';
export * from './engine/index';
export * from './utils/random';
export * from '../extensions/index';
export * from '../hooks/index';
export * from './linalg/index';
export * from './train/index';
export * from './operators/index';
export * from './solvers/index';
export * from './influence/index';
