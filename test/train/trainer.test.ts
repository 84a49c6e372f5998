/**
 * Trainer: trains like an independent TF.js autodiff loop, emits its events
 * in order with the right payloads, runs the extensions every k steps,
 * accepts tensors and datasets, drives StepOptimizers, stops on request and
 * on non-finite losses, shows progress only on a TTY, and does not leak.
 *
 * Tolerance for weights: curvpack's gradients vs TF.js autodiff of a loss
 * written in plain ops, both float32 with different op orders: ~1e-7
 * relative per step; after a few SGD steps the weights agree within 1e-5 of
 * the largest weight.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import type { BackwardResult } from '../../src/engine/results';
import type { ParamContext } from '../../src/engine/extension';
import type { ResolvedGroup } from '../../src/engine/hook';
import { Trainer } from '../../src/train/trainer';
import type { StepContext, StepEvent, StepOptimizer } from '../../src/train/events';
import { BatchGrad, SumGradSquared } from '../../extensions/firstorder/index';
import { DiagGGNExact, KFAC } from '../../extensions/secondorder/index';
import { GramMatrix } from '../../hooks/index';
import { referenceLoss, weightsErr } from '../helpers/autodiff';
import { expectNoLeaksPerTest } from '../helpers/leaks';

const W_TOL = 1e-5;

function mlp(seed = 1, inputDim = 4, classes = 3): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({
        inputShape: [inputDim],
        units: 5,
        activation: 'sigmoid',
        kernelInitializer: tf.initializers.glorotNormal({ seed }),
        biasInitializer: tf.initializers.randomNormal({ seed: seed + 1, stddev: 0.1 }),
      }),
      tf.layers.dense({ units: classes, kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }) }),
    ],
  });
}

const optimizers: tf.Optimizer[] = [];
function sgd(lr: number): tf.Optimizer {
  const o = tf.train.sgd(lr);
  optimizers.push(o);
  return o;
}

expectNoLeaksPerTest(() => {
  for (const o of optimizers.splice(0)) o.dispose();
});

describe('Trainer.fit', () => {
  it('trains like an independent TF.js autodiff loop (no shuffle, last batch smaller)', async () => {
    const x = tf.randomNormal([10, 4], 0, 1, 'float32', 1);
    const y = tf.randomNormal([10, 3], 0, 1, 'float32', 2);
    const model = mlp(3);
    const ref = mlp(3);
    const ext = extend(model, { loss: 'mse' });
    const trainer = new Trainer(ext, { optimizer: sgd(0.3), extensions: [new BatchGrad()], progress: false });
    const h = await trainer.fit({ x, y }, { epochs: 2, batchSize: 4, shuffle: false });
    expect(h.steps).toBe(6);
    expect(h.stopped).toBe(false);
    const opt = sgd(0.3);
    const vars = ref.trainableWeights.map((w) => w.read() as tf.Variable);
    for (let e = 0; e < 2; e++) {
      for (let s = 0; s < 10; s += 4) {
        const n = Math.min(4, 10 - s);
        const xb = tf.slice(x, s, n);
        const yb = tf.slice(y, s, n);
        opt.minimize(() => referenceLoss('mse', 'mean', ref.apply(xb) as tf.Tensor2D, yb), false, vars);
        tf.dispose([xb, yb]);
      }
    }
    expect(weightsErr(model, ref)).toBeLessThan(W_TOL);
    tf.dispose([x, y]);
    model.dispose();
    ref.dispose();
  });

  it('emits stepEnd, epochEnd and trainEnd in order with correct payloads', async () => {
    const x = tf.randomNormal([7, 4], 0, 1, 'float32', 3);
    const y = tf.tensor1d([0, 1, 2, 0, 1, 2, 1], 'int32');
    const model = mlp(4);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    // Learning rate 0: the weights never change, so each step's loss is the batch loss at the initial weights.
    const trainer = new Trainer(ext, { optimizer: sgd(0), extensions: [new BatchGrad(), new DiagGGNExact()], every: 2, progress: false });
    const log: string[] = [];
    const losses: number[] = [];
    trainer.on('stepEnd', (e: StepEvent) => {
      log.push(`step ${e.step} e${e.epoch} b${e.batch} n${e.batchSize} ${e.computed ? 'computed' : 'plain'}`);
      const xb = tf.slice(x, e.batch * 3, e.batchSize);
      const yb = tf.slice(y, e.batch * 3, e.batchSize);
      const want = tf.tidy(() => referenceLoss('softmaxCrossEntropy', 'mean', model.predict(xb) as tf.Tensor2D, yb).dataSync()[0] as number);
      expect(Math.abs(e.loss - want)).toBeLessThan(1e-5 * want);
      expect(e.result.loss).toBe(e.loss);
      expect(e.result.has('BatchGrad', 0)).toBe(e.computed);
      if (e.computed) {
        expect(e.result.get('BatchGrad', 0).shape).toEqual([e.batchSize, 4, 5]);
        expect(e.result.get('DiagGGNExact', 1).shape).toEqual([5]);
      }
      losses.push(e.loss * e.batchSize);
      tf.dispose([xb, yb]);
    });
    trainer.on('epochEnd', (e) => {
      log.push(`epoch ${e.epoch} steps ${e.steps}`);
      const n = losses.splice(0);
      expect(Math.abs(e.meanLoss - n.reduce((a, b) => a + b, 0) / 7)).toBeLessThan(1e-12);
    });
    trainer.on('trainEnd', (e) => log.push(`end ${e.epochs} ${e.steps} ${e.stopped}`));
    const h = await trainer.fit({ x, y }, { epochs: 2, batchSize: 3, shuffle: false });
    expect(log).toEqual([
      'step 0 e0 b0 n3 computed',
      'step 1 e0 b1 n3 plain',
      'step 2 e0 b2 n1 computed',
      'epoch 0 steps 3',
      'step 3 e1 b0 n3 plain',
      'step 4 e1 b1 n3 computed',
      'step 5 e1 b2 n1 plain',
      'epoch 1 steps 3',
      'end 2 6 false',
    ]);
    expect(h.loss.length).toBe(2);
    expect(Math.abs((h.loss[0] as number) - (h.loss[1] as number))).toBeLessThan(1e-6);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('shuffles with a seeded permutation: every sample once per epoch, reproducible, seed-dependent', async () => {
    // Batch size 1 and learning rate 0: each step's loss is one sample's loss.
    const N = 8;
    const x = tf.randomNormal([N, 4], 0, 1, 'float32', 5);
    const y = tf.randomNormal([N, 3], 0, 1, 'float32', 6);
    const model = mlp(5);
    const ext = extend(model, { loss: 'mse', reduction: 'sum' });
    const perSample = tf.tidy(() => Array.from(tf.sum(tf.square(tf.sub(model.predict(x) as tf.Tensor, y)), 1).dataSync()));
    const run = async (seed: number): Promise<number[]> => {
      const t = new Trainer(ext, { optimizer: sgd(0), seed, progress: false });
      const order: number[] = [];
      t.on('stepEnd', (e) => {
        const i = perSample.findIndex((l) => Math.abs(l - e.loss) < 1e-5 * l);
        expect(i).toBeGreaterThanOrEqual(0);
        order.push(i);
      });
      await t.fit({ x, y }, { epochs: 2, batchSize: 1 });
      return order;
    };
    const a = await run(1);
    const b = await run(1);
    const c = await run(2);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect([...a.slice(0, N)].sort((p, q) => p - q)).toEqual([...Array(N).keys()]);
    expect([...a.slice(N)].sort((p, q) => p - q)).toEqual([...Array(N).keys()]);
    expect(a.slice(0, N)).not.toEqual(a.slice(N)); // a new permutation each epoch
    tf.dispose([x, y]);
    model.dispose();
  });

  it('takes a batched tf.data.Dataset of { xs, ys } (same weights as tensor data)', async () => {
    const x = tf.randomNormal([9, 4], 0, 1, 'float32', 7);
    const y = tf.randomNormal([9, 3], 0, 1, 'float32', 8);
    const a = mlp(6);
    const b = mlp(6);
    const xa = x.arraySync() as number[][];
    const ya = y.arraySync() as number[][];
    const ds = tf.data.zip({ xs: tf.data.array(xa), ys: tf.data.array(ya) }).batch(4) as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>;
    const ta = new Trainer(extend(a, { loss: 'mse' }), { optimizer: sgd(0.2), extensions: [new SumGradSquared()], progress: false });
    const tb = new Trainer(extend(b, { loss: 'mse' }), { optimizer: sgd(0.2), extensions: [new SumGradSquared()], progress: false });
    const ha = await ta.fit(ds, { epochs: 2 });
    const hb = await tb.fit({ x, y }, { epochs: 2, batchSize: 4, shuffle: false });
    expect(ha.steps).toBe(6);
    expect(weightsErr(a, b)).toBe(0);
    expect(ha.loss).toEqual(hb.loss);
    // Unbatched datasets are refused with the fix.
    const flat = tf.data
      .zip({ xs: tf.data.array(xa), ys: tf.data.array(ya) })
      .map((e) => ({ xs: tf.tensor1d((e as { xs: number[] }).xs), ys: tf.tensor1d((e as { ys: number[] }).ys) })) as unknown as tf.data.Dataset<{
      xs: tf.Tensor;
      ys: tf.Tensor;
    }>;
    await expect(ta.fit(flat)).rejects.toThrow(/batch the dataset first \(dataset.batch\(batchSize\)\)/);
    const wrong = tf.data.array([{ a: 1 }]) as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>;
    await expect(ta.fit(wrong)).rejects.toThrow(/elements must be \{ xs: tf.Tensor, ys: tf.Tensor \}/);
    tf.dispose([x, y]);
    a.dispose();
    b.dispose();
  });

  it('drives a StepOptimizer with the whole result and its requested extensions', async () => {
    const x = tf.randomNormal([8, 4], 0, 1, 'float32', 9);
    const y = tf.randomNormal([8, 3], 0, 1, 'float32', 10);
    const a = mlp(8);
    const b = mlp(8);
    const extA = extend(a, { loss: 'mse' });
    const kfac = new KFAC({ seed: 3 });
    const seen: string[] = [];
    // Plain SGD written against the result; asks for KFAC on odd steps.
    const stepOpt: StepOptimizer = {
      requests: (step) => (step % 2 === 1 ? { extensions: [kfac] } : undefined),
      applyStep(result: BackwardResult, ctx: StepContext) {
        seen.push(`${ctx.step}:${result.has(kfac, 0) ? 'kfac' : '-'}`);
        expect(ctx.ext).toBe(extA);
        for (const p of ctx.ext.params) {
          tf.tidy(() => p.variable.assign(tf.sub(p.variable, tf.mul(result.grads[p.name] as tf.Tensor, 0.2))));
        }
      },
    };
    const ta = new Trainer(extA, { optimizer: stepOpt, progress: false });
    const tb = new Trainer(extend(b, { loss: 'mse' }), { optimizer: sgd(0.2), progress: false });
    await ta.fit({ x, y }, { epochs: 1, batchSize: 2, shuffle: false });
    await tb.fit({ x, y }, { epochs: 1, batchSize: 2, shuffle: false });
    expect(seen).toEqual(['0:-', '1:kfac', '2:-', '3:kfac']);
    expect(weightsErr(a, b)).toBeLessThan(1e-6);
    tf.dispose([x, y]);
    a.dispose();
    b.dispose();
  });

  it('keep() hands the result over; otherwise it is disposed after the event', async () => {
    const x = tf.randomNormal([4, 4], 0, 1, 'float32', 11);
    const y = tf.randomNormal([4, 3], 0, 1, 'float32', 12);
    const model = mlp(9);
    const t = new Trainer(extend(model, { loss: 'mse' }), { optimizer: sgd(0.1), extensions: [new BatchGrad()], progress: false });
    const kept: BackwardResult[] = [];
    const dropped: BackwardResult[] = [];
    let late: StepEvent | undefined;
    t.on('stepEnd', (e) => {
      if (e.step === 0) kept.push(e.keep());
      else {
        dropped.push(e.result);
        late = e;
      }
    });
    await t.fit({ x, y }, { batchSize: 2, shuffle: false });
    expect(kept[0]!.get('BatchGrad', 1).shape).toEqual([2, 5]);
    expect(() => dropped[0]!.grad(0)).toThrow(/disposed/);
    expect(() => late!.keep()).toThrow(/synchronously inside the listener/);
    kept[0]!.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('forwards hook warnings and stops on request', async () => {
    const x = tf.randomNormal([12, 4], 0, 1, 'float32', 13);
    const y = tf.randomNormal([12, 3], 0, 1, 'float32', 14);
    const model = mlp(10);
    const ext = extend(model, { loss: 'mse' });
    const hook = {
      name: 'Warner',
      quantities: [],
      groups: [{ params: [0] }],
      computeParam: (ctx: ParamContext) => tf.clone(ctx.gradient),
      finishGroup: (g: ResolvedGroup, c: readonly tf.Tensor[]) => ({ g: tf.clone(c[0]!), warnings: [{ message: `group ${g.index} is odd` }] }),
    };
    const t = new Trainer(ext, { optimizer: sgd(0.1), hooks: [hook], progress: false });
    const warnings: string[] = [];
    t.on('warning', (w) => {
      expect(w.source).toBe('hook');
      warnings.push(`${w.step}: ${w.message}`);
    });
    t.on('stepEnd', (e) => {
      if (e.step === 2) t.stop();
    });
    const h = await t.fit({ x, y }, { epochs: 3, batchSize: 2, shuffle: false });
    expect(h).toEqual({ loss: [expect.any(Number)], steps: 3, stopped: true });
    expect(warnings).toEqual(['0: group 0 is odd', '1: group 0 is odd', '2: group 0 is odd']);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('a non-finite loss emits a warning and rejects without updating the weights', async () => {
    const x = tf.tensor2d([[1, 2, 3, 4], [NaN, 0, 0, 0]]);
    const y = tf.zeros([2, 3]);
    const model = mlp(11);
    const t = new Trainer(extend(model, { loss: 'mse' }), { optimizer: sgd(0.1), extensions: [new BatchGrad()], progress: false });
    const warnings: string[] = [];
    t.on('warning', (w) => warnings.push(`${w.source} ${w.step}`));
    const w0 = model.getWeights().map((w) => w.arraySync());
    await expect(t.fit({ x, y }, { batchSize: 2 })).rejects.toThrow(/not finite/);
    expect(warnings).toEqual(['numerics 0']);
    model.getWeights().forEach((w, i) => expect(w.arraySync()).toEqual(w0[i]));
    expect(t.steps).toBe(0);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('no tensor growth over 50 steps with extensions and hooks on', async () => {
    const x = tf.randomNormal([100, 4], 0, 1, 'float32', 15);
    const y = tf.tensor1d(Array.from({ length: 100 }, (_, i) => i % 3), 'int32');
    const model = mlp(12);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const t = new Trainer(ext, {
      optimizer: sgd(0.05),
      extensions: [new BatchGrad(), new DiagGGNExact(), new KFAC()],
      hooks: [new GramMatrix({ groups: [{ params: ext.params.map((p) => p.name) }] })],
      progress: false,
    });
    const counts: number[] = [];
    t.on('stepEnd', () => counts.push(tf.memory().numTensors));
    const start = tf.memory().numTensors;
    await t.fit({ x, y }, { batchSize: 2 });
    expect(counts.length).toBe(50);
    expect(counts[49]).toBe(counts[0]);
    expect(tf.memory().numTensors).toBe(start);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('shows a progress line on a TTY only', async () => {
    const x = tf.randomNormal([6, 4], 0, 1, 'float32', 16);
    const y = tf.randomNormal([6, 3], 0, 1, 'float32', 17);
    const model = mlp(13);
    const ext = extend(model, { loss: 'mse' });
    const tty = { isTTY: true, columns: 200, out: [] as string[], write(s: string) { this.out.push(s); return true; } };
    const pipe = { isTTY: false, out: [] as string[], write(s: string) { this.out.push(s); return true; } };
    await new Trainer(ext, { optimizer: sgd(0.1), progress: tty }).fit({ x, y }, { epochs: 2, batchSize: 2 });
    await new Trainer(ext, { optimizer: sgd(0.1), progress: pipe }).fit({ x, y }, { epochs: 2, batchSize: 2 });
    expect(pipe.out).toEqual([]);
    const text = tty.out.join('');
    expect(text).toMatch(/\r\x1b\[2Kepoch 1\/2 {2}step 1\/3 {2}loss [0-9.e+-]+ {2}[0-9.]+ steps\/s/);
    expect(text).toMatch(/epoch 1\/2 {2}3 steps {2}mean loss [0-9.e+-]+ {2}[0-9.]+ s\n/);
    expect(text).toMatch(/epoch 2\/2 {2}3 steps/);
    expect(text.split('\n').length).toBe(3);
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('bad input', () => {
  it('gives clear errors', async () => {
    const x = tf.randomNormal([4, 4], 0, 1, 'float32', 18);
    const y = tf.randomNormal([3, 3], 0, 1, 'float32', 19);
    const model = mlp(14);
    const ext = extend(model, { loss: 'mse' });
    const opt = sgd(0.1);
    expect(() => new Trainer(ext, { optimizer: undefined as unknown as tf.Optimizer })).toThrow(/option 'optimizer' must be a tf.Optimizer/);
    expect(() => new Trainer(ext, { optimizer: opt, every: 0 })).toThrow(/option 'every' must be an integer ≥ 1, got 0/);
    expect(() => new Trainer(ext, { optimizer: opt, extensions: [new BatchGrad(), new BatchGrad()] })).toThrow(/named 'BatchGrad'/);
    expect(() => new Trainer(ext, { optimizer: opt, progress: 7 as unknown as boolean })).toThrow(/option 'progress'/);
    expect(() => new Trainer(model as unknown as typeof ext, { optimizer: opt })).toThrow(/ExtendedModel/);
    const t = new Trainer(ext, { optimizer: opt, progress: false });
    await expect(t.fit({ x, y })).rejects.toThrow(/x has 4 samples \(shape \[4, 4\]\) but y has 3 \(shape \[3, 3\]\)/);
    await expect(t.fit({ x } as unknown as { x: tf.Tensor; y: tf.Tensor })).rejects.toThrow(/data must be \{ x: tf.Tensor, y: tf.Tensor \}/);
    await expect(t.fit({ x, y: x }, { epochs: 0 })).rejects.toThrow(/'epochs' must be an integer ≥ 1/);
    await expect(t.fit({ x, y: x }, { batchSize: 2.5 })).rejects.toThrow(/'batchSize' must be an integer ≥ 1/);
    tf.dispose([x, y]);
    model.dispose();
  });
});
