/**
 * Training and test data for influence models, streamed in chunks so that a
 * training set never has to be in memory at once:
 *
 *   { x: [N, ...], y: [N, ...], batchSize? }   in memory, chunks of `batchSize`
 *                                              rows (default: the model's chunkSize)
 *   [{ x, y }, …]                              in memory, the given batches
 *   tf.data.Dataset of { xs, ys } / { x, y } / [x, y] batches
 *                                              streamed (async API only)
 *
 * Every chunk is checked against the model's input shape (test/train shape
 * mismatches name both shapes). The caller keeps its tensors; chunks sliced
 * here or read from a dataset are disposed after use.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { ArrayData, Batch, DataSource, DatasetBatch } from '../operators/data';
import { call, type Co } from './coroutine';

export type { Batch, DataSource } from '../operators/data';

export function isDataset(d: unknown): d is tf.data.Dataset<DatasetBatch> {
  return (
    d instanceof tf.data.Dataset ||
    (typeof d === 'object' && d !== null && !Array.isArray(d) && typeof (d as { iterator?: unknown }).iterator === 'function')
  );
}

export function isDataSource(d: unknown): d is DataSource {
  if (d instanceof tf.Tensor) return false;
  if (Array.isArray(d)) return true;
  if (isDataset(d)) return true;
  return typeof d === 'object' && d !== null && (d as ArrayData).x instanceof tf.Tensor;
}

const shapeStr = (s: readonly (number | null)[]) => `[${s.join(', ')}]`;

/** Throws unless x fits the model input `[N, ...inputShape]` and y has N rows. */
export function checkBatch(model: ExtendedModel, x: unknown, y: unknown, what: string): asserts x is tf.Tensor {
  if (!(x instanceof tf.Tensor)) throw new Error(`${what}: inputs must be a tensor [N, ${model.inputShape.join(', ')}], got ${typeof x}.`);
  if (!(y instanceof tf.Tensor)) throw new Error(`${what}: targets must be a tensor with one row per input, got ${typeof y}.`);
  if (x.isDisposed || y.isDisposed) throw new Error(`${what}: the inputs or targets were disposed.`);
  const want = model.inputShape;
  if (x.rank !== want.length + 1 || x.shape.slice(1).some((d: number, i: number) => d !== want[i])) {
    throw new Error(
      `${what}: inputs of shape ${shapeStr(x.shape)} do not fit the model input [N, ${want.join(', ')}]; the test and training inputs must both have the model's input shape.`,
    );
  }
  if (y.rank === 0 || y.shape[0] !== x.shape[0]) {
    throw new Error(`${what}: targets of shape ${shapeStr(y.shape)} do not match inputs of shape ${shapeStr(x.shape)} (one target row per input row).`);
  }
  if (x.shape[0] === 0) throw new Error(`${what}: the data is empty (0 rows); pass at least one data point.`);
}

/** Validate in-memory data upfront (datasets are checked chunk by chunk). */
export function checkSource(model: ExtendedModel, data: DataSource, what: string): void {
  if (data === undefined || data === null) {
    throw new Error(`${what}: no data given; pass { x, y, batchSize? }, a list of { x, y } batches or a tf.data.Dataset.`);
  }
  if (isDataset(data)) return;
  if (Array.isArray(data)) {
    if (data.length === 0) throw new Error(`${what}: the list of batches is empty; pass at least one data point.`);
    data.forEach((b: Batch, i) => checkBatch(model, b?.x, b?.y, `${what} (batch ${i})`));
    return;
  }
  const d = data as ArrayData;
  if (typeof d !== 'object' || !('x' in d)) {
    throw new Error(`${what}: expected { x, y, batchSize? }, a list of { x, y } batches or a tf.data.Dataset, got ${typeof data}.`);
  }
  checkBatch(model, d.x, d.y, what);
  if (d.batchSize !== undefined && (!Number.isInteger(d.batchSize) || d.batchSize < 1)) {
    throw new Error(`${what}: batchSize must be an integer ≥ 1, got ${d.batchSize}.`);
  }
}

/** In-memory `{ x, y }` without a batch size gets `chunkSize` (operators stream it in chunks too). */
export function withChunks(data: DataSource, chunkSize: number): DataSource {
  if (Array.isArray(data) || isDataset(data)) return data;
  const d = data as ArrayData;
  return d.batchSize === undefined ? { x: d.x, y: d.y, batchSize: chunkSize } : d;
}

/** Rows of in-memory data (undefined for datasets). */
export function countRows(data: DataSource): number | undefined {
  if (isDataset(data)) return undefined;
  if (Array.isArray(data)) return data.reduce((s: number, b: Batch) => s + (b.x.shape[0] as number), 0);
  return (data as ArrayData).x.shape[0] as number;
}

function fromElement(el: unknown, index: number): Batch {
  const where = `dataset element ${index}`;
  if (Array.isArray(el)) return { x: el[0] as tf.Tensor, y: el[1] as tf.Tensor };
  if (el !== null && typeof el === 'object' && 'xs' in el) return { x: (el as unknown as { xs: tf.Tensor }).xs, y: (el as unknown as { ys: tf.Tensor }).ys };
  if (el !== null && typeof el === 'object' && 'x' in el) return { x: (el as Batch).x, y: (el as Batch).y };
  throw new Error(`${where}: expected { xs, ys } (as for model.fitDataset), { x, y } or [x, y], got ${typeof el}.`);
}

/**
 * Calls `fn(chunk, offset)` on every chunk (offset = rows before it); returns
 * the number of rows. Chunks sliced or read here are disposed after `fn`.
 */
export function* eachChunk(
  model: ExtendedModel,
  data: DataSource,
  chunkSize: number,
  what: string,
  fn: (b: Batch, offset: number) => Co<void>,
): Co<number> {
  let rows = 0;
  if (isDataset(data)) {
    const it = yield* call(`reading ${what}`, undefined, () => data.iterator());
    for (let i = 0; ; i++) {
      const r = yield* call(`reading ${what}`, undefined, () => it.next());
      if (r.done) break;
      try {
        const b = fromElement(r.value, i);
        if (b.x instanceof tf.Tensor && b.x.rank > 0 && b.x.shape[0] === 0) continue;
        checkBatch(model, b.x, b.y, `${what} (dataset element ${i})`);
        yield* fn(b, rows);
        rows += b.x.shape[0] as number;
      } finally {
        tf.dispose(r.value as tf.TensorContainer);
      }
    }
    if (rows === 0) throw new Error(`${what}: the dataset is empty (it yielded no rows); pass at least one data point.`);
    return rows;
  }
  const batches: readonly (Batch & { batchSize?: number })[] = Array.isArray(data) ? data : [data as ArrayData];
  for (const b of batches) {
    checkBatch(model, b.x, b.y, what);
    const N = b.x.shape[0] as number;
    const bs = Array.isArray(data) ? N : ((data as ArrayData).batchSize ?? chunkSize);
    if (bs >= N) {
      yield* fn({ x: b.x, y: b.y }, rows);
      rows += N;
      continue;
    }
    for (let s = 0; s < N; s += bs) {
      const n = Math.min(bs, N - s);
      const x = tf.slice(b.x, s, n);
      const y = tf.slice(b.y, s, n);
      try {
        yield* fn({ x, y }, rows);
      } finally {
        tf.dispose([x, y]);
      }
      rows += n;
    }
  }
  return rows;
}
