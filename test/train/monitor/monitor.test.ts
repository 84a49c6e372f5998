/**
 * CurvatureMonitor: the recorded JSON lines against an independent
 * brute-force reference (explicit GGN from per-sample Jacobians by TF.js
 * autodiff, Jacobi eigenpairs in float64): per block the top-k eigenvalues,
 * the trace, the rank, ⟨e_k, g⟩ and the SNR mean²/var of γ_nk = N⟨e_k, g_n⟩;
 * the GGN-diagonal summaries; JSONL file = sink = in-memory records; the
 * Trainer (every k) and the model.fit plugin as sources; the figure helper;
 * clear errors; no tensors left behind.
 *
 * Weights stay fixed (learning rate 0), so every record must equal the
 * brute-force values at the initial weights. Tolerance: float32 Gram
 * eigenvalues vs float64: 1e-4 relative to the block's largest eigenvalue;
 * projections / SNR involve the eigenvectors (gaps ≥ 1e-2 asserted): 1e-3.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../../src/engine/extend';
import { Trainer } from '../../../src/train/trainer';
import { TrainingPlugin } from '../../../src/train/plugin';
import { CurvatureMonitor, type MonitorRecord } from '../../../src/train/monitor/monitor';
import { parseJsonl, readJsonl } from '../../../src/train/monitor/jsonl';
import { monitorFigure } from '../../../src/train/monitor/figures';
import { figureSvg } from '../../../src/train/monitor/svgPlot';
import { bruteForce, dot, groupIndices, jacobiEigen, makeTargets, restrictMat, restrictVec, smallMlp, type BruteForce } from '../../helpers/ggnBruteForce';
import { parseXml, allElements } from './xml';
import { expectNoLeaksPerTest } from '../../helpers/leaks';

expectNoLeaksPerTest();

const K = 3;

function setup(seed: number, N = 10, oneHot = false) {
  const model = smallMlp(4, 5, 3, 'tanh', seed);
  const x = tf.randomNormal([N, 4], 0, 1, 'float32', seed + 100);
  const ids = makeTargets('softmaxCrossEntropy', N, 3, seed);
  const y = oneHot ? tf.tidy(() => tf.oneHot(ids as tf.Tensor1D, 3).toFloat()) : ids;
  if (oneHot) ids.dispose();
  return { model, x, y, ext: extend(model, { loss: 'softmaxCrossEntropy' }) };
}

/** Brute-force expectations of one block. */
function expected(bf: BruteForce, names: readonly string[]) {
  const idx = groupIndices(bf, names);
  const { values, vectors } = jacobiEigen(restrictMat(bf.ggn, bf.D, idx), idx.length);
  const m = values.length;
  const lmax = values[m - 1] as number;
  const top = Array.from({ length: K }, (_, j) => m - 1 - j); // largest first
  const gap = Math.min(...Array.from({ length: K }, (_, j) => ((values[m - 1 - j] as number) - (values[m - 2 - j] as number)) / lmax));
  const proj: number[] = [];
  const snr: number[] = [];
  for (const i of top) {
    const e = vectors[i] as Float64Array;
    const gam = bf.grads.map((gn) => bf.N * dot(e, restrictVec(gn, idx)));
    const mean = gam.reduce((a, b) => a + b, 0) / gam.length;
    const v = gam.reduce((a, b) => a + (b - mean) ** 2, 0) / (gam.length - 1);
    proj.push(mean);
    snr.push((mean * mean) / v);
  }
  let trace = 0;
  for (const i of idx) trace += bf.ggn[i * bf.D + i] as number;
  const rank = values.filter((v) => Math.abs(v) > 1e-6 * lmax).length;
  return { top: top.map((i) => values[i] as number), trace, rank, proj, snr, gap, lmax };
}

