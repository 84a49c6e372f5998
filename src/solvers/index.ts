/** Solvers on linear operators: CG, block CG, preconditioners, LiSSA, Lanczos/Arnoldi, Nyström, inverse harmonic mean. */
export { asOperator, sizedOperator, rowDots, gram } from './common';
export type { OperatorLike, SolveResult, SizedOptions } from './common';
export { cg, cgAsync, inverseByCg, CgInverseOperator } from './cg';
export type { CgOptions, InverseByCgOptions } from './cg';
export { blockCg, blockCgAsync, orthonormalRows } from './blockCg';
export type { BlockCgOptions } from './blockCg';
export {
  hutchinsonDiagonal,
  hutchinsonDiagonalAsync,
  jacobiPreconditioner,
  jacobiPreconditionerAsync,
  nystromPreconditioner,
  nystromPreconditionerAsync,
} from './preconditioners';
export type { HutchinsonOptions, JacobiOptions, NystromPreconditionerOptions } from './preconditioners';
export { lissa, lissaAsync } from './lissa';
export type { LissaOptions } from './lissa';
export { eigsh, eigshAsync, arnoldi, arnoldiAsync } from './lowRank';
export type { EigshOptions, EigshResult, EigenWhich, ArnoldiOptions } from './lowRank';
export { nystromSketch, nystromSketchAsync, nystromTestMatrix } from './nystrom';
export type { NystromOptions } from './nystrom';
export { inverseHarmonicMean, InverseHarmonicMeanOperator } from './inverseHarmonicMean';
export type { InverseHarmonicMeanOptions } from './inverseHarmonicMean';
