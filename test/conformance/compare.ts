/**
 * Comparisons against float64 references: the error is measured relative to
 * the largest magnitude of the reference tensor (FORMAT.md §8), since many
 * entries are legitimately (near) zero.
 */
export type Num = ArrayLike<number>;

/** max |a − e| / max |e| (absolute error where the reference is all zero). */
export function maxRelErr(actual: Num, expected: Num): number {
  if (actual.length !== expected.length) return Infinity;
  let scale = 0;
  let err = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i] as number));
    const d = Math.abs((actual[i] as number) - (expected[i] as number));
    if (!(d <= err)) err = Number.isNaN(d) ? Infinity : d;
  }
  return scale > 0 ? err / scale : err;
}

/** max |a − e| / scale for an explicit scale. */
export function maxErrScaled(actual: Num, expected: Num, scale: number): number {
  if (actual.length !== expected.length) return Infinity;
  let err = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs((actual[i] as number) - (expected[i] as number));
    if (!(d <= err)) err = Number.isNaN(d) ? Infinity : d;
  }
  return scale > 0 ? err / scale : err;
}

export function maxAbs(a: Num): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
