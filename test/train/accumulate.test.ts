/**
 * Accumulators vs explicit loops: exponential moving averages (with and
 * without bias correction) and running sums of numbers, Float64Arrays,
 * tensors and nested structures (Kronecker factors {A, G}, per-parameter
 * dictionaries, eigenvalue lists).
 *
 * Tolerance: numbers and Float64Arrays are accumulated in float64 like the
 * reference loop, but in a different order of operations (1e-12 relative);
 * tensors in float32 (1e-6 relative: a few float32 roundings per update).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ExponentialMovingAverage, RunningSum } from '../../src/train/accumulate';
import { Rng } from '../../src/utils/random';
import { maxRelErr } from '../helpers/autodiff';
import { expectNoLeaksPerTest } from '../helpers/leaks';

expectNoLeaksPerTest();

/** Explicit EMA loop in float64 over arrays of equal length. */
function emaLoop(values: number[][], beta: number, correct: boolean): number[] {
  let m = values[0]!.map(() => 0);
  values.forEach((v) => (m = m.map((mi, i) => beta * mi + (1 - beta) * v[i]!)));
  const c = correct ? 1 - beta ** values.length : 1;
  return m.map((mi) => mi / c);
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): void {
  expect(a.length).toBe(b.length);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  for (let i = 0; i < b.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(tol * Math.max(scale, 1e-30));
}

function randomRows(T: number, n: number, seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from({ length: T }, () => Array.from({ length: n }, () => rng.normal()));
}

describe('ExponentialMovingAverage', () => {
  for (const biasCorrection of [true, false]) {
    it(`equals an explicit loop on numbers, Float64Arrays and tensors (biasCorrection ${biasCorrection})`, () => {
      const rows = randomRows(7, 6, 1);
      const beta = 0.8;
      const want = emaLoop(rows, beta, biasCorrection);
      const num = new ExponentialMovingAverage<number>({ decay: beta, biasCorrection });
      const arr = new ExponentialMovingAverage<Float64Array>({ decay: beta, biasCorrection });
      const ten = new ExponentialMovingAverage<tf.Tensor>({ decay: beta, biasCorrection });
      for (const r of rows) {
        num.update(r[0]!);
        arr.update(Float64Array.from(r));
        const t = tf.tensor2d(r, [2, 3]);
        ten.update(t);
        t.dispose();
      }
      expect(num.count).toBe(7);
      close([num.value()], [want[0]!], 1e-12);
      close(arr.value(), want, 1e-12);
      expect(ten.value().shape).toEqual([2, 3]);
      close(ten.value().dataSync(), want, 1e-6);
      // value() is owned by the accumulator: the same object until the next update.
      expect(ten.value()).toBe(ten.value());
      num.dispose();
      arr.dispose();
      ten.dispose();
    });
  }

  it('with bias correction, the average of equal values is that value from the first update', () => {
    const e = new ExponentialMovingAverage<number>({ decay: 0.99 });
    e.update(3);
    expect(e.value()).toBeCloseTo(3, 12);
    e.update(3);
    expect(e.value()).toBeCloseTo(3, 12);
    const raw = new ExponentialMovingAverage<number>({ decay: 0.99, biasCorrection: false });
    raw.update(3);
    expect(raw.value()).toBeCloseTo(0.03, 12);
  });

  it('averages nested structures: Kronecker factors, per-parameter dictionaries, eigenvalue lists', () => {
    const beta = 0.5;
    const e = new ExponentialMovingAverage<{ k: { A: tf.Tensor; G: tf.Tensor }; b: { G: tf.Tensor }; evals: number[] }>({ decay: beta });
    const As = randomRows(3, 4, 2);
    const Gs = randomRows(3, 9, 3);
    const bs = randomRows(3, 4, 4);
    const ev = randomRows(3, 5, 5);
    for (let t = 0; t < 3; t++) {
      const v = { k: { A: tf.tensor2d(As[t]!, [2, 2]), G: tf.tensor2d(Gs[t]!, [3, 3]) }, b: { G: tf.tensor2d(bs[t]!, [2, 2]) }, evals: ev[t]! };
      e.update(v);
      tf.dispose([v.k.A, v.k.G, v.b.G]); // update only reads
    }
    const m = e.value();
    close(m.k.A.dataSync(), emaLoop(As, beta, true), 1e-6);
    close(m.k.G.dataSync(), emaLoop(Gs, beta, true), 1e-6);
    close(m.b.G.dataSync(), emaLoop(bs, beta, true), 1e-6);
    close(m.evals, emaLoop(ev, beta, true), 1e-12);
    e.dispose();
  });

  it('is safe inside tf.tidy, resets, and refuses structure changes and bad options', () => {
    const e = new ExponentialMovingAverage({ decay: 0.9 });
    tf.tidy(() => e.update({ A: tf.ones([2, 2]) }));
    expect((e.value() as { A: tf.Tensor }).A.isDisposed).toBe(false);
    const bad = tf.ones([3, 3]);
    expect(() => e.update({ A: bad })).toThrow(/the value at 'A' is a tensor of shape \[3, 3\] but the accumulated value is a tensor of shape \[2, 2\]/);
    expect(() => e.update({ B: bad })).toThrow(/an object with keys \{B\}.*\{A\}/);
    expect(() => e.update(undefined as unknown as number)).toThrow(/the value is undefined/);
    expect(() => e.update('x' as unknown as number)).toThrow(/accumulate tensors, Float64Arrays, numbers/);
    bad.dispose();
    e.reset();
    expect(e.count).toBe(0);
    expect(() => e.value()).toThrow(/no value yet; call update\(value\) first/);
    e.update(new Float64Array([1, 2]));
    expect(Array.from(e.value() as Float64Array)).toEqual([1, 2]);
    e.dispose();
    e.dispose(); // idempotent
    expect(() => e.update(1)).toThrow(/disposed/);
    expect(() => new ExponentialMovingAverage({ decay: 1 })).toThrow(/'decay' must be a number in \[0, 1\), got 1/);
    expect(() => new ExponentialMovingAverage({ decay: -0.1 })).toThrow(/'decay'/);
  });
});

describe('RunningSum', () => {
  it('sums and averages like an explicit loop, resettable', () => {
    const rows = randomRows(5, 6, 6);
    const want = rows[0]!.map((_, i) => rows.reduce((s, r) => s + r[i]!, 0));
    const s = new RunningSum<{ t: tf.Tensor; a: Float64Array; n: number }>();
    for (const r of rows) {
      const t = tf.tensor1d(r);
      s.update({ t, a: Float64Array.from(r), n: r[0]! });
      t.dispose();
    }
    expect(s.count).toBe(5);
    close(s.value().t.dataSync(), want, 1e-6);
    close(s.value().a, want, 1e-12);
    close([s.value().n], [want[0]!], 1e-12);
    close(s.mean().a, want.map((w) => w / 5), 1e-12);
    close(s.mean().t.dataSync(), want.map((w) => w / 5), 1e-6);
    s.reset();
    const t = tf.tensor1d([1, 2]);
    s.update({ t, a: new Float64Array([3]), n: 4 });
    t.dispose();
    expect(s.value().n).toBe(4);
    expect(maxRelErr(s.mean().t, s.value().t)).toBe(0);
    s.dispose();
  });

  it('integer tensors are accumulated as float32', () => {
    const s = new RunningSum<tf.Tensor>();
    const t = tf.tensor1d([1, 2], 'int32');
    s.update(t);
    s.update(t);
    expect(s.value().dtype).toBe('float32');
    expect(Array.from(s.value().dataSync())).toEqual([2, 4]);
    t.dispose();
    s.dispose();
  });
});
