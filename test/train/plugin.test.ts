/**
 * The training plugin: model.fit with the plugin trains exactly like plain
 * model.fit, delivers the same extension / hook results as ext.backward on
 * the same batch and weights, honours `every`, detaches cleanly, works in
 * optimizer.minimize loops, does not leak, and rejects bad use clearly.
 *
 * Tolerances:
 * - weights vs plain model.fit / plain minimize loops (TF.js autodiff with
 *   TF.js's own losses): both compute in float32 through different op
 *   sequences; per-step gradients agree to ~1e-7 relative, and a few SGD
 *   steps keep the weights within 1e-5 of the largest weight;
 * - plugin results vs ext.backward: the same derivatives run on the same
 *   values (the plugin feeds TF.js's dy, which equals the engine's own
 *   gradient bit for bit), so they agree to 1e-6 (in practice exactly).
 */
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import type { BackwardResult } from '../../src/engine/results';
import type { GroupHook, ResolvedGroup } from '../../src/engine/hook';
import type { ParamContext } from '../../src/engine/extension';
import { SqrtGgnExactQuantity } from '../../src/engine/quantity';
import { TrainingPlugin } from '../../src/train/plugin';
import type { StepEvent } from '../../src/train/events';
import { BatchGrad, SumGradSquared } from '../../extensions/firstorder/index';
import { DiagGGNExact, DiagGGNMC, KFAC } from '../../extensions/secondorder/index';
import { GramMatrix } from '../../hooks/index';
import { maxRelErr, referenceLoss, weightsErr } from '../helpers/autodiff';

const W_TOL = 1e-5;
const R_TOL = 1e-6;

/** A small MLP with fixed initial weights (seeded initialisers). */
function mlp(seed = 1, opts: { dropout?: number; inputDim?: number; classes?: number } = {}): tf.Sequential {
  const inputDim = opts.inputDim ?? 5;
  const layers: tf.layers.Layer[] = [
    tf.layers.dense({
      inputShape: [inputDim],
      units: 6,
      activation: 'tanh',
      kernelInitializer: tf.initializers.glorotNormal({ seed }),
      biasInitializer: tf.initializers.randomNormal({ seed: seed + 1, stddev: 0.1 }),
    }),
  ];
  if (opts.dropout !== undefined) layers.push(tf.layers.dropout({ rate: opts.dropout }));
  layers.push(
    tf.layers.dense({
      units: opts.classes ?? 3,
      kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }),
      biasInitializer: tf.initializers.randomNormal({ seed: seed + 3, stddev: 0.1 }),
    }),
  );
  return tf.sequential({ layers });
}

function oneHot(N: number, C: number, seed = 0): tf.Tensor2D {
  return tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: N }, (_, i) => (i * 7 + seed) % C), 'int32'), C).toFloat() as tf.Tensor2D);
}

/** Compare every result of the plugin step with ext.backward's (same batch, weights, seed). */
function expectSameResults(got: BackwardResult, want: BackwardResult, names: string[], params: readonly { name: string }[]): void {
  expect(Math.abs(got.loss - want.loss)).toBeLessThanOrEqual(R_TOL * Math.abs(want.loss));
  for (const p of params) {
    expect(maxRelErr(got.grads[p.name] as tf.Tensor, want.grads[p.name] as tf.Tensor)).toBeLessThanOrEqual(R_TOL);
    for (const n of names) {
      const g = got.get(n, p.name);
      const w = want.get(n, p.name);
      const gs = g instanceof tf.Tensor ? [g] : (Object.values(g as Record<string, tf.Tensor>) as tf.Tensor[]);
      const ws = w instanceof tf.Tensor ? [w] : (Object.values(w as Record<string, tf.Tensor>) as tf.Tensor[]);
      expect(gs.length).toBe(ws.length);
      gs.forEach((t, i) => {
        expect(t.shape).toEqual((ws[i] as tf.Tensor).shape);
        expect(maxRelErr(t, ws[i] as tf.Tensor)).toBeLessThanOrEqual(R_TOL);
      });
    }
  }
}

