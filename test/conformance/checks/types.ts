import type { LoadedFixture } from '../fixture';

export interface Outcome {
  status: 'pass' | 'fail' | 'skip';
  /** Max relative error (FORMAT.md §8 metric). */
  err?: number;
  tol?: number;
  note?: string;
}

export interface QuantityCheck {
  /** The fixture's quantity key (FORMAT.md §6). */
  readonly name: string;
  /** Whether the fixture holds this quantity. */
  present(lf: { fx: LoadedFixture['fx'] }): boolean;
  run(lf: LoadedFixture): Outcome;
}

/** Outcome from a list of errors and one tolerance. */
export function judge(errs: readonly number[], tol: number, note?: string): Outcome {
  const err = errs.reduce((a, b) => (Number.isNaN(b) ? Infinity : Math.max(a, b)), 0);
  return { status: err <= tol ? 'pass' : 'fail', err, tol, ...(note ? { note } : {}) };
}

export function fixtureQuantity<Q = unknown>(lf: { fx: LoadedFixture['fx'] }, key: string): Q {
  return lf.fx.quantities[key] as Q;
}

export function hasQuantity(key: string) {
  return (lf: { fx: LoadedFixture['fx'] }) => lf.fx.quantities[key] !== undefined;
}