function checkRecord(rec: MonitorRecord, bf: BruteForce, model: tf.LayersModel) {
  const layers = [0, 1].map((l) => model.layers[l]!.trainableWeights.map((w) => (w.read() as tf.Variable).name));
  const blocks: [string, string[]][] = [
    ['full', bf.names],
    [model.layers[0]!.name, layers[0] as string[]],
    [model.layers[1]!.name, layers[1] as string[]],
  ];
  expect(rec.blocks.map((b) => b.name)).toEqual(blocks.map((b) => b[0]));
  for (const [name, names] of blocks) {
    const b = rec.blocks.find((q) => q.name === name)!;
    const want = expected(bf, names);
    expect(want.gap).toBeGreaterThan(1e-2);
    expect(b.params).toEqual(names);
    expect(b.topEvals).toHaveLength(K);
    b.topEvals.forEach((v, i) => expect(Math.abs(v - (want.top[i] as number)) / want.lmax).toBeLessThan(1e-4));
    expect(Math.abs(b.trace - want.trace) / want.trace).toBeLessThan(1e-4);
    expect(b.rank).toBe(want.rank);
    // ⟨e, g⟩ flips with the eigenvector's sign: compare magnitudes; SNR is sign-free.
    b.gradProjection!.forEach((v, i) => expect(Math.abs(Math.abs(v) - Math.abs(want.proj[i] as number))).toBeLessThan(1e-3 * Math.max(...want.proj.map(Math.abs))));
    b.snr!.forEach((v, i) => expect(Math.abs(v - (want.snr[i] as number)) / (want.snr[i] as number)).toBeLessThan(1e-3));
  }
  // Diagonal summaries against the explicit GGN's diagonal.
  let total = 0;
  let off = 0;
  bf.names.forEach((name, p) => {
    const size = bf.sizes[p] as number;
    const d = Array.from({ length: size }, (_, i) => bf.ggn[(off + i) * bf.D + off + i] as number);
    off += size;
    const s = rec.diagonal!.params[name]!;
    const sum = d.reduce((a, b) => a + b, 0);
    total += sum;
    expect(s.size).toBe(size);
    expect(Math.abs(s.trace - sum) / sum).toBeLessThan(1e-4);
    expect(Math.abs(s.mean - sum / size) / (sum / size)).toBeLessThan(1e-4);
    expect(Math.abs(s.max - Math.max(...d)) / Math.max(...d)).toBeLessThan(1e-4);
    expect(Math.abs(s.min - Math.min(...d))).toBeLessThan(1e-4 * Math.max(...d));
  });
  expect(Math.abs(rec.diagonal!.trace - total) / total).toBeLessThan(1e-4);
}