/** A minimal group hook: per group, Σ_params ‖gradient‖² and the number of parameters — plus a warning. */
class GradNormHook implements GroupHook<tf.Scalar, { sq: tf.Scalar; warnings: { message: string }[] }> {
  readonly name = 'GradNorm';
  readonly quantities = [new SqrtGgnExactQuantity()];
  constructor(readonly groups: { params: string[] }[]) {}
  computeParam(ctx: ParamContext): tf.Scalar {
    return tf.tidy(() => tf.sum(tf.square(ctx.gradient)) as tf.Scalar);
  }
  finishGroup(group: ResolvedGroup, contributions: readonly tf.Scalar[]): { sq: tf.Scalar; warnings: { message: string }[] } {
    return { sq: tf.addN(contributions as tf.Scalar[]) as tf.Scalar, warnings: [{ message: `group ${group.index} done` }] };
  }
}

/** Optimizers keep a learning-rate scalar until disposed (model.dispose does not dispose them). */
const optimizers: tf.Optimizer[] = [];
function sgd(lr: number): tf.Optimizer {
  const o = tf.train.sgd(lr);
  optimizers.push(o);
  return o;
}

let before = 0;
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  for (const o of optimizers.splice(0)) o.dispose();
  expect(tf.memory().numTensors).toBe(before);
});

