/**
 * Index sets of the flat parameter vector, as sorted disjoint half-open
 * ranges `[start, end)`. Parameter groups are unions of contiguous ranges, so
 * restricting or embedding a stack `[K, D]` is a few slices and concats;
 * scattered index lists fall back to one `gather`.
 */
import * as tf from '@tensorflow/tfjs';

export type IndexRange = readonly [start: number, end: number];
/** Sorted, disjoint, non-empty ranges. */
export type IndexSet = readonly IndexRange[];
/** What users may pass: ranges, or a list of indices. */
export type IndexSpec = IndexSet | readonly number[];

/** Ranges with more pieces than this use one gather instead of slice/concat. */
const MAX_SLICES = 16;

function isRangeList(spec: IndexSpec): spec is IndexSet {
  return spec.length > 0 && Array.isArray(spec[0]);
}

/** Normalise an index spec against a vector of length `size`: sorted, merged ranges; throws on bad entries. */
export function toIndexSet(spec: IndexSpec, size: number, what = 'indices'): IndexSet {
  if (!Array.isArray(spec) || spec.length === 0) {
    throw new Error(`${what}: expected a non-empty list of indices or [start, end) ranges.`);
  }
  const ranges: [number, number][] = [];
  if (isRangeList(spec)) {
    for (const r of spec) {
      const [a, b] = r;
      if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b > size || a >= b) {
        throw new Error(`${what}: range [${a}, ${b}) is not a non-empty range inside [0, ${size}).`);
      }
      ranges.push([a, b]);
    }
  } else {
    for (const i of spec as readonly number[]) {
      if (!Number.isInteger(i) || i < 0 || i >= size) {
        throw new Error(`${what}: index ${i} is not an integer in [0, ${size}).`);
      }
      ranges.push([i, i + 1]);
    }
  }
  ranges.sort((p, q) => p[0] - q[0]);
  const merged: [number, number][] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && r[0] < last[1]) {
      throw new Error(`${what}: index ${r[0]} appears twice; indices must be distinct.`);
    }
    if (last !== undefined && r[0] === last[1]) last[1] = r[1];
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

export function indexSetSize(set: IndexSet): number {
  return set.reduce((s, [a, b]) => s + b - a, 0);
}

/** The indices of a set as an array. */
export function indexSetToArray(set: IndexSet): number[] {
  const out: number[] = [];
  for (const [a, b] of set) for (let i = a; i < b; i++) out.push(i);
  return out;
}

/** Whether two sets share an index. */
export function indexSetsOverlap(a: IndexSet, b: IndexSet): boolean {
  for (const [s, e] of a) for (const [t, f] of b) if (s < f && t < e) return true;
  return false;
}

/** Columns `set` of a stack `[K, D]` → `[K, |set|]` (new tensor). */
export function extractColumns(V: tf.Tensor2D, set: IndexSet): tf.Tensor2D {
  const [K, D] = V.shape;
  return tf.tidy(() => {
    if (set.length === 1 && (set[0] as IndexRange)[0] === 0 && (set[0] as IndexRange)[1] === D) return tf.clone(V);
    if (set.length <= MAX_SLICES) {
      const parts = set.map(([a, b]) => tf.slice(V, [0, a], [K, b - a]));
      return (parts.length === 1 ? parts[0] : tf.concat(parts, 1)) as tf.Tensor2D;
    }
    return tf.gather(V, tf.tensor1d(indexSetToArray(set), 'int32'), 1) as tf.Tensor2D;
  });
}

/** Embed `[K, |set|]` into `[K, D]` with zeros outside `set` (new tensor). */
export function embedColumns(W: tf.Tensor2D, set: IndexSet, D: number): tf.Tensor2D {
  const K = W.shape[0];
  return tf.tidy(() => {
    if (set.length <= MAX_SLICES) {
      const parts: tf.Tensor[] = [];
      let pos = 0;
      let col = 0;
      for (const [a, b] of set) {
        if (a > pos) parts.push(tf.zeros([K, a - pos]));
        parts.push(tf.slice(W, [0, col], [K, b - a]));
        col += b - a;
        pos = b;
      }
      if (pos < D) parts.push(tf.zeros([K, D - pos]));
      return (parts.length === 1 ? tf.clone(parts[0] as tf.Tensor) : tf.concat(parts, 1)) as tf.Tensor2D;
    }
    // Gather from [W | 0]: index |set| is the zero column.
    const n = W.shape[1];
    const map = new Int32Array(D).fill(n);
    let col = 0;
    for (const [a, b] of set) for (let i = a; i < b; i++) map[i] = col++;
    return tf.gather(tf.concat([W, tf.zeros([K, 1])], 1), tf.tensor1d(map, 'int32'), 1) as tf.Tensor2D;
  });
}