describe('CurvatureMonitor with the Trainer', () => {
  it('records every k-th step; JSONL file, sink and records agree with the brute-force GGN', async () => {
    const { model, x, y, ext } = setup(3);
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    const dir = mkdtempSync(join(tmpdir(), 'curvpack-monitor-'));
    const file = join(dir, 'sub', 'monitor.jsonl');
    const lines: string[] = [];
    const fileMonitor = new CurvatureMonitor(ext, { topK: K, mcSamples: 0, jsonl: file, context: { model: 'mlp' }, name: 'M1' });
    const sinkMonitor = new CurvatureMonitor(ext, { topK: K, mcSamples: 0, jsonl: (l) => lines.push(l), name: 'M2' });
    const sgd0 = tf.train.sgd(0);
    const trainer = new Trainer(ext, {
      optimizer: sgd0,
      hooks: [...fileMonitor.hooks, ...sinkMonitor.hooks],
      extensions: [...fileMonitor.extensions, ...sinkMonitor.extensions],
      every: 2,
      progress: false,
    });
    fileMonitor.attach(trainer);
    const stop = sinkMonitor.attach(trainer);
    await trainer.fit({ x, y }, { epochs: 1, batchSize: 10 });
    for (let s = 0; s < 4; s++) trainer.step(x, y);
    stop();
    trainer.step(x, y); // steps 0..5; recorded: 0, 2, 4 (sink monitor detached before step 5... and step 5 is not computed anyway)
    expect(fileMonitor.records.map((r) => r.step)).toEqual([0, 2, 4]);
    const fromFile = readJsonl<MonitorRecord>(file);
    expect(fromFile).toEqual(JSON.parse(JSON.stringify(fileMonitor.records)));
    expect(readFileSync(file, 'utf8').split('\n').filter((l) => l !== '')).toHaveLength(3);
    expect(parseJsonl<MonitorRecord>(lines.join('\n')).map((r) => r.step)).toEqual([0, 2, 4]);
    for (const rec of fromFile) {
      expect(rec.model).toBe('mlp');
      expect(rec.batchSize).toBe(10);
      checkRecord(rec, bf, model);
    }
    // The loss field is the step's loss.
    const want = ext.lossValue(x, y);
    expect(Math.abs((fromFile[0] as MonitorRecord).loss - want) / want).toBeLessThan(1e-5);
    sgd0.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('Monte-Carlo curvature and Eigvalsh (snr: false) give the documented fields; the figure helper renders them', () => {
    const { model, x, y, ext } = setup(4, 16);
    const monitor = new CurvatureMonitor(ext, { topK: 4, mcSamples: 1, snr: false, diagonal: false, blocks: ['perLayer', 'perParam'] });
    const sgd0 = tf.train.sgd(0);
    const trainer = new Trainer(ext, { optimizer: sgd0, hooks: monitor.hooks, progress: false });
    monitor.attach(trainer);
    for (let s = 0; s < 3; s++) trainer.step(x, y);
    expect(monitor.records).toHaveLength(3);
    const r = monitor.records[0] as MonitorRecord;
    expect(r.blocks.map((b) => b.kind)).toEqual(['layer', 'layer', 'param', 'param', 'param', 'param']);
    for (const b of r.blocks) {
      expect(b.snr).toBeUndefined();
      expect(b.topEvals.length).toBeLessThanOrEqual(4);
      for (let i = 1; i < b.topEvals.length; i++) expect(b.topEvals[i]).toBeLessThanOrEqual(b.topEvals[i - 1] as number);
      expect(b.trace).toBeGreaterThanOrEqual((b.topEvals[0] as number) * (1 - 1e-6));
    }
    expect(r.diagonal).toBeUndefined();
    // MC draws differ between steps (seed = step): the records differ although the weights do not.
    expect(monitor.records[1]!.blocks[0]!.topEvals[0]).not.toBe(r.blocks[0]!.topEvals[0]);
    const svg = figureSvg(monitorFigure(monitor.records, { title: 'mc' }));
    const root = parseXml(svg);
    const paths = allElements(root).filter((e) => e.attrs.class === 'series');
    // loss (1) + λ_max per block (6) + top-4 of the first block (4) + traces (6)
    expect(paths).toHaveLength(1 + 6 + 4 + 6);
    for (const p of paths) expect(p.attrs['data-points']).toBe('3');
    sgd0.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('CurvatureMonitor with the model.fit plugin', () => {
  it('records the plugin’s computed steps with the same values', async () => {
    const { model, x, y, ext } = setup(5, 10, true);
    const bf = bruteForce(model, 'softmaxCrossEntropy', 'mean', x, y);
    const monitor = new CurvatureMonitor(ext, { topK: K, mcSamples: 0 });
    const plugin = new TrainingPlugin(ext, { hooks: monitor.hooks, extensions: monitor.extensions, every: 3 });
    const sgd0 = tf.train.sgd(0);
    model.compile({ optimizer: sgd0, loss: plugin.loss });
    plugin.attach();
    const stop = monitor.attach(plugin);
    await model.fit(x, y, { batchSize: 10, epochs: 7, shuffle: false, verbose: 0, callbacks: [plugin] });
    stop();
    plugin.detach();
    expect(monitor.records.map((r) => [r.step, r.epoch])).toEqual([
      [0, 0],
      [3, 3],
      [6, 6],
    ]);
    for (const r of monitor.records) checkRecord(r, bf, model);
    sgd0.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('CurvatureMonitor: errors', () => {
  it('fails clearly on bad options and on sources that do not compute its hooks', () => {
    const { model, x, y, ext } = setup(6);
    expect(() => new CurvatureMonitor(ext, { topK: 0 })).toThrow(/'topK' must be an integer ≥ 1/);
    expect(() => new CurvatureMonitor(ext, { mcSamples: -1 })).toThrow(/'mcSamples'/);
    expect(() => new CurvatureMonitor(ext, { blocks: ['layers' as never] })).toThrow(/'blocks' has 'layers'/);
    expect(() => new CurvatureMonitor(ext, { blocks: [] })).toThrow(/'blocks'/);
    expect(() => new CurvatureMonitor(ext, { topk: 3 } as never)).toThrow(/unknown option 'topk'/);
    expect(() => new CurvatureMonitor(ext, { context: { loss: 1 } })).toThrow(/record field 'loss'/);
    expect(() => new CurvatureMonitor(undefined as never)).toThrow(/ExtendedModel/);
    const monitor = new CurvatureMonitor(ext, { mcSamples: 0 });
    const sgd = tf.train.sgd(0);
    const bare = new Trainer(ext, { optimizer: sgd, progress: false });
    expect(() => monitor.attach(bare)).toThrow(/does not compute 'Monitor:full', 'Monitor:perLayer', 'Monitor:DiagGGNExact'/);
    expect(() => monitor.attach({} as never)).toThrow(/Trainer or a TrainingPlugin/);
    const r = ext.backward(x, y);
    expect(() => monitor.record({ step: 0, epoch: 0, batch: 0, batchSize: 10, loss: r.loss, result: r })).toThrow(/no results of 'Monitor:full'/);
    r.dispose();
    expect(() => new CurvatureMonitor(ext, { jsonl: 42 as never })).toThrow(/file path or a function/);
    sgd.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });
});
