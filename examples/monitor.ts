/**
 * curvpack example: monitor the curvature while training on real MNIST
 * digits. An MLP (784-64-10) and a small CNN (conv 8@3×3 → relu → maxpool
 * → flatten → dense 10) are trained with Adam; every few steps the same
 * backward pass also computes, through ViViT hooks, the top-5 GGN
 * eigenvalues of every layer and of the whole net, the gradient
 * signal-to-noise ratio along the top eigenvectors, and GGN-diagonal
 * summaries (Monte-Carlo GGN, 1 sample per digit).
 *
 * Writes examples/out/monitor.jsonl (one JSON object per recorded step) and
 * examples/out/monitor-mlp.svg, examples/out/monitor-cnn.svg.
 *
 *   npm install && npm run example:monitor
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { CurvatureMonitor, Trainer, extend, figureSvg, initBackend, monitorFigure, type MonitorRecord } from '../src/index';
import { loadMnist } from './data/mnist';

const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out');
const TRAIN = 4096;
const BATCH = 64;
const EPOCHS = 5; // 64 full batches per epoch → 320 steps per model
const EVERY = 5; // record every 5th step
const TOP_K = 5;

const backend = await initBackend();
console.log(`curvpack monitor example — backend: ${backend}`);

const models: { name: 'mlp' | 'cnn'; build: () => tf.Sequential; shape: 'flat' | 'image' }[] = [
  {
    name: 'mlp',
    shape: 'flat',
    build: () =>
      tf.sequential({
        layers: [
          tf.layers.dense({ name: 'mlp_hidden', inputShape: [784], units: 64, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
          tf.layers.dense({ name: 'mlp_output', units: 10, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
        ],
      }),
  },
  {
    name: 'cnn',
    shape: 'image',
    build: () =>
      tf.sequential({
        layers: [
          tf.layers.conv2d({ name: 'cnn_conv', inputShape: [28, 28, 1], filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
          tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
          tf.layers.flatten(),
          tf.layers.dense({ name: 'cnn_output', units: 10, kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }),
        ],
      }),
  },
];

// One JSONL file for both models: every record carries { model }.
// (curvpack's fileSink / writeTextFile do the same; plain node:fs keeps the example running on any Node 20.)
mkdirSync(OUT, { recursive: true });
const JSONL = join(OUT, 'monitor.jsonl');
writeFileSync(JSONL, '');
const sink = (line: string) => appendFileSync(JSONL, `${line}\n`);
let lines = 0;
const t0 = Date.now();
for (const spec of models) {
  const { xTrain, yTrain, xTest, yTest } = loadMnist({ train: TRAIN, test: 1000, seed: 1, shape: spec.shape });
  const model = spec.build();
  const ext = extend(model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
  const monitor = new CurvatureMonitor(ext, {
    blocks: ['full', 'perLayer'],
    topK: TOP_K,
    mcSamples: 1,
    jsonl: (line) => {
      sink(line);
      lines += 1;
    },
    context: { model: spec.name },
  });
  const optimizer = tf.train.adam(1e-3);
  const trainer = new Trainer(ext, { optimizer, hooks: monitor.hooks, extensions: monitor.extensions, every: EVERY, seed: 1 });
  monitor.attach(trainer);
  // Step times: monitored steps vs plain ones (the difference is the cost of the hooks).
  const times = { monitored: [] as number[], plain: [] as number[] };
  let last = performance.now();
  trainer.on('stepEnd', (e) => {
    const now = performance.now();
    if (e.step > 0) (e.computed ? times.monitored : times.plain).push(now - last);
    last = now;
  });
  const start = Date.now();
  await trainer.fit({ x: xTrain, y: yTrain }, { epochs: EPOCHS, batchSize: BATCH });
  const seconds = (Date.now() - start) / 1000;
  const acc = tf.tidy(() => ext.forward(xTest).argMax(1).equal(yTest).mean().dataSync()[0] as number);
  writeFileSync(
    join(OUT, `monitor-${spec.name}.svg`),
    figureSvg(monitorFigure(monitor.records, { title: `${spec.name.toUpperCase()} on MNIST (Adam 1e-3, batch ${BATCH}): GGN curvature every ${EVERY} steps (MC, 1 sample)` })),
  );
  const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)] ?? Number.NaN;
  const first = monitor.records[0] as MonitorRecord;
  const lastRec = monitor.records[monitor.records.length - 1] as MonitorRecord;
  console.log(
    `\n${spec.name.toUpperCase()}: ${ext.numParams} parameters, ${trainer.steps} steps in ${seconds.toFixed(1)} s, test accuracy ${(acc * 100).toFixed(1)} %`,
  );
  console.log(
    `  step time (median): plain ${median(times.plain).toFixed(1)} ms, monitored ${median(times.monitored).toFixed(1)} ms → hooks ≈ ${(median(times.monitored) - median(times.plain)).toFixed(1)} ms per monitored step`,
  );
  console.log('  block                 λ_max first → last        trace first → last        SNR(e₁) first → last');
  for (const b of lastRec.blocks) {
    const a = first.blocks.find((q) => q.name === b.name);
    const f = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '—' : v.toExponential(2)).padStart(9);
    console.log(
      `  ${b.name.padEnd(20)}  ${f(a?.topEvals[0])} → ${f(b.topEvals[0])}    ${f(a?.trace)} → ${f(b.trace)}    ${f(a?.snr?.[0])} → ${f(b.snr?.[0])}`,
    );
  }
  console.log(`  wrote examples/out/monitor-${spec.name}.svg (${monitor.records.length} records)`);
  optimizer.dispose();
  model.dispose();
  tf.dispose([xTrain, yTrain, xTest, yTest]);
}
console.log(`\nwrote examples/out/monitor.jsonl (${lines} lines); total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
