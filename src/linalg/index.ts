/**
 * Dense linear algebra that TF.js lacks, in float64 on the CPU (plain
 * TypeScript over Float64Array): symmetric eigendecomposition, tridiagonal
 * eigensolver, Cholesky and SPD solves, Lanczos, QR and small helpers —
 * plus a two-stage fast path for large eigenproblems whose O(n³) part runs
 * on TF.js in float32 (large.ts; selected eigenvectors by tridiagonal inverse
 * iteration, inverseIteration.ts). Matrices are row-major with explicit
 * sizes; inputs are never mutated.
 */
export type { SymmetricEigen } from './eigh';
export { eigh, eigvalsh, tridiagonalEigen, tridiagonalEigenComponents } from './eigh';
export { cholesky, choleskySolve, solveSPD } from './cholesky';
export type { LanczosOptions, LanczosResult } from './lanczos';
export { lanczos } from './lanczos';
export type { QR } from './dense';
export { identity, transpose, matmul, symmetrize, frobeniusNorm, qr, orthonormalize } from './dense';
export type { EigvalshLargeOptions, EighLargeOptions, EighLargeResult } from './large';
export { eigvalshLarge, eigvalshLargeSync, eighLarge, eighLargeSync, LARGE_EIGEN_THRESHOLD } from './large';
export { tridiagonalInverseIteration } from './inverseIteration';
