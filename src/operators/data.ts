/**
 * Data for dataset-averaged operators: in-memory arrays split into batches,
 * a list of batches, or a `tf.data.Dataset` streamed asynchronously.
 *
 *   { x: [N, ...], y: [N, ...], batchSize? }   in memory (sync), batches of
 *                                              `batchSize` rows (default: all N)
 *   [{ x, y }, …]                              in memory (sync), given batches
 *   tf.data.Dataset of { xs, ys } (or { x, y }, or [x, y]) batches
 *                                              streamed (async)
 *
 * The caller keeps ownership of the tensors it passes (they must stay alive
 * while an operator uses them); batches sliced or read from a dataset are
 * owned and disposed by the stream.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../utils/random';

export interface Batch {
  readonly x: tf.Tensor;
  readonly y: tf.Tensor;
}

export interface ArrayData extends Batch {
  /** Rows per batch (default: all rows in one batch). */
  readonly batchSize?: number;
}

/** Elements a dataset may yield (one batch each). */
export type DatasetBatch = { xs: tf.Tensor; ys: tf.Tensor } | { x: tf.Tensor; y: tf.Tensor } | [tf.Tensor, tf.Tensor];

export type DataSource = ArrayData | readonly Batch[] | tf.data.Dataset<DatasetBatch>;

/**
 * A computation that makes passes over the data, written once for both
 * drivers (`BatchStream.run` / `runAsync`): for each pass it yields the
 * function to call on every batch (with the batch's index in the pass) and
 * receives the number of rows seen. Errors are thrown back into it, so its
 * `finally` blocks free what it holds.
 */
export type DataPasses<R> = Generator<(b: Batch, index: number) => void, R, number>;

/** One pass summing `f(b)` over the batches (the partial sum is freed on error); `sum` is undefined for no batches. */
export function* sumOverBatches(f: (b: Batch) => tf.Tensor2D): DataPasses<{ sum: tf.Tensor2D | undefined; rows: number }> {
  let sum: tf.Tensor2D | undefined;
  try {
    const rows = yield (b) => {
      const R = f(b);
      if (sum === undefined) sum = R;
      else {
        const next = tf.add(sum, R) as tf.Tensor2D;
        tf.dispose([sum, R]);
        sum = next;
      }
    };
    return { sum, rows };
  } catch (e) {
    sum?.dispose();
    throw e;
  }
}

/** A batch handed to a consumer; `owned` batches are disposed by the stream after use. */
interface StreamBatch extends Batch {
  readonly owned: boolean;
}

function isDataset(d: unknown): d is tf.data.Dataset<DatasetBatch> {
  return d instanceof tf.data.Dataset || (typeof d === 'object' && d !== null && typeof (d as { iterator?: unknown }).iterator === 'function' && !Array.isArray(d));
}

function checkBatch(where: string, x: unknown, y: unknown): asserts x is tf.Tensor {
  if (!(x instanceof tf.Tensor) || !(y instanceof tf.Tensor)) {
    throw new Error(`${where}: expected tensors x and y, got ${typeof x} and ${typeof y}.`);
  }
  if (x.rank === 0 || y.rank === 0 || x.shape[0] !== y.shape[0]) {
    throw new Error(`${where}: x of shape [${x.shape.join(', ')}] and y of shape [${y.shape.join(', ')}] must have the same number of rows (first axis).`);
  }
}

/** The rows of a dataset element. */
function fromElement(el: unknown, index: number): Batch {
  const where = `dataset element ${index}`;
  let x: unknown;
  let y: unknown;
  if (Array.isArray(el)) [x, y] = el;
  else if (el !== null && typeof el === 'object' && 'xs' in el) ({ xs: x, ys: y } = el as { xs: unknown; ys: unknown });
  else if (el !== null && typeof el === 'object' && 'x' in el) ({ x, y } = el as { x: unknown; y: unknown });
  else {
    throw new Error(`${where}: expected { xs, ys } (as for model.fitDataset), { x, y } or [x, y], got ${typeof el}.`);
  }
  checkBatch(where, x, y);
  return { x: x as tf.Tensor, y: y as tf.Tensor };
}

