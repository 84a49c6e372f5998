/**
 * curvpack example: second-order optimizers on real MNIST digits. The same
 * MLP (784-64-10, same initial weights, same batches) is trained for the
 * same number of steps with
 *   - Adam (lr 1e-3),
 *   - DampedNewton: ViViT's directionally damped Newton step along the top-10
 *     GGN eigenvectors of each layer (Monte-Carlo GGN, 1 sample per digit),
 *     nothing outside those directions — and the same with an SGD step in
 *     the orthogonal complement,
 *   - K-FAC (Monte-Carlo factors) and EKFAC, moving-average factors,
 *     eigendecompositions every 20 steps.
 * Prints the loss curves and the final test accuracy; writes
 * examples/out/newton.svg and examples/out/newton.jsonl.
 *
 *   npm install && npm run example:newton
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import {
  DampedNewton,
  JsonlWriter,
  KfacOptimizer,
  Trainer,
  extend,
  figureSvg,
  initBackend,
  type BackwardResult,
  type ExtendedModel,
  type StepContext,
  type StepOptimizer,
} from '../src/index';
import { loadMnist } from './data/mnist';

const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out');
const TRAIN = 4096;
const BATCH = 64;
const EPOCHS = 4; // 64 steps per epoch → 256 steps
const LOG_EVERY = 32;

const backend = await initBackend();
console.log(`curvpack newton example — backend: ${backend}`);
const { xTrain, yTrain, xTest, yTest } = loadMnist({ train: TRAIN, test: 1000, seed: 1 });

function mlp(): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [784], units: 64, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.dense({ units: 10, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
    ],
  });
}

/** Wrap a StepOptimizer to time its `applyStep` (the update itself, after the backward pass). */
function timed(opt: StepOptimizer & { allRequests?: unknown }, into: number[]): StepOptimizer {
  return {
    requests: (step) => opt.requests?.(step),
    applyStep(result: BackwardResult, ctx: StepContext) {
      const t = performance.now();
      opt.applyStep(result, ctx);
      into.push(performance.now() - t);
    },
  };
}

interface Run {
  name: string;
  /** Column header of the loss table. */
  short: string;
  make: (ext: ExtendedModel) => tf.Optimizer | (StepOptimizer & { dispose?: () => void });
}

const runs: Run[] = [
  { name: 'Adam (lr 1e-3)', short: 'Adam', make: () => tf.train.adam(1e-3) },
  { name: 'DampedNewton (top-10/layer, δ 0.1)', short: 'DampedNewton', make: (ext) => new DampedNewton(ext, { lr: 1, damping: 0.1, k: 10, mcSamples: 1 }) },
  { name: 'DampedNewton + SGD complement', short: 'DN + SGD compl.', make: (ext) => new DampedNewton(ext, { lr: 1, damping: 0.3, k: 10, mcSamples: 1, complementLr: 0.3 }) },
  { name: 'K-FAC (MC, δ 1e-2)', short: 'K-FAC', make: (ext) => new KfacOptimizer(ext, { variant: 'kfac', lr: 0.01, damping: 1e-2, inverseEvery: 20 }) },
  { name: 'EKFAC (δ 1e-3)', short: 'EKFAC', make: (ext) => new KfacOptimizer(ext, { variant: 'ekfac', lr: 0.01, damping: 1e-3, inverseEvery: 20 }) },
];

