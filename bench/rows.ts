/**
 * The timed rows: one training step (forward + loss + backward) plain and
 * with each extension / ViViT computation. Row names follow
 * bench/reference/BACKPACK-TIMINGS.md; curvpack-only rows come after.
 */
import type { BackwardOptions, ExtendedModel } from '../src/engine/extend';
import { BatchGrad, BatchL2Grad, SumGradSquared, Variance } from '../extensions/firstorder/index';

export interface Row {
  name: string;
  /** Options for `ext.backward` (built once per problem, reused by every timed step). */
  options(ext: ExtendedModel): BackwardOptions;
}

const SEED = 1234;
export { SEED };

export const ROWS: Row[] = [
  { name: 'plain', options: () => ({}) },
  { name: 'BatchGrad', options: () => ({ extensions: [new BatchGrad()] }) },
  { name: 'BatchL2Grad', options: () => ({ extensions: [new BatchL2Grad()] }) },
  { name: 'SumGradSquared', options: () => ({ extensions: [new SumGradSquared()] }) },
  { name: 'Variance', options: () => ({ extensions: [new Variance()] }) },
];
