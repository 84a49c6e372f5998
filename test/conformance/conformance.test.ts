/**
 * The conformance runner over the bundled reference fixtures
 * (test/fixtures/reference, copied from the BackPACK/ViViT float64 cases):
 * one test per (case, quantity) line, failing on any `fail` and on any
 * `skip`: every quantity of FORMAT.md §6 is implemented and must pass on
 * every case that holds it.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend';
import { ALL_QUANTITIES } from './checks/index';
import { formatLine, runConformance } from './runner';

await initBackend();
const dir = fileURLToPath(new URL('../fixtures/reference', import.meta.url));
const report = runConformance(dir);

describe('conformance against the reference fixtures', () => {
  for (const line of report.lines) {
    it(`${line.case} ${line.quantity}`, () => {
      expect(line.outcome.status, formatLine(line)).toBe('pass');
    });
  }

  it('covers every bundled case and prints the summary line', () => {
    const cases = new Set(report.lines.map((l) => l.case));
    expect(cases.size).toBe(13);
    expect(report.passed + report.failed + report.skipped).toBe(report.lines.length);
    // every quantity of FORMAT.md §6 appears (kfra only where BackPACK defines it)
    const quantities = new Set(report.lines.map((l) => l.quantity));
    for (const q of ALL_QUANTITIES) expect(quantities.has(q), q).toBe(true);
  });
});
