/**
 * Batch streaming: in-memory arrays split into batches, lists of batches,
 * tf.data datasets (all element formats), minibatch sampling, errors.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { BatchStream } from '../../src/operators/data';
import { Rng } from '../../src/utils/random';
import { expectNoLeak, expectNoLeakAsync } from './reference';

const x = tf.tensor2d(Array.from({ length: 14 }, (_, i) => i), [7, 2]);
const y = tf.tensor1d([0, 1, 2, 3, 4, 5, 6]);

describe('BatchStream', () => {
  it('splits arrays into batches with a short last batch and frees the slices', () => {
    const s = new BatchStream({ x, y, batchSize: 3 });
    expect(s.isAsync).toBe(false);
    expect(s.count).toBe(7);
    const seen: number[][] = [];
    const rows = expectNoLeak(() => s.forEach((b) => seen.push(Array.from(b.y.dataSync()))));
    expect(rows).toBe(7);
    expect(seen).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
    // Without batchSize: the caller's tensors themselves, one batch.
    const whole = new BatchStream({ x, y });
    whole.forEach((b) => expect(b.x).toBe(x));
  });

  it('accepts a list of batches', () => {
    const parts = [{ x: tf.slice(x, 0, 4), y: tf.slice(y, 0, 4) }, { x: tf.slice(x, 4, 3), y: tf.slice(y, 4, 3) }];
    const s = new BatchStream(parts);
    expect(s.count).toBe(7);
    const sizes: number[] = [];
    s.forEach((b) => sizes.push(b.x.shape[0] as number));
    expect(sizes).toEqual([4, 3]);
    tf.dispose(parts as unknown as tf.TensorContainer);
  });

  it('streams tf.data datasets of {xs, ys}, {x, y} and [x, y] elements', async () => {
    const make = () => tf.data.array([0, 1, 2]).map((i) => {
      const k = i as number;
      return { xs: tf.fill([2, 2], k), ys: tf.fill([2], k) };
    });
    for (const ds of [
      make(),
      make().map((e) => ({ x: (e as { xs: tf.Tensor }).xs, y: (e as { ys: tf.Tensor }).ys })),
      make().map((e) => [(e as { xs: tf.Tensor }).xs, (e as { ys: tf.Tensor }).ys]),
    ]) {
      const s = new BatchStream(ds as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>);
      expect(s.isAsync).toBe(true);
      expect(s.count).toBeUndefined();
      expect(() => s.forEach(() => undefined)).toThrow(/asynchronous/);
      const seen: number[] = [];
      const rows = await expectNoLeakAsync(() => s.forEachAsync((b) => void seen.push((b.y.dataSync()[0] as number)))); 
      expect(rows).toBe(6);
      expect(seen).toEqual([0, 1, 2]);
    }
  });

  it('samples minibatches without replacement across batches, reproducibly', () => {
    const parts = [{ x: tf.slice(x, 0, 4), y: tf.slice(y, 0, 4) }, { x: tf.slice(x, 4, 3), y: tf.slice(y, 4, 3) }];
    const s = new BatchStream(parts);
    const draw = (seed: number) => {
      const b = s.sample(new Rng(seed), 5);
      const ids = Array.from(b.y.dataSync());
      expect(Array.from(b.x.dataSync())).toEqual(ids.flatMap((i) => [2 * i, 2 * i + 1]));
      tf.dispose([b.x, b.y]);
      return ids;
    };
    const a = draw(1);
    expect(new Set(a).size).toBe(5);
    expect(draw(1)).toEqual(a);
    // Across 20 draws every row is sampled (rows come from both batches).
    const all = new Set<number>();
    for (let seed = 0; seed < 20; seed++) draw(seed).forEach((i) => all.add(i));
    expect(all.size).toBe(7);
    tf.dispose(parts as unknown as tf.TensorContainer);
  });

  it('cycles through a dataset for minibatches', async () => {
    const ds = tf.data.array([0, 1]).map((i) => ({ xs: tf.fill([1, 2], i as number), ys: tf.fill([1], i as number) }));
    const s = new BatchStream(ds as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>);
    const ids: number[] = [];
    for (let k = 0; k < 5; k++) {
      const b = await s.sampleAsync(new Rng(0), 1);
      ids.push(b.y.dataSync()[0] as number);
      tf.dispose([b.x, b.y]);
    }
    expect(ids).toEqual([0, 1, 0, 1, 0]);
  });

  it('rejects empty and inconsistent data with clear errors', async () => {
    expect(() => new BatchStream({ x: tf.zeros([0, 2]), y: tf.zeros([0]) })).toThrow(/empty/);
    expect(() => new BatchStream({ x, y: tf.zeros([6]) })).toThrow(/x of shape \[7, 2\] and y of shape \[6\]/);
    expect(() => new BatchStream({ x, y, batchSize: 0 })).toThrow(/batchSize must be an integer ≥ 1/);
    expect(() => new BatchStream([])).toThrow(/empty/);
    expect(() => new BatchStream(undefined as never)).toThrow(/no data/);
    const empty = new BatchStream(tf.data.array([]) as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>);
    await expect(empty.forEachAsync(() => undefined)).rejects.toThrow(/dataset is empty/);
    const bad = new BatchStream(tf.data.array([1, 2]) as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>);
    await expect(bad.forEachAsync(() => undefined)).rejects.toThrow(/\{ xs, ys \}/);
  });
});