mkdirSync(OUT, { recursive: true });
const JSONL = join(OUT, 'newton.jsonl');
writeFileSync(JSONL, '');
const jsonl = new JsonlWriter((line) => appendFileSync(JSONL, `${line}\n`));
const curves: { name: string; short: string; steps: number[]; train: number[]; testSteps: number[]; test: number[] }[] = [];
const summary: string[] = [];
const t0 = Date.now();
for (const run of runs) {
  const model = mlp();
  const ext = extend(model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
  const inner = run.make(ext);
  const applyTimes: number[] = [];
  const optimizer = inner instanceof tf.Optimizer ? inner : timed(inner, applyTimes);
  const trainer = new Trainer(ext, { optimizer, seed: 1, progress: false });
  const losses: number[] = [];
  const curve = { name: run.name, short: run.short, steps: [] as number[], train: [] as number[], testSteps: [] as number[], test: [] as number[] };
  const testLoss = () => ext.lossValue(xTest, yTest);
  const stepTimes: number[] = [];
  let last = performance.now();
  trainer.on('stepEnd', (e) => {
    const now = performance.now();
    stepTimes.push(now - last);
    losses.push(e.loss);
    const window = losses.slice(-LOG_EVERY);
    const smooth = window.reduce((a, b) => a + b, 0) / window.length;
    curve.steps.push(e.step);
    curve.train.push(smooth);
    const rec: Record<string, unknown> = { optimizer: run.name, step: e.step, loss: e.loss, smoothedLoss: smooth };
    if ((e.step + 1) % LOG_EVERY === 0) {
      rec.testLoss = testLoss();
      curve.testSteps.push(e.step + 1);
      curve.test.push(rec.testLoss as number);
    }
    jsonl.write(rec);
    last = performance.now();
  });
  curve.testSteps.push(0);
  curve.test.push(testLoss());
  const start = Date.now();
  last = performance.now();
  await trainer.fit({ x: xTrain, y: yTrain }, { epochs: EPOCHS, batchSize: BATCH });
  const seconds = (Date.now() - start) / 1000;
  const acc = tf.tidy(() => ext.forward(xTest).argMax(1).equal(yTest).mean().dataSync()[0] as number);
  curves.push(curve);
  const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)] ?? Number.NaN;
  const mean = (a: number[]) => a.reduce((p, q) => p + q, 0) / Math.max(1, a.length);
  const applied = applyTimes.length > 0 ? `, update ${median(applyTimes).toFixed(1)} ms median / ${mean(applyTimes).toFixed(1)} ms mean` : '';
  summary.push(
    `${run.name.padEnd(36)} final test acc ${(acc * 100).toFixed(1).padStart(5)} %  test loss ${curve.test[curve.test.length - 1]!.toFixed(3)}  ${seconds.toFixed(1).padStart(5)} s  step ${median(stepTimes).toFixed(1)} ms median / ${mean(stepTimes).toFixed(1)} ms mean${applied}`,
  );
  console.log(`${run.name}: done in ${seconds.toFixed(1)} s`);
  if (!(inner instanceof tf.Optimizer)) inner.dispose?.();
  else inner.dispose();
  model.dispose();
}

// Loss table: running mean of the training loss over the last LOG_EVERY steps.
console.log(`\ntraining loss (mean over the last ${LOG_EVERY} steps), batch ${BATCH}, ${TRAIN} digits, ${EPOCHS} epochs:`);
console.log(`${'step'.padStart(5)}  ${curves.map((c) => c.short.padStart(16)).join(' ')}`);
const steps = curves[0]!.steps.length;
for (let s = LOG_EVERY - 1; s < steps; s += LOG_EVERY) {
  console.log(`${String(s + 1).padStart(5)}  ${curves.map((c) => (c.train[s] ?? Number.NaN).toFixed(4).padStart(16)).join(' ')}`);
}
console.log('');
for (const line of summary) console.log(line);

writeFileSync(
  join(OUT, 'newton.svg'),
  figureSvg({
    title: `MLP 784-64-10 on MNIST: ${steps} steps of ${BATCH} digits, same initialisation and batches`,
    columns: 2,
    panelWidth: 560,
    panelHeight: 380,
    panels: [
      { title: `training loss (mean of the last ${LOG_EVERY} steps)`, xLabel: 'step', yLabel: 'loss', logY: true, series: curves.map((c) => ({ name: c.name, x: c.steps, y: c.train })) },
      { title: 'test loss (1000 held-out digits)', xLabel: 'step', yLabel: 'loss', logY: true, series: curves.map((c) => ({ name: c.name, x: c.testSteps, y: c.test })) },
    ],
  }),
);
console.log(`\nwrote examples/out/newton.svg and examples/out/newton.jsonl (${jsonl.count} lines); total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
tf.dispose([xTrain, yTrain, xTest, yTest]);
