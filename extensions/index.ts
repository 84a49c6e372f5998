/** Backprop extensions: what to compute per parameter during the backward pass. */
export * from './firstorder/index';
export * from './secondorder/index';
