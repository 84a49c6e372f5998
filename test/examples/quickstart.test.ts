/**
 * The README's quick start is examples/quickstart.ts verbatim (with the
 * package name in the import), and it runs.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const file = (p: string) => readFileSync(fileURLToPath(new URL(p, import.meta.url)), 'utf8');

describe('README quick start', () => {
  it('is examples/quickstart.ts verbatim', () => {
    const readme = file('../../README.md');
    const section = readme.slice(readme.indexOf('## Quick start'));
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    const example = file('../../examples/quickstart.ts').replace("from '../src/index'", "from 'curvpack'");
    expect(block).toBe(example);
    expect(example.trimEnd().split('\n').length).toBeLessThanOrEqual(15);
  });

  it('runs', async () => {
    const logs: unknown[][] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => logs.push(a);
    try {
      await import('../../examples/quickstart');
    } finally {
      console.log = orig;
    }
    const [loss, bg, dg, g] = logs[0] as [number, number[], number[], number[]];
    expect(Number.isFinite(loss)).toBe(true);
    expect(bg).toEqual([32, 784, 64]);
    expect(dg).toEqual([784, 64]);
    expect(g).toEqual([64, 64]);
  });
});
