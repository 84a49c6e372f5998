/** Matrix-free linear operators on flat (parameter) vectors. */
export * from './linearOperator';
export * from './indices';
export * from './data';
export * from './blocks';
export * from './curvature';
export * from './kronecker';
