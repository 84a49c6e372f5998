/** Influence functions: Direct, CG, LiSSA, Arnoldi, Nyström, EKFAC and inverse-harmonic-mean models. */
export { InfluenceModel } from './base';
export type { FittedInverse, MethodState, StateArray, FitContext } from './base';
export type { InfluenceBlock } from './blocks';
export { DirectInfluence, MAX_DIRECT_BLOCK } from './direct';
export type { DirectInfluenceOptions } from './direct';
export { CgInfluence } from './cg';
export type { CgInfluenceOptions } from './cg';
export { LissaInfluence } from './lissa';
export type { LissaInfluenceOptions } from './lissa';
export { ArnoldiInfluence, NystromInfluence } from './lowRank';
export type { ArnoldiInfluenceOptions, NystromInfluenceOptions, LowRankInfluenceOptions } from './lowRank';
export { EkfacInfluence } from './ekfac';
export type { EkfacInfluenceOptions } from './ekfac';
export { InverseHarmonicMeanInfluence } from './inverseHarmonicMean';
export type { InverseHarmonicMeanInfluenceOptions } from './inverseHarmonicMean';
export { loadInfluenceModel } from './load';
export type { LoadInfluenceOptions } from './load';
export { INFLUENCE_FORMAT, FACTORS_FORMAT, INFLUENCE_VERSION } from './persist';
export { perSampleGradients, mixedInputGradients } from './gradients';
export type {
  InfluenceMode,
  CurvatureMode,
  BlockSpec,
  InfluenceOptions,
  CurvatureInfluenceOptions,
  InfluenceStage,
  InfluenceProgress,
  InfluenceWarning,
  StageEnd,
  InfluenceEvents,
  TopKEntries,
  TopKResult,
  TopKOptions,
} from './types';
