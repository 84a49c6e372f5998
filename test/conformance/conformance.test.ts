/**
 * The conformance runner over the bundled reference fixtures
 * (test/fixtures/reference, copied from the BackPACK/ViViT float64 cases):
 * one test per (case, quantity) line, failing on any `fail`. Quantities
 * listed in REQUIRED must `pass` on every case that has them (never `skip`).
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend';
import { formatLine, runConformance } from './runner';

const REQUIRED = ['loss', 'grad', 'batch_grad', 'batch_l2_grad', 'sum_grad_squared', 'variance'];

await initBackend();
const dir = fileURLToPath(new URL('../fixtures/reference', import.meta.url));
const report = runConformance(dir);

describe('conformance against the reference fixtures', () => {
  for (const line of report.lines) {
    const required = REQUIRED.includes(line.quantity);
    it(`${line.case} ${line.quantity}`, () => {
      expect(line.outcome.status, formatLine(line)).not.toBe('fail');
      if (required) expect(line.outcome.status, formatLine(line)).toBe('pass');
    });
  }

  it('covers every bundled case and prints the summary line', () => {
    const cases = new Set(report.lines.map((l) => l.case));
    expect(cases.size).toBe(13);
    expect(report.passed + report.failed + report.skipped).toBe(report.lines.length);
  });
});