describe('model.fit with the plugin', () => {
  for (const kind of ['mse', 'softmaxCrossEntropy'] as const) {
    it(`gives the weights of plain model.fit (${kind}, 2 epochs × 3 steps)`, async () => {
      const N = 12;
      const x = tf.randomNormal([N, 5], 0, 1, 'float32', 4);
      const y = kind === 'mse' ? tf.randomNormal([N, 3], 0, 1, 'float32', 5) : oneHot(N, 3);
      const withPlugin = mlp(7);
      const plain = mlp(7);
      const ext = extend(withPlugin, { loss: kind });
      const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad(), new SumGradSquared(), new DiagGGNExact()] });
      withPlugin.compile({ optimizer: sgd(0.3), loss: plugin.loss });
      plugin.attach();
      // The independent reference: TF.js's own losses and autodiff.
      const tfLoss =
        kind === 'mse' ? 'meanSquaredError' : (yt: tf.Tensor, yp: tf.Tensor) => tf.losses.softmaxCrossEntropy(yt, yp);
      plain.compile({ optimizer: sgd(0.3), loss: tfLoss });
      let events = 0;
      plugin.on('step', () => events++);
      const h1 = await withPlugin.fit(x, y, { batchSize: 4, epochs: 2, shuffle: false, verbose: 0, callbacks: [plugin] });
      const h2 = await plain.fit(x, y, { batchSize: 4, epochs: 2, shuffle: false, verbose: 0 });
      expect(events).toBe(6);
      expect(plugin.steps).toBe(6);
      expect(weightsErr(withPlugin, plain)).toBeLessThan(W_TOL);
      (h1.history.loss as number[]).forEach((l, i) => expect(Math.abs(l - (h2.history.loss[i] as number))).toBeLessThan(1e-5 * Math.abs(l)));
      plugin.detach();
      tf.dispose([x, y]);
      withPlugin.dispose();
      plain.dispose();
    });
  }

  it('delivers the results of ext.backward on the same batch and weights (first and second order, MC, hook, dropout)', async () => {
    const N = 9;
    const B = 3;
    const x = tf.randomNormal([N, 5], 0, 1, 'float32', 8);
    const y = oneHot(N, 4, 1);
    const model = mlp(3, { dropout: 0.25, classes: 4 });
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const extensions = [new BatchGrad(), new SumGradSquared(), new DiagGGNExact(), new DiagGGNMC({ mcSamples: 2 }), new KFAC()];
    const hook = new GradNormHook([{ params: [ext.params[0]!.name, ext.params[1]!.name] }, { params: [ext.params[2]!.name, ext.params[3]!.name] }]);
    const gram = new GramMatrix({ groups: [{ params: ext.params.map((p) => p.name) }] });
    const plugin = new TrainingPlugin(ext, { extensions, hooks: [hook, gram], seed: 40 });
    model.compile({ optimizer: sgd(0.5), loss: plugin.loss });
    plugin.attach();
    const seen: number[] = [];
    const warnings: string[] = [];
    plugin.on('warning', (w) => warnings.push(w.message));
    plugin.on('backward', (e: StepEvent) => {
      // Before the optimizer update: the weights are those the step used.
      expect(plugin.current).toBe(e.result);
      const xb = tf.slice(x, e.batch * B, B);
      const yb = tf.slice(y, e.batch * B, B);
      const want = ext.backward(xb, yb, { extensions, hooks: [hook, gram], seed: 40 + e.step, training: true });
      expectSameResults(e.result, want, extensions.map((q) => q.name), ext.params);
      for (const [g, w] of e.result.groups(hook).map((r, i) => [r, want.groups(hook)[i]] as const)) {
        expect(maxRelErr(g.sq, w!.sq)).toBeLessThanOrEqual(R_TOL);
      }
      expect(maxRelErr(e.result.groups(gram)[0]!.gram, want.groups(gram)[0]!.gram)).toBeLessThanOrEqual(R_TOL);
      want.dispose();
      tf.dispose([xb, yb]);
      seen.push(e.step);
    });
    await model.fit(x, y, { batchSize: B, epochs: 1, shuffle: false, verbose: 0, callbacks: [plugin] });
    expect(seen).toEqual([0, 1, 2]);
    expect(warnings).toEqual(['group 0 done', 'group 1 done', 'group 0 done', 'group 1 done', 'group 0 done', 'group 1 done']);
    expect(plugin.current).toBeUndefined();
    plugin.detach();
    tf.dispose([x, y]);
    model.dispose();
  });

  for (const plainSteps of ['engine', 'tfjs'] as const) {
    it(`every: 3 computes at steps 0, 3, 6 (plainSteps '${plainSteps}') and trains like plain fit`, async () => {
      const x = tf.randomNormal([16, 5], 0, 1, 'float32', 9);
      const y = tf.randomNormal([16, 3], 0, 1, 'float32', 10);
      const model = mlp(11);
      const plain = mlp(11);
      const ext = extend(model, { loss: 'mse' });
      const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()], every: 3, plainSteps });
      model.compile({ optimizer: sgd(0.2), loss: plugin.loss });
      plain.compile({ optimizer: sgd(0.2), loss: 'meanSquaredError' });
      plugin.attach();
      const steps: number[] = [];
      plugin.on('step', (e) => {
        expect(e.computed).toBe(true);
        expect(e.result.get('BatchGrad', 0).shape).toEqual([2, 5, 6]);
        steps.push(e.step);
      });
      await model.fit(x, y, { batchSize: 2, epochs: 1, shuffle: false, verbose: 0, callbacks: [plugin] });
      await plain.fit(x, y, { batchSize: 2, epochs: 1, shuffle: false, verbose: 0 });
      expect(steps).toEqual([0, 3, 6]);
      expect(weightsErr(model, plain)).toBeLessThan(W_TOL);
      plugin.detach();
      tf.dispose([x, y]);
      model.dispose();
      plain.dispose();
    });
  }

  it('event.keep() hands the result over; otherwise it is disposed after the event', async () => {
    const x = tf.randomNormal([4, 5], 0, 1, 'float32', 12);
    const y = tf.randomNormal([4, 3], 0, 1, 'float32', 13);
    const model = mlp(2);
    const ext = extend(model, { loss: 'mse' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()] });
    model.compile({ optimizer: sgd(0.1), loss: plugin.loss });
    plugin.attach();
    const kept: BackwardResult[] = [];
    const dropped: BackwardResult[] = [];
    let late: StepEvent | undefined;
    plugin.on('step', (e) => {
      if (e.step === 0) kept.push(e.keep());
      else {
        dropped.push(e.result);
        late = e;
      }
    });
    await model.fit(x, y, { batchSize: 2, epochs: 1, shuffle: false, verbose: 0, callbacks: [plugin] });
    expect(kept[0]!.get('BatchGrad', 0).shape).toEqual([2, 5, 6]);
    expect(() => dropped[0]!.get('BatchGrad', 0)).toThrow(/disposed/);
    expect(() => late!.keep()).toThrow(/after step 1's event ended/);
    kept[0]!.dispose();
    plugin.detach();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('no tensor growth over 50 steps with extensions and hooks on', async () => {
    const x = tf.randomNormal([100, 5], 0, 1, 'float32', 14);
    const y = oneHot(100, 3, 2);
    const model = mlp(5);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const plugin = new TrainingPlugin(ext, {
      extensions: [new BatchGrad(), new SumGradSquared(), new DiagGGNExact(), new KFAC()],
      hooks: [new GradNormHook([{ params: ext.params.map((p) => p.name) }]), new GramMatrix({ groups: [{ params: [0, 1] }] })],
    });
    model.compile({ optimizer: sgd(0.05), loss: plugin.loss });
    plugin.attach();
    const counts: number[] = [];
    plugin.on('step', () => counts.push(tf.memory().numTensors));
    const start = tf.memory().numTensors;
    await model.fit(x, y, { batchSize: 2, epochs: 1, verbose: 0, callbacks: [plugin] });
    expect(counts.length).toBe(50);
    expect(counts[49]).toBe(counts[1]);
    expect(tf.memory().numTensors).toBe(start);
    plugin.detach();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('validation data and evaluate / predict run the plain layers', async () => {
    const x = tf.randomNormal([6, 5], 0, 1, 'float32', 15);
    const y = tf.randomNormal([6, 3], 0, 1, 'float32', 16);
    const model = mlp(6);
    const ext = extend(model, { loss: 'mse' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()] });
    model.compile({ optimizer: sgd(0.1), loss: plugin.loss });
    plugin.attach();
    let events = 0;
    plugin.on('step', () => events++);
    const h = await model.fit(x, y, { batchSize: 3, epochs: 2, verbose: 0, validationData: [x, y], callbacks: [plugin] });
    expect(events).toBe(4);
    // evaluate uses plugin.loss outside a step: the plain loss (same value as the engine's).
    const ev = model.evaluate(x, y) as tf.Scalar;
    expect(Math.abs(ev.dataSync()[0]! - ext.lossValue(x, y))).toBeLessThan(1e-6);
    expect((h.history.val_loss as number[]).length).toBe(2);
    ev.dispose();
    plugin.detach();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('other TF.js entry points', () => {
  it('functional model with a parameter-free first layer, metrics, fitDataset and trainOnBatch', async () => {
    const build = (): tf.LayersModel => {
      const input = tf.input({ shape: [2, 3] });
      const f = tf.layers.flatten().apply(input) as tf.SymbolicTensor;
      const h = tf.layers
        .dense({ units: 4, activation: 'relu', kernelInitializer: tf.initializers.glorotNormal({ seed: 71 }), biasInitializer: 'ones' })
        .apply(f) as tf.SymbolicTensor;
      const out = tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotNormal({ seed: 72 }) }).apply(h) as tf.SymbolicTensor;
      return tf.model({ inputs: input, outputs: out });
    };
    const x = tf.randomNormal([8, 2, 3], 0, 1, 'float32', 73);
    const y = tf.randomNormal([8, 2], 0, 1, 'float32', 74);
    const a = build();
    const b = build();
    const ext = extend(a, { loss: 'mse' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()] });
    a.compile({ optimizer: sgd(0.1), loss: plugin.loss, metrics: ['mse'] });
    b.compile({ optimizer: sgd(0.1), loss: 'meanSquaredError', metrics: ['mse'] });
    plugin.attach();
    const steps: number[] = [];
    plugin.on('step', (e) => {
      expect(e.result.get('BatchGrad', 0).shape).toEqual([e.batchSize, 6, 4]);
      steps.push(e.step);
    });
    // model.fit, then model.fitDataset (batches of 4), then trainOnBatch inside an explicit step.
    const h = await a.fit(x, y, { batchSize: 4, epochs: 1, shuffle: false, verbose: 0, callbacks: [plugin] });
    await b.fit(x, y, { batchSize: 4, epochs: 1, shuffle: false, verbose: 0 });
    expect((h.history.mse as number[])[0]).toBeCloseTo(h.history.loss[0] as number, 5);
    const ds = tf.data.zip({ xs: tf.data.array(x.arraySync() as number[][][]), ys: tf.data.array(y.arraySync() as number[][]) }).batch(4);
    await a.fitDataset(ds, { epochs: 1, verbose: 0, callbacks: [plugin] });
    await b.fitDataset(ds, { epochs: 1, verbose: 0 });
    plugin.beginStep();
    await a.trainOnBatch(x, y);
    const r = plugin.endStep();
    await b.trainOnBatch(x, y);
    expect(r.result?.get('BatchGrad', 0).shape).toEqual([8, 6, 4]);
    r.result?.dispose();
    expect(steps).toEqual([0, 1, 2, 3, 4]);
    expect(weightsErr(a, b)).toBeLessThan(W_TOL);
    plugin.detach();
    tf.dispose([x, y]);
    a.dispose();
    b.dispose();
  });
});

describe('detach', () => {
  it('restores every layer and model.fit behaves exactly as before attach', async () => {
    const x = tf.randomNormal([8, 5], 0, 1, 'float32', 17);
    const y = tf.randomNormal([8, 3], 0, 1, 'float32', 18);
    const a = mlp(21);
    const b = mlp(21);
    const ext = extend(a, { loss: 'mse' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()] });
    a.compile({ optimizer: sgd(0.1), loss: plugin.loss });
    b.compile({ optimizer: sgd(0.1), loss: plugin.loss });
    const protoCalls = a.layers.map((l) => Object.getPrototypeOf(l).call);
    plugin.attach();
    expect(plugin.attached).toBe(true);
    expect(a.layers.every((l) => Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(true);
    await a.fit(x, y, { batchSize: 4, epochs: 1, shuffle: false, verbose: 0, callbacks: [plugin] });
    plugin.detach();
    expect(plugin.attached).toBe(false);
    a.layers.forEach((l, i) => {
      expect(Object.prototype.hasOwnProperty.call(l, 'call')).toBe(false);
      expect(l.call).toBe(protoCalls[i]);
    });
    // b catches up with the same first epoch without any plugin (plain TF.js, same loss function).
    await b.fit(x, y, { batchSize: 4, epochs: 1, shuffle: false, verbose: 0 });
    expect(weightsErr(a, b)).toBeLessThan(W_TOL);
    // From equal weights, the detached model trains bit-identically to one that never had a plugin.
    b.setWeights(a.getWeights());
    await a.fit(x, y, { batchSize: 4, epochs: 2, shuffle: false, verbose: 0 });
    await b.fit(x, y, { batchSize: 4, epochs: 2, shuffle: false, verbose: 0 });
    expect(weightsErr(a, b)).toBe(0);
    plugin.detach(); // idempotent
    // A detached plugin can be attached again.
    plugin.attach();
    plugin.detach();
    tf.dispose([x, y]);
    a.dispose();
    b.dispose();
  });
});

describe('optimizer.minimize loops', () => {
  it('plugin.step(() => optimizer.minimize(...)) gives ext.backward results and trains like a plain loop', () => {
    const x = tf.randomNormal([6, 5], 0, 1, 'float32', 19);
    const y = tf.randomNormal([6, 3], 0, 1, 'float32', 20);
    const model = mlp(31);
    const plain = mlp(31);
    const ext = extend(model, { loss: 'mse', reduction: 'sum' });
    const extensions = [new BatchGrad(), new DiagGGNExact()];
    const plugin = new TrainingPlugin(ext, { extensions, every: 2 }).attach();
    const opt = sgd(0.02);
    const optPlain = sgd(0.02);
    const plainVars = plain.trainableWeights.map((w) => w.read() as tf.Variable);
    for (let i = 0; i < 4; i++) {
      const want = ext.backward(x, y, { extensions });
      const out = plugin.step(() =>
        opt.minimize(() => plugin.loss(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, true),
      );
      expect(out.step).toBe(i);
      expect(out.computed).toBe(i % 2 === 0);
      const got = out.result as BackwardResult;
      expect(Math.abs((out.value as tf.Scalar).dataSync()[0]! - want.loss)).toBeLessThan(1e-6 * want.loss);
      expectSameResults(got, want, out.computed ? extensions.map((e) => e.name) : [], ext.params);
      if (!out.computed) expect(() => got.get('BatchGrad', 0)).toThrow(/no results for extension/);
      got.dispose();
      want.dispose();
      (out.value as tf.Tensor).dispose();
      // Independent: TF.js autodiff of a loss written in plain ops.
      optPlain.minimize(() => referenceLoss('mse', 'sum', plain.apply(x) as tf.Tensor2D, y), false, plainVars);
    }
    expect(weightsErr(model, plain)).toBeLessThan(W_TOL);
    // beginStep / endStep spelling, with 'tfjs' plain steps nothing is recorded on off-steps.
    plugin.detach();
    const p2 = new TrainingPlugin(ext, { every: 2, plainSteps: 'tfjs' }).attach();
    for (let i = 0; i < 2; i++) {
      p2.beginStep();
      opt.minimize(() => p2.loss(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
      const r = p2.endStep();
      expect(r.computed).toBe(i === 0);
      if (i === 0) expect(r.result?.grads[ext.params[0]!.name]?.shape).toEqual([5, 6]);
      else expect(r.result).toBeUndefined();
      r.result?.dispose();
    }
    p2.detach();
    tf.dispose([x, y]);
    model.dispose();
    plain.dispose();
  });

  it('steps that do not complete are discarded with a clear error and free everything', async () => {
    const x = tf.randomNormal([4, 5], 0, 1, 'float32', 22);
    const y = tf.randomNormal([4, 3], 0, 1, 'float32', 23);
    const model = mlp(41);
    const ext = extend(model, { loss: 'mse' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()] }).attach();
    const opt = sgd(0.1);
    // A loss that is not plugin.loss.
    expect(() => plugin.step(() => opt.minimize(() => tf.losses.meanSquaredError(y, model.apply(x) as tf.Tensor) as tf.Scalar))).toThrow(
      /without the plugin's loss/,
    );
    // plugin.loss on something other than the recorded model output.
    expect(() =>
      plugin.step(() => opt.minimize(() => plugin.loss(y, tf.mul(model.apply(x) as tf.Tensor, 2)) as tf.Scalar)),
    ).toThrow(/not the model output/);
    // No gradient computation at all.
    expect(() => plugin.step(() => tf.dispose(model.apply(x) as tf.Tensor))).toThrow(/did not complete: the loss was not computed/);
    // The model called twice before the loss.
    expect(() => plugin.step(() => tf.tidy(() => { model.apply(x); model.apply(x); }))).toThrow(/called a second time/);
    // endStep without beginStep; beginStep twice.
    expect(() => plugin.endStep()).toThrow(/no step is running/);
    plugin.beginStep();
    expect(() => plugin.beginStep()).toThrow(/was not ended/);
    expect(() => plugin.endStep()).toThrow(/no forward pass/);
    // A model.fit step left over (as after a fit that failed outside curvpack): reset() frees it.
    await plugin.onBatchBegin(0);
    tf.dispose(model.apply(x, { training: true }) as tf.Tensor);
    expect(() => plugin.beginStep()).toThrow(/call plugin.reset\(\) first/);
    plugin.reset();
    plugin.beginStep();
    plugin.reset();
    plugin.detach();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('a non-finite loss emits a warning, throws, and frees the step', () => {
    const x = tf.tensor2d([[NaN, 0, 0, 0, 0], [1, 2, 3, 4, 5]]);
    const y = tf.zeros([2, 3]);
    const model = mlp(42);
    const ext = extend(model, { loss: 'mse' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()] }).attach();
    const warnings: string[] = [];
    plugin.on('warning', (w) => {
      expect(w.source).toBe('numerics');
      warnings.push(w.message);
    });
    const opt = sgd(0.1);
    const w0 = model.getWeights().map((w) => w.arraySync());
    expect(() => plugin.step(() => opt.minimize(() => plugin.loss(y, model.apply(x) as tf.Tensor) as tf.Scalar))).toThrow(/not finite/);
    expect(warnings.length).toBe(1);
    model.getWeights().forEach((w, i) => expect(w.arraySync()).toEqual(w0[i]));
    plugin.detach();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('bad input', () => {
  it('gives clear errors', async () => {
    const x = tf.randomNormal([4, 5], 0, 1, 'float32', 24);
    const y = tf.randomNormal([4, 3], 0, 1, 'float32', 25);
    const model = mlp(51);
    const ext = extend(model, { loss: 'mse' });
    expect(() => new TrainingPlugin(ext, { every: 0 })).toThrow(/'every' must be an integer ≥ 1/);
    expect(() => new TrainingPlugin(ext, { every: 1.5 })).toThrow(/'every'/);
    expect(() => new TrainingPlugin(ext, { plainSteps: 'fast' as 'tfjs' })).toThrow(/'plainSteps'/);
    expect(() => new TrainingPlugin(ext, { extensions: [new BatchGrad(), new BatchGrad()] })).toThrow(/two extensions or hooks are named 'BatchGrad'/);
    expect(() => new TrainingPlugin(model as unknown as typeof ext)).toThrow(/ExtendedModel/);

    // Compiled with another loss: attach explains the fix.
    model.compile({ optimizer: sgd(0.1), loss: 'meanSquaredError' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad()] });
    expect(() => plugin.attach()).toThrow(/compiled with 'meanSquaredError'.*model\.compile\(\{ optimizer, loss: plugin\.loss \}\)/);
    expect(plugin.attached).toBe(false);
    expect(model.layers.some((l) => Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(false);

    // Not attached: model.fit rejects.
    model.compile({ optimizer: sgd(0.1), loss: plugin.loss });
    await expect(model.fit(x, y, { epochs: 1, verbose: 0, callbacks: [plugin] })).rejects.toThrow(/not attached; call plugin.attach\(\)/);

    // Attached twice; a second plugin on the same model.
    plugin.attach();
    expect(() => plugin.attach()).toThrow(/already attached; call detach\(\) first/);
    const other = new TrainingPlugin(extend(model, { loss: 'mse' }));
    expect(() => other.attach()).toThrow(/another plugin is already attached to this model/);

    // Compiled with another loss after attach: model.fit rejects before any step.
    model.compile({ optimizer: sgd(0.1), loss: 'meanSquaredError' });
    await expect(model.fit(x, y, { epochs: 1, verbose: 0, callbacks: [plugin] })).rejects.toThrow(/loss: plugin.loss/);

    // The plugin given to the fit of another model.
    const stranger = mlp(52);
    stranger.compile({ optimizer: sgd(0.1), loss: plugin.loss });
    await expect(stranger.fit(x, y, { epochs: 1, verbose: 0, callbacks: [plugin] })).rejects.toThrow(/different model/);
    plugin.detach();
    model.compile({ optimizer: sgd(0.1), loss: other.loss });
    other.attach();
    other.detach();
    tf.dispose([x, y]);
    model.dispose();
    stranger.dispose();
  });
});

describe('Conv2D on wasm', () => {
  /** conv(3×3, 3 filters, tanh) → flatten → dense(2), weights set from `init`. */
  function convModel(init: readonly unknown[]): tf.Sequential {
    const m = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, activation: 'tanh' }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 2 }),
      ],
    });
    const ws = m.getWeights().map((w, i) => tf.tensor(init[i] as number[], w.shape));
    m.setWeights(ws);
    tf.dispose(ws);
    return m;
  }

  it('plain model.fit fails on wasm (no Conv2DBackpropFilter); with the plugin it trains like plain fit on cpu', async () => {
    expect(tf.getBackend()).toBe('wasm');
    const seeds = [61, 62, 63, 64];
    const shapes = [[3, 3, 2, 3], [3], [48, 2], [2]];
    const init = tf.tidy(() => shapes.map((s, i) => tf.randomNormal(s, 0, 0.3, 'float32', seeds[i]).arraySync() as number[][]));
    const xs = tf.tidy(() => tf.randomNormal([8, 6, 6, 2], 0, 1, 'float32', 65).arraySync() as number[][][][]);
    const ys = tf.tidy(() => tf.randomNormal([8, 2], 0, 1, 'float32', 66).arraySync() as number[][]);
    const fitArgs = { batchSize: 4, epochs: 2, shuffle: false, verbose: 0 as const };

    // 1. Plain TF.js on wasm: the kernel gradient needs Conv2DBackpropFilter, which wasm lacks.
    {
      const n0 = tf.memory().numTensors;
      const x = tf.tensor4d(xs);
      const y = tf.tensor2d(ys);
      const m = convModel(init);
      m.compile({ optimizer: sgd(0.1), loss: 'meanSquaredError' });
      await expect(m.fit(x, y, fitArgs)).rejects.toThrow(/Conv2DBackpropFilter/);
      m.dispose();
      tf.dispose([x, y]);
      for (const o of optimizers.splice(0)) o.dispose();
      // TF.js leaks its own tape tensors when a kernel is missing; not counted against the plugin.
      before += tf.memory().numTensors - n0;
    }

    // 2. With the plugin on wasm: curvpack's im2col derivatives compute the gradients.
    const x = tf.tensor4d(xs);
    const y = tf.tensor2d(ys);
    const m = convModel(init);
    const ext = extend(m, { loss: 'mse' });
    const plugin = new TrainingPlugin(ext, { extensions: [new BatchGrad(), new DiagGGNExact()] });
    m.compile({ optimizer: sgd(0.1), loss: plugin.loss });
    plugin.attach();
    let events = 0;
    plugin.on('step', (e) => {
      expect(e.result.get('BatchGrad', 0).shape).toEqual([4, 3, 3, 2, 3]);
      events++;
    });
    await m.fit(x, y, { ...fitArgs, callbacks: [plugin] });
    expect(events).toBe(4);
    plugin.detach();
    const got = m.getWeights().map((w) => w.dataSync().slice());
    m.dispose();
    tf.dispose([x, y]);

    // 3. Independent reference: plain model.fit with TF.js autodiff on the cpu backend.
    await tf.setBackend('cpu');
    try {
      const xc = tf.tensor4d(xs);
      const yc = tf.tensor2d(ys);
      const ref = convModel(init);
      ref.compile({ optimizer: sgd(0.1), loss: 'meanSquaredError' });
      await ref.fit(xc, yc, fitArgs);
      ref.getWeights().forEach((w, i) => {
        const g = tf.tensor(got[i] as Float32Array, w.shape);
        expect(maxRelErr(g, w)).toBeLessThan(W_TOL);
        g.dispose();
      });
      ref.dispose();
      tf.dispose([xc, yc]);
      for (const o of optimizers.splice(0)) o.dispose();
    } finally {
      await tf.setBackend('wasm');
    }
  });
});
