/**
 * Saving and loading influence models and factors (src/influence/persist.ts,
 * load.ts): every method round-trips to the same influences (the saved
 * state is exact float32/float64 data, so the tolerance is float32 rounding
 * of a recomputation: 1e-6), factors round-trip bit-exactly, and mismatched
 * models, files and versions give clear errors without leaking tensors.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import type { InfluenceModel } from '../../src/influence/base';
import { CgInfluence } from '../../src/influence/cg';
import { DirectInfluence } from '../../src/influence/direct';
import { EkfacInfluence } from '../../src/influence/ekfac';
import { InverseHarmonicMeanInfluence } from '../../src/influence/inverseHarmonicMean';
import { LissaInfluence } from '../../src/influence/lissa';
import { loadInfluenceModel } from '../../src/influence/load';
import { ArnoldiInfluence, NystromInfluence } from '../../src/influence/lowRank';
import { makeProblem, maxRelErr, type Problem } from './reference';

let p: Problem;
let ext: ExtendedModel;
let dir: string;

beforeAll(() => {
  p = makeProblem({ inputs: 4, hidden: 5, outputs: 3, loss: 'mse', reduction: 'sum' }, 9, 3, 81);
  ext = extend(p.model, { loss: 'mse', reduction: 'sum' });
  dir = mkdtempSync(join(tmpdir(), 'curvpack-influence-'));
});
afterAll(() => {
  p.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const lambda = 0.2;
const cases: [string, () => InfluenceModel][] = [
  ['direct (layer blocks, Hessian)', () => new DirectInfluence(ext, { regularization: [lambda, 2 * lambda], blocks: 'layer', curvature: 'hessian', progress: false })],
  ['cg (Nyström preconditioner)', () => new CgInfluence(ext, { regularization: lambda, preconditioner: 'nystrom', preconditionerRank: 8, rtol: 1e-7, progress: false })],
  ['cg (Jacobi, custom group)', () => new CgInfluence(ext, { regularization: lambda, preconditioner: 'jacobi', blocks: [{ params: ['1/kernel', '1/bias'] }], progress: false })],
  ['lissa', () => new LissaInfluence(ext, { regularization: lambda, maxIter: 30, rtol: 0, progress: false })],
  ['arnoldi (projected: false)', () => new ArnoldiInfluence(ext, { regularization: lambda, rank: 12, projected: false, progress: false })],
  ['nystrom', () => new NystromInfluence(ext, { regularization: lambda, rank: [6, 4], blocks: 'layer', progress: false })],
  ['ekfac (layer blocks)', () => new EkfacInfluence(ext, { regularization: [lambda, 3 * lambda], blocks: 'layer', progress: false })],
  ['inverseHarmonicMean', () => new InverseHarmonicMeanInfluence(ext, { regularization: lambda, progress: false })],
];

describe('save → loadInfluenceModel reproduces the influences', () => {
  for (const [name, make] of cases) {
    it(name, async () => {
      const before = tf.memory().numTensors;
      const m = make();
      m.fit({ x: p.xTrain, y: p.yTrain });
      const S = m.influences(p.xTest, p.yTest);
      const where = join(dir, name.replace(/\W+/g, '_'));
      await m.save(where);
      const meta = JSON.parse(readFileSync(join(where, 'influence.json'), 'utf8')) as { format: string; version: number; method: string; nTrain: number };
      expect([meta.format, meta.version, meta.method, meta.nTrain]).toEqual(['curvpack-influence', 1, m.method, 9]);
      const loaded = await loadInfluenceModel(where, ext, { trainData: { x: p.xTrain, y: p.yTrain }, progress: false });
      expect(loaded.constructor).toBe(m.constructor);
      expect(loaded.blocks.map((b) => [b.name, b.regularization])).toEqual(m.blocks.map((b) => [b.name, b.regularization]));
      const S2 = loaded.influences(p.xTest, p.yTest);
      expect(maxRelErr(S2.dataSync(), S.dataSync())).toBeLessThan(1e-6);
      tf.dispose([S, S2]);
      m.dispose();
      loaded.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('models with a closed-form fit load without the training data (scores need explicit training data then)', async () => {
    const m = new EkfacInfluence(ext, { regularization: lambda, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const where = join(dir, 'ekfac-nodata');
    await m.save(where);
    const loaded = await loadInfluenceModel(where, ext);
    expect(() => loaded.influences(p.xTest, p.yTest)).toThrow(/no training data: pass x and y/);
    const a = m.influences(p.xTest, p.yTest);
    const b = loaded.influences(p.xTest, p.yTest, p.xTrain, p.yTrain);
    expect(maxRelErr(b.dataSync(), a.dataSync())).toBeLessThan(1e-6);
    tf.dispose([a, b]);
    m.dispose();
    loaded.dispose();
  });
});

describe('factors on disk', () => {
  it('round trip (bit-exact), checked against the model on load', async () => {
    const m = new DirectInfluence(ext, { regularization: lambda, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    const F = m.influenceFactors(p.xTest, p.yTest);
    const where = join(dir, 'factors');
    await m.saveFactors(where, F);
    const before = tf.memory().numTensors;
    const G = await m.loadFactors(where);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(Array.from(G.dataSync())).toEqual(Array.from(F.dataSync()));
    const S1 = m.influencesFromFactors(G);
    const S0 = m.influences(p.xTest, p.yTest);
    expect(maxRelErr(S1.dataSync(), S0.dataSync())).toBeLessThan(1e-6);
    // Factors of a model over other parameters are refused.
    const last = new DirectInfluence(ext, { regularization: lambda, blocks: [{ params: ['1/kernel', '1/bias'] }], progress: false });
    await expect(last.loadFactors(where)).rejects.toThrow(/saved parameters \(0\/kernel \[4, 5\].*\) do not match the model's \(1\/kernel \[5, 3\], 1\/bias \[3\]\)/);
    tf.dispose([F, G, S0, S1]);
    m.dispose();
  });
});

describe('load errors', () => {
  let saved: string;
  beforeAll(async () => {
    const m = new ArnoldiInfluence(ext, { regularization: lambda, rank: 5, progress: false });
    m.fit({ x: p.xTrain, y: p.yTrain });
    saved = join(dir, 'arnoldi-errors');
    await m.save(saved);
    m.dispose();
  });

  it('another architecture, a missing directory, a newer version, a truncated array, missing training data', async () => {
    const before = tf.memory().numTensors;
    const other = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 6, activation: 'tanh' }), tf.layers.dense({ units: 3 })] });
    const ext2 = extend(other, { loss: 'mse', reduction: 'sum' });
    await expect(loadInfluenceModel(saved, ext2)).rejects.toThrow(/do not match the model's|rank 5|parameters/);
    other.dispose();
    await expect(loadInfluenceModel(join(dir, 'nothing-here'), ext)).rejects.toThrow(/no influence.json in this directory/);
    const json = join(saved, 'influence.json');
    const text = readFileSync(json, 'utf8');
    writeFileSync(json, text.replace('"version": 1', '"version": 7'));
    await expect(loadInfluenceModel(saved, ext)).rejects.toThrow(/version 7 is not supported/);
    writeFileSync(json, text);
    const meta = JSON.parse(text) as { arrays: { file: string }[] };
    truncateSync(join(saved, (meta.arrays[0] as { file: string }).file), 10);
    await expect(loadInfluenceModel(saved, ext)).rejects.toThrow(/has 10 bytes, expected/);
    const cg = new CgInfluence(ext, { regularization: lambda, progress: false });
    cg.fit({ x: p.xTrain, y: p.yTrain });
    const cgDir = join(dir, 'cg-nodata');
    await cg.save(cgDir);
    await expect(loadInfluenceModel(cgDir, ext)).rejects.toThrow(/pass \{ trainData \} to load it/);
    cg.dispose();
    const unfitted = new DirectInfluence(ext, { regularization: lambda });
    await expect(unfitted.save(join(dir, 'x'))).rejects.toThrow(/not fitted/);
    expect(tf.memory().numTensors).toBe(before);
  });
});
