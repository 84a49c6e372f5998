/**
 * `npm run bench [-- --problem mlp,2c2d] [--only plain,KFAC] [--quick] [--backend wasm|cpu|tensorflow] [--runs 7]`
 *
 * Times one training step per row and problem: median of ≥ 7 runs after
 * warm-up, peak tensor bytes from tf.profile (a separate, untimed run), the
 * ratio to the plain step, and BackPACK's figures beside them. Writes
 * bench/results/<date>.json and bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendName } from '../src/backend';
import { extend } from '../src/engine/extend';
import { buildProblem, PROBLEMS, type ProblemName } from './problems';
import { backpackTimings, formatSeconds } from './reference';
import { ROWS, SEED } from './rows';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const quick = process.argv.includes('--quick');
const runs = Number(arg('--runs') ?? (quick ? 3 : 7));
const warmup = 3;
const problems = (arg('--problem')?.split(',') ?? PROBLEMS) as ProblemName[];
const only = arg('--only')?.split(',');

interface Entry {
  median_s?: number;
  peak_bytes?: number;
  runs?: number;
  error?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function fmtTime(s: number | undefined): string {
  return s === undefined ? 'n/a' : formatSeconds(s);
}

async function main(): Promise<void> {
  const backend = await initBackend({ backend: arg('--backend') as BackendName | undefined });
  const reference = backpackTimings();
  const results: Record<string, Record<string, Entry>> = {};
  console.log(`curvpack bench — backend ${backend}, ${runs} runs after ${warmup} warm-up, problems ${problems.join(', ')}`);
  for (const name of problems) {
    const problem = buildProblem(name);
    const ext = extend(problem.model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
    const table: Record<string, Entry> = {};
    results[name] = table;
    console.log(`\n${name} (N = ${problem.batchSize}, D = ${ext.numParams})`);
    console.log(`${'row'.padEnd(28)}${'curvpack'.padStart(11)}${'ratio'.padStart(9)}${'peak MB'.padStart(10)}   ${'BackPACK'.padStart(10)}${'ratio'.padStart(9)}   vs BackPACK`);
    for (const row of ROWS) {
      if (only && !only.includes(row.name) && row.name !== "plain") continue;
      if (row.problems && !row.problems.includes(name)) continue;
      const entry: Entry = {};
      try {
        const options = { ...row.options(ext), seed: SEED };
        const step = () => {
          const r = ext.backward(problem.x, problem.y, options);
          (r.grads[ext.params[ext.params.length - 1]!.name] as tf.Tensor).dataSync();
          r.dispose();
        };
        for (let i = 0; i < warmup; i++) step();
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          step();
          times.push((performance.now() - t0) / 1000);
        }
        const prof = await tf.profile(() => step());
        entry.median_s = median(times);
        entry.peak_bytes = prof.peakBytes;
        entry.runs = runs;
      } catch (e) {
        entry.error = (e as Error).message.split('\n')[0];
      }
      table[row.name] = entry;
      const plain = table.plain?.median_s;
      const ratio = entry.median_s !== undefined && plain ? `${(entry.median_s / plain).toFixed(1)}×` : '';
      const ref = reference[row.name]?.[name];
      const vs = entry.median_s !== undefined && ref ? `${((entry.median_s * 1000) / ref.ms).toFixed(2)}×` : '';
      const peak = entry.peak_bytes !== undefined ? (entry.peak_bytes / 2 ** 20).toFixed(1) : '';
      console.log(
        `${row.name.padEnd(28)}${fmtTime(entry.median_s).padStart(11)}${ratio.padStart(9)}${peak.padStart(10)}   ${(ref ? fmtTime(ref.ms / 1000) : '').padStart(10)}${(ref ? `${ref.ratio}×` : '').padStart(9)}   ${vs}${entry.error ? `  error: ${entry.error}` : ''}`,
      );
    }
    problem.dispose();
  }
  const out = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memory_bytes: totalmem(), node: process.version, tfjs: tf.version.tfjs },
    backend,
    runs,
    problems: results,
  };
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const stamp = out.date.slice(0, 10);
  writeFileSync(`${dir}${stamp}.json`, JSON.stringify(out, null, 2) + '\n');
  writeFileSync(`${dir}latest.json`, JSON.stringify(out, null, 2) + '\n');
  console.log(`\nwrote bench/results/${stamp}.json and bench/results/latest.json`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