/** Batches of a data source, with the total number of rows when known upfront. */
export class BatchStream {
  readonly isAsync: boolean;
  /** Rows in total (undefined for datasets until streamed once). */
  readonly count: number | undefined;
  private readonly arrays: readonly Batch[] | undefined;
  private readonly batchSize: number | undefined;
  private readonly dataset: tf.data.Dataset<DatasetBatch> | undefined;
  private sampleIterator: { next(): Promise<IteratorResult<DatasetBatch>> } | undefined;

  constructor(data: DataSource, where = 'data') {
    if (data === undefined || data === null) throw new Error(`${where}: no data given; pass { x, y, batchSize? }, a list of { x, y } batches or a tf.data.Dataset.`);
    if (Array.isArray(data)) {
      if (data.length === 0) throw new Error(`${where}: the list of batches is empty; an operator averaged over data needs at least one data point.`);
      data.forEach((b, i) => {
        checkBatch(`${where} batch ${i}`, (b as Batch).x, (b as Batch).y);
        if ((b as Batch).x.shape[0] === 0) throw new Error(`${where}: batch ${i} is empty (0 rows).`);
      });
      this.arrays = data as readonly Batch[];
      this.count = this.arrays.reduce((s, b) => s + (b.x.shape[0] as number), 0);
      this.isAsync = false;
    } else if (isDataset(data)) {
      this.dataset = data;
      this.count = undefined;
      this.isAsync = true;
    } else {
      const d = data as ArrayData;
      checkBatch(where, d.x, d.y);
      const N = d.x.shape[0] as number;
      if (N === 0) throw new Error(`${where}: the data set is empty (x has 0 rows); an operator averaged over data needs at least one data point.`);
      if (d.batchSize !== undefined && (!Number.isInteger(d.batchSize) || d.batchSize < 1)) {
        throw new Error(`${where}: batchSize must be an integer ≥ 1, got ${d.batchSize}.`);
      }
      this.arrays = [{ x: d.x, y: d.y }];
      this.batchSize = d.batchSize;
      this.count = N;
      this.isAsync = false;
    }
  }

  /** In-memory batches (sync). The consumer must dispose owned batches (or use `forEach`). */
  private *batches(): Generator<StreamBatch> {
    const arrays = this.arrays as readonly Batch[];
    for (const b of arrays) {
      const N = b.x.shape[0] as number;
      const bs = this.batchSize ?? N;
      if (bs >= N) {
        yield { x: b.x, y: b.y, owned: false };
        continue;
      }
      for (let s = 0; s < N; s += bs) {
        const n = Math.min(bs, N - s);
        const x = tf.slice(b.x, s, n);
        const y = tf.slice(b.y, s, n);
        yield { x, y, owned: true };
      }
    }
  }

  private static release(b: StreamBatch): void {
    if (b.owned) tf.dispose([b.x, b.y]);
  }

  /** Calls `fn` on every batch (sync data only); returns the number of rows seen. */
  forEach(fn: (b: Batch) => void): number {
    if (this.isAsync) throw new Error('this data streams a tf.data.Dataset: use the asynchronous API (applyAsync, cgAsync, …).');
    let rows = 0;
    for (const b of this.batches()) {
      try {
        fn(b);
        rows += b.x.shape[0] as number;
      } finally {
        BatchStream.release(b);
      }
    }
    return rows;
  }

