/**
 * The built package (`npm run build`, run by `npm test` before vitest):
 * ESM and CJS bundles load, expose the public API, and do not bundle TF.js
 * (it is a peer dependency: curvpack must run on the user's instance).
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = (f: string) => fileURLToPath(new URL(`../dist/${f}`, import.meta.url));

describe('built package', () => {
  it('has ESM, CJS and type declarations', () => {
    for (const f of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts']) expect(existsSync(dist(f)), f).toBe(true);
    const dts = readFileSync(dist('index.d.ts'), 'utf8');
    for (const name of ['extend', 'ExtendedModel', 'BatchGrad', 'initBackend', 'BackwardResult']) expect(dts).toContain(name);
  });

  it('does not bundle TF.js', () => {
    for (const f of ['index.js', 'index.cjs']) {
      const code = readFileSync(dist(f), 'utf8');
      expect(code).toMatch(/@tensorflow\/tfjs['"]/);
      expect(code).not.toMatch(/class\s+Engine\b/);
    }
  });

  it('the CJS bundle loads and runs', async () => {
    const require = createRequire(import.meta.url);
    const cp = require(dist('index.cjs')) as typeof import('../src/index');
    expect(typeof cp.extend).toBe('function');
    expect(typeof cp.BatchGrad).toBe('function');
  });

  it('the ESM bundle loads', async () => {
    const cp = (await import(dist('index.js'))) as typeof import('../src/index');
    expect(typeof cp.extend).toBe('function');
    expect(typeof cp.initBackend).toBe('function');
  });
});
