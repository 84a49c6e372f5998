/** BackPACK / ViViT timings from bench/reference/BACKPACK-TIMINGS.md (ms and ratio per row/problem). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ProblemName } from './problems';

export interface ReferenceTiming {
  ms: number;
  ratio: number;
}

export function backpackTimings(): Record<string, Partial<Record<ProblemName, ReferenceTiming>>> {
  const text = readFileSync(fileURLToPath(new URL('./reference/BACKPACK-TIMINGS.md', import.meta.url)), 'utf8');
  const out: Record<string, Partial<Record<ProblemName, ReferenceTiming>>> = {};
  const cols: ProblemName[] = ['mlp', '2c2d', '3c3d'];
  for (const line of text.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 5 || cells[1] === 'row' || cells[1]?.startsWith('-')) continue;
    const row = cells[1] as string;
    cols.forEach((p, i) => {
      const m = /([\d.]+)\s*(ms|s)\s*\(([\d.]+)×\)/.exec(cells[i + 2] ?? '');
      if (m) (out[row] ??= {})[p] = { ms: parseFloat(m[1] as string) * (m[2] === 's' ? 1000 : 1), ratio: parseFloat(m[3] as string) };
    });
  }
  return out;
}

/** Seconds as `12.3 ms` or `1.23 s`. */
export function formatSeconds(s: number): string {
  return s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(1)} ms`;
}