  /** Calls `fn` on every batch (any data); returns the number of rows seen. Throws if the data is empty. */
  async forEachAsync(fn: (b: Batch) => void | Promise<void>): Promise<number> {
    if (!this.isAsync) {
      let n = 0;
      for (const b of this.batches()) {
        try {
          await fn(b);
          n += b.x.shape[0] as number;
        } finally {
          BatchStream.release(b);
        }
      }
      return n;
    }
    const it = await (this.dataset as tf.data.Dataset<DatasetBatch>).iterator();
    let rows = 0;
    for (let i = 0; ; i++) {
      const r = await it.next();
      if (r.done) break;
      let b: Batch;
      try {
        b = fromElement(r.value, i);
      } catch (e) {
        tf.dispose(r.value as tf.TensorContainer);
        throw e;
      }
      try {
        if (b.x.shape[0] === 0) continue;
        await fn(b);
        rows += b.x.shape[0] as number;
      } finally {
        tf.dispose(r.value as tf.TensorContainer);
      }
    }
    if (rows === 0) throw new Error('the dataset is empty (it yielded no rows); an operator averaged over data needs at least one data point.');
    return rows;
  }

  /** Drive `passes` with `forEach` (sync data only). */
  run<R>(passes: DataPasses<R>): R {
    let step = passes.next();
    while (!step.done) {
      const f = step.value;
      let rows: number;
      try {
        let i = 0;
        rows = this.forEach((b) => f(b, i++));
      } catch (e) {
        step = passes.throw(e);
        continue;
      }
      step = passes.next(rows);
    }
    return step.value;
  }

  /** Drive `passes` with `forEachAsync` (any data). */
  async runAsync<R>(passes: DataPasses<R>): Promise<R> {
    let step = passes.next();
    while (!step.done) {
      const f = step.value;
      let rows: number;
      try {
        let i = 0;
        rows = await this.forEachAsync((b) => f(b, i++));
      } catch (e) {
        step = passes.throw(e);
        continue;
      }
      step = passes.next(rows);
    }
    return step.value;
  }

  /**
   * A random minibatch of `batchSize` rows without replacement (in-memory
   * data; sampled over all rows). Owned by the caller.
   */
  sample(rng: Rng, batchSize: number): Batch {
    if (this.isAsync) throw new Error('sampling a minibatch from a tf.data.Dataset is asynchronous: use sampleAsync.');
    const arrays = this.arrays as readonly Batch[];
    const N = this.count as number;
    const n = Math.min(batchSize, N);
    // Partial Fisher–Yates over global row indices.
    const idx = new Int32Array(N);
    for (let i = 0; i < N; i++) idx[i] = i;
    for (let i = 0; i < n; i++) {
      const j = i + rng.int(N - i);
      const t = idx[i] as number;
      idx[i] = idx[j] as number;
      idx[j] = t;
    }
    const chosen = Array.from(idx.subarray(0, n)).sort((a, b) => a - b);
    return tf.tidy(() => {
      const xs: tf.Tensor[] = [];
      const ys: tf.Tensor[] = [];
      let start = 0;
      for (const b of arrays) {
        const m = b.x.shape[0] as number;
        const local = chosen.filter((g) => g >= start && g < start + m).map((g) => g - start);
        if (local.length > 0) {
          const ix = tf.tensor1d(local, 'int32');
          xs.push(tf.gather(b.x, ix));
          ys.push(tf.gather(b.y, ix));
        }
        start += m;
      }
      return { x: xs.length === 1 ? (xs[0] as tf.Tensor) : tf.concat(xs), y: ys.length === 1 ? (ys[0] as tf.Tensor) : tf.concat(ys) };
    });
  }

  /** The next batch of the dataset (cycling; any data: in-memory data is sampled with `sample`). Owned by the caller. */
  async sampleAsync(rng: Rng, batchSize: number): Promise<Batch> {
    if (!this.isAsync) return this.sample(rng, batchSize);
    const ds = this.dataset as tf.data.Dataset<DatasetBatch>;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.sampleIterator === undefined) this.sampleIterator = await ds.iterator();
      const r = await this.sampleIterator.next();
      if (r.done) {
        this.sampleIterator = undefined;
        continue;
      }
      try {
        const b = fromElement(r.value, 0);
        return { x: tf.clone(b.x), y: tf.clone(b.y) };
      } finally {
        tf.dispose(r.value as tf.TensorContainer);
      }
    }
    throw new Error('the dataset is empty (it yielded no batches).');
  }
}
