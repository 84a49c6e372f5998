/**
 * Test set-up: the backend every test file starts on — CURVPACK_BACKEND if
 * set, else curvpack's default choice (wasm here). Files that need TF.js
 * autodiff through kernels wasm lacks (Conv2DBackpropFilter) switch to cpu
 * for their reference computations.
 */
import { beforeAll } from 'vitest';
import { initBackend } from '../src/backend';

beforeAll(async () => {
  await initBackend();
});
