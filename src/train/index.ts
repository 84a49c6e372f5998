/** Training: the model.fit / optimizer.minimize plugin, the Trainer loop, events, progress and accumulators. */
export { TrainingPlugin } from './plugin';
export type { PluginOptions, PluginStepResult } from './plugin';
export { Trainer } from './trainer';
export type { TrainerOptions, TrainerFitOptions, TrainData, TrainHistory } from './trainer';
export { StepHandle, hookWarnings, isStepOptimizer, checkRequests, mergeRequests } from './events';
export type {
  StepEvent,
  TrainingWarning,
  EpochEvent,
  TrainEndEvent,
  PluginEvents,
  TrainerEvents,
  StepContext,
  StepRequests,
  StepOptimizer,
} from './events';
export { ProgressLine, defaultProgressStream, resolveProgress } from './progress';
export type { ProgressStream, ProgressOption } from './progress';
export { ExponentialMovingAverage, RunningSum } from './accumulate';
export type { Accumulable, ExponentialMovingAverageOptions } from './accumulate';
export * from './optimizers/index';
export * from './monitor/index';
