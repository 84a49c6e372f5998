/**
 * `npm run conformance -- <dir> [--quantity q1,q2] [--case name] [--backend wasm|cpu|tensorflow]`
 * Exit code 1 if anything failed.
 */
import { initBackend, type BackendName } from '../../src/backend';
import { runConformance } from './runner';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !(all[i - 1] ?? '').startsWith('--'));
  const dir = positional[0] ?? 'test/fixtures/reference';
  const backend = await initBackend({ backend: arg('--backend') as BackendName | undefined });
  console.log(`conformance: ${dir} on backend ${backend}`);
  const report = runConformance(dir, {
    quantities: arg('--quantity')?.split(','),
    cases: arg('--case')?.split(','),
    log: (l) => console.log(l),
  });
  process.exitCode = report.failed > 0 ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
