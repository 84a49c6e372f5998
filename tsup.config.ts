import { defineConfig } from 'tsup';

// TF.js is a peer dependency: never bundle it, so that curvpack runs on the
// user's TF.js instance (tfjs, tfjs-node or tfjs-node-gpu).
export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  external: [/^@tensorflow\//, 'eventemitter3'],
});
