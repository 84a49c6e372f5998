/** Group hooks (ViViT computations). */
export { GramMatrix } from './gramMatrix';
export type { GramMatrixOptions, GramMatrixResult } from './gramMatrix';
export { Eigvalsh } from './eigvalsh';
export type { EigvalshOptions, EigvalshResult } from './eigvalsh';
export { Eigh } from './eigh';
export type { EighOptions, EighResult } from './eigh';
export { DirectionalDerivatives } from './directionalDerivatives';
export type { DirectionalOptions, DirectionalDerivativesResult } from './directionalDerivatives';
export { DirectionalDampedNewton, newtonStepMap } from './directionalDampedNewton';
export type { DirectionalDampedNewtonOptions, DirectionalDampedNewtonResult } from './directionalDampedNewton';
export {
  topK,
  aboveThreshold,
  aboveRelativeThreshold,
  allPositive,
  constantDamping,
  groupsFull,
  groupsPerLayer,
  groupsPerParam,
  DEFAULT_RELATIVE_THRESHOLD,
} from './groups';
export type { VivitGroup, Criterion, Damping, HostMatrix } from './groups';
export { GramSpaceHook } from './gramSpace';
export type { VivitWarning, VivitBaseOptions, VivitDirectionOptions, VivitSolverOptions, GramContribution, EigenvalueMethod } from './gramSpace';
export { kernelCrossGram, explicitGram, biasCrossGram, weightedParamProduct, chooseKernelGramRoute } from './gramProducts';
export { SqrtGgnReducedQuantity, reducedSoftmaxFactor, hasReducibleFactor } from './reducedFactor';
export type { KernelGramRoute } from './gramProducts';
