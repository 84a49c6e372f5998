/**
 * Markdown table of bench/results/latest.json next to BackPACK's figures.
 *   npx tsx bench/table.ts            print it
 *   npx tsx bench/table.ts --readme   also replace the table between the bench markers in README.md
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PROBLEMS, type ProblemName } from './problems';
import { backpackTimings, formatSeconds } from './reference';
import { ROWS } from './rows';

interface Entry {
  median_s?: number;
  peak_bytes?: number;
  error?: string;
}
interface Results {
  date: string;
  backend: string;
  runs: number;
  machine: { cpus: number; cpu?: string; node: string; tfjs: string };
  problems: Partial<Record<ProblemName, Record<string, Entry>>>;
}

const path = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const res = JSON.parse(readFileSync(path('./results/latest.json'), 'utf8')) as Results;
const ref = backpackTimings();

const problems = PROBLEMS.filter((p) => res.problems[p] !== undefined);
const lines: string[] = [];
const notes: string[] = [];
lines.push(
  `Latest full run: ${res.date.slice(0, 10)}, backend \`${res.backend}\`, ${res.machine.cpus} cores (${res.machine.cpu ?? 'cpu'}), Node ${res.machine.node}, TF.js ${res.machine.tfjs}; median of ${res.runs} runs. ` +
    'Each cell: curvpack time (ratio to curvpack\'s plain step) · BackPACK/ViViT time (its ratio) · curvpack ÷ BackPACK.',
);
lines.push('');
lines.push(`| row | ${problems.join(' | ')} |`);
lines.push(`|---|${problems.map(() => '---').join('|')}|`);
for (const row of ROWS) {
  const cells = problems.map((p) => {
    const t = res.problems[p] as Record<string, Entry>;
    const e = t[row.name];
    if (e === undefined) return '–';
    if (e.error !== undefined) {
      notes.push(`${p} ${row.name}: ${e.error}`);
      return `error [${notes.length}]`;
    }
    const plain = t.plain?.median_s as number;
    const r = ref[row.name]?.[p];
    const mine = `${formatSeconds(e.median_s as number)} (${((e.median_s as number) / plain).toFixed(1)}×)`;
    return r ? `${mine} · ${formatSeconds(r.ms / 1000)} (${r.ratio}×) · **${((e.median_s as number) * 1000 / r.ms).toFixed(2)}**` : mine;
  });
  lines.push(`| ${row.name} | ${cells.join(' | ')} |`);
}
notes.forEach((n, i) => lines.push(i === 0 ? '' : '', `[${i + 1}] ${n}`));

// The targets, judged on this run.
const ms = (p: ProblemName, row: string) => res.problems[p]?.[row]?.median_s;
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
const target: string[] = ['', 'Targets (issue 6), judged on this run:', ''];
const plainLimit: Record<ProblemName, number> = { mlp: 4, '2c2d': 6, '3c3d': 6 };
for (const p of problems) {
  const r = (ms(p, 'plain') as number) * 1000 / (ref.plain?.[p]?.ms as number);
  target.push(`- plain step on \`${p}\` within ${plainLimit[p]}× of PyTorch: ${r.toFixed(2)}× — ${verdict(r <= plainLimit[p])}`);
}
if (res.problems.mlp) {
  const ext = ROWS.filter((r) => r.contract && r.name !== 'plain' && !r.name.startsWith('Eigvalsh') && !r.name.startsWith('DampedNewton'));
  const ratios = ext.map((r) => ({ name: r.name, x: (ms('mlp', r.name) as number) * 1000 / (ref[r.name]?.mlp?.ms as number) }));
  const worst = ratios.reduce((a, b) => (b.x > a.x ? b : a));
  target.push(`- every extension within 3× of BackPACK on \`mlp\`: worst ${worst.name} ${worst.x.toFixed(2)}× — ${verdict(ratios.every((r) => r.x <= 3))}`);
}
for (const row of ['EigvalshFull', 'EigvalshPerLayer', 'DampedNewtonPerLayerTop10']) {
  const parts = problems.map((p) => {
    const x = (ms(p, row) as number) * 1000 / (ref[row]?.[p]?.ms as number);
    return `${p} ${x.toFixed(2)}× ${x < 1 ? '(faster)' : '(slower)'}`;
  });
  const all = problems.every((p) => (ms(p, row) as number) * 1000 < (ref[row]?.[p]?.ms as number));
  target.push(`- ${row} faster than ViViT: ${parts.join(', ')} — ${all ? 'met' : '**missed** where slower'}`);
}
lines.push(...target);
const table = lines.join('\n');
console.log(table);
if (process.argv.includes('--readme')) {
  const readme = readFileSync(path('../README.md'), 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  const a = readme.indexOf(start);
  const b = readme.indexOf(end);
  if (a < 0 || b < a) throw new Error('README.md has no bench markers.');
  writeFileSync(path('../README.md'), `${readme.slice(0, a + start.length)}\n${table}\n${readme.slice(b)}`);
  console.log('\nREADME.md updated.');
}
