export { BatchGrad } from './batchGrad';
export { BatchL2Grad } from './batchL2Grad';
export { SumGradSquared } from './sumGradSquared';
export { Variance } from './variance';
export type { FirstOrderOptions } from './common';
