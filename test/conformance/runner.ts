/**
 * The conformance runner: every fixture in a folder, every quantity, one
 * line per (case, quantity), and the final line `N passed, N failed, N skipped`.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CHECKS } from './checks/index';
import type { Outcome, QuantityCheck } from './checks/types';
import { loadFixture, readFixture, type LoadedFixture } from './fixture';

export interface ConformanceLine {
  case: string;
  quantity: string;
  outcome: Outcome;
}

export interface ConformanceReport {
  lines: ConformanceLine[];
  passed: number;
  failed: number;
  skipped: number;
}

export interface RunOptions {
  /** Only these quantities (default: all). */
  quantities?: readonly string[];
  /** Only fixtures whose name contains one of these. */
  cases?: readonly string[];
  /** Called with each printed line. */
  log?: (line: string) => void;
  checks?: readonly QuantityCheck[];
}

export function formatLine(l: ConformanceLine): string {
  const o = l.outcome;
  const err = o.err !== undefined ? ` maxRelErr=${o.err.toExponential(2)}` : '';
  const tol = o.tol !== undefined ? ` (tol ${o.tol.toExponential(0)})` : '';
  const note = o.note ? ` — ${o.note}` : '';
  return `${o.status.padEnd(4)} ${l.case} ${l.quantity}${err}${tol}${note}`;
}

export function fixtureFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => join(dir, f));
}

export function runConformance(dir: string, options: RunOptions = {}): ConformanceReport {
  const checks = (options.checks ?? CHECKS).filter((c) => !options.quantities || options.quantities.includes(c.name));
  const lines: ConformanceLine[] = [];
  const emit = (l: ConformanceLine) => {
    lines.push(l);
    options.log?.(formatLine(l));
  };
  for (const file of fixtureFiles(dir)) {
    const fx = readFixture(file);
    if (options.cases && !options.cases.some((c) => fx.name.includes(c))) continue;
    const present = checks.filter((c) => c.present({ fx }));
    let lf: LoadedFixture | undefined;
    let loadError: string | undefined;
    try {
      lf = loadFixture(fx);
    } catch (e) {
      loadError = (e as Error).message;
    }
    for (const c of present) {
      let outcome: Outcome;
      if (lf === undefined) {
        outcome = { status: 'fail', note: `model not supported: ${loadError}` };
      } else {
        const before = tf.memory().numTensors;
        try {
          outcome = c.run(lf);
        } catch (e) {
          outcome = { status: 'fail', note: `threw: ${(e as Error).message}` };
        }
        const leaked = tf.memory().numTensors - before;
        if (leaked !== 0 && outcome.status !== 'skip') {
          outcome = { ...outcome, status: 'fail', note: `${outcome.note ? outcome.note + '; ' : ''}leaked ${leaked} tensors` };
        }
      }
      emit({ case: fx.name, quantity: c.name, outcome });
    }
    lf?.dispose();
  }
  const count = (s: Outcome['status']) => lines.filter((l) => l.outcome.status === s).length;
  const report = { lines, passed: count('pass'), failed: count('fail'), skipped: count('skip') };
  options.log?.(`${report.passed} passed, ${report.failed} failed, ${report.skipped} skipped`);
  return report;
}
