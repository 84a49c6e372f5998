/**
 * The timed rows: one training step (forward + loss + backward) plain and
 * with each extension / ViViT computation. Row names follow
 * bench/reference/BACKPACK-TIMINGS.md; curvpack-only rows come after.
 */
import type { BackwardOptions, ExtendedModel } from '../src/engine/extend';
import { BatchGrad, BatchL2Grad, SumGradSquared, Variance } from '../extensions/firstorder/index';
import {
  BatchDiagGGNExact,
  BatchDiagGGNMC,
  BatchDiagHessian,
  DiagGGNExact,
  DiagGGNMC,
  DiagHessian,
  EKFAC,
  KFAC,
  KFLR,
  KFRA,
  SqrtGGNExact,
  SqrtGGNMC,
} from '../extensions/secondorder/index';
import {
  DirectionalDampedNewton,
  Eigvalsh,
  GramMatrix,
  constantDamping,
  groupsFull,
  groupsPerLayer,
  topK,
} from '../hooks/index';
import type { ProblemName } from './problems';

export interface Row {
  name: string;
  /** Options for `ext.backward` (built once per problem, reused by every timed step). */
  options(ext: ExtendedModel): BackwardOptions;
  /** Problems the row runs on (default: all). */
  problems?: readonly ProblemName[];
  /** Part of the rows of BACKPACK-TIMINGS.md (the output contract). */
  contract?: boolean;
}

export const SEED = 1234;

const mc = { mcSamples: 1, seed: SEED };

export const ROWS: Row[] = [
  { name: 'plain', contract: true, options: () => ({}) },
  { name: 'BatchGrad', contract: true, options: () => ({ extensions: [new BatchGrad()] }) },
  { name: 'BatchL2Grad', contract: true, options: () => ({ extensions: [new BatchL2Grad()] }) },
  { name: 'SumGradSquared', contract: true, options: () => ({ extensions: [new SumGradSquared()] }) },
  { name: 'Variance', contract: true, options: () => ({ extensions: [new Variance()] }) },
  { name: 'DiagGGNExact', contract: true, options: () => ({ extensions: [new DiagGGNExact()] }) },
  { name: 'DiagGGNMC', contract: true, options: () => ({ extensions: [new DiagGGNMC(mc)] }) },
  { name: 'KFAC', contract: true, options: () => ({ extensions: [new KFAC(mc)] }) },
  { name: 'KFLR', contract: true, options: () => ({ extensions: [new KFLR()] }) },
  { name: 'SqrtGGNExact', contract: true, options: () => ({ extensions: [new SqrtGGNExact()] }) },
  { name: 'SqrtGGNMC', contract: true, options: () => ({ extensions: [new SqrtGGNMC(mc)] }) },
  { name: 'DiagHessian', contract: true, options: () => ({ extensions: [new DiagHessian()] }) },
  { name: 'EigvalshFull', contract: true, options: (ext) => ({ hooks: [new Eigvalsh({ groups: groupsFull(ext) })] }) },
  { name: 'EigvalshPerLayer', contract: true, options: (ext) => ({ hooks: [new Eigvalsh({ groups: groupsPerLayer(ext) })] }) },
  {
    name: 'DampedNewtonPerLayerTop10',
    contract: true,
    options: (ext) => ({
      hooks: [new DirectionalDampedNewton({ groups: groupsPerLayer(ext, { criterion: topK(10), damping: constantDamping(1) }) })],
    }),
  },
  // curvpack-only rows
  { name: 'BatchDiagGGNExact', options: () => ({ extensions: [new BatchDiagGGNExact()] }) },
  { name: 'BatchDiagGGNMC', options: () => ({ extensions: [new BatchDiagGGNMC(mc)] }) },
  { name: 'BatchDiagHessian', options: () => ({ extensions: [new BatchDiagHessian()] }) },
  // KFRA keeps a d×d matrix per activation width d: 630M entries at 2c2d's first conv output.
  { name: 'KFRA', problems: ['mlp'], options: () => ({ extensions: [new KFRA()] }) },
  // EKFAC eigendecomposes every factor each step (3136×3136 on 2c2d's dense layer).
  { name: 'EKFAC', problems: ['mlp'], options: () => ({ extensions: [new EKFAC()] }) },
  { name: 'GramMatrixFull', options: (ext) => ({ hooks: [new GramMatrix({ groups: groupsFull(ext) })] }) },
  { name: 'EigvalshFullMC1', options: (ext) => ({ hooks: [new Eigvalsh({ groups: groupsFull(ext), ...mc })] }) },
  {
    name: 'EigvalshFullSub16',
    options: (ext) => ({ hooks: [new Eigvalsh({ groups: groupsFull(ext), subsampling: Array.from({ length: 16 }, (_, i) => i) })] }),
  },
];
