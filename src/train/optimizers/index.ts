/** Second-order optimizers for the Trainer (StepOptimizer), also usable in model.fit through the plugin. */
export { DampedNewton } from './dampedNewton';
export type { DampedNewtonOptions } from './dampedNewton';
export { KfacOptimizer } from './kfacOptimizer';
export type { KfacOptimizerOptions, KfacVariant, KfacDampingMode } from './kfacOptimizer';
export { useWithPlugin, learningRateAt } from './common';
export type { LearningRate, FixedRequests } from './common';
