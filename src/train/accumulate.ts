/**
 * Accumulation across steps: exponential moving averages and running sums
 * of step results, as a K-FAC-style optimizer or a monitor needs them.
 *
 * A value is any nesting of tensors, `Float64Array`s (e.g. Gram
 * eigenvalues), numbers, arrays and plain objects: a Kronecker-factor pair
 * `{ A, G }`, a per-parameter dictionary `result.forExtension(kfac)`, a list
 * of group results `{ evals: number[] }`, ... Every update must have the same
 * structure and shapes as the first one.
 *
 * Ownership: `update(v)` only reads `v` (the caller keeps and disposes it).
 * The accumulator owns its state: `value()` / `mean()` return tensors that
 * stay valid until the next `update`, `reset` or `dispose` (clone what must
 * live longer; never dispose them). State tensors are `tf.keep`-ed, so
 * updating inside a `tf.tidy` (or inside a training event) is safe.
 * Tensors are accumulated in float32 on the backend; numbers and
 * Float64Arrays in float64 on the CPU.
 */
import * as tf from '@tensorflow/tfjs';
import { tensorsIn } from '../utils/tensors';

/** What can be accumulated. */
export type Accumulable =
  | tf.Tensor
  | Float64Array
  | number
  | readonly Accumulable[]
  | { readonly [key: string]: Accumulable | undefined };

/** `a·state + b·x`, entry by entry (state undefined: `b·x`). */
type Combine = (state: Accumulable | undefined, x: Accumulable, path: string) => Accumulable;

function describe(v: unknown): string {
  if (v instanceof tf.Tensor) return `a tensor of shape [${v.shape.join(', ')}]`;
  if (v instanceof Float64Array) return `a Float64Array of length ${v.length}`;
  if (typeof v === 'number') return 'a number';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (v === null) return 'null';
  if (typeof v === 'object') return `an object with keys {${Object.keys(v as object).join(', ')}}`;
  return typeof v;
}

function pathStr(path: string): string {
  return path === '' ? 'the value' : `the value at '${path}'`;
}

/** Map `x` (and the matching state) entry by entry. */
function combineAll(
  owner: string,
  state: Accumulable | undefined,
  x: Accumulable,
  a: number,
  b: number,
  path = '',
): Accumulable {
  const mismatch = (): Error =>
    new Error(
      `${owner}.update: ${pathStr(path)} is ${describe(x)} but the accumulated value is ${describe(state)}; every update must have the structure and shapes of the first (call reset() to start over).`,
    );
  if (x instanceof tf.Tensor) {
    if (state !== undefined && !(state instanceof tf.Tensor)) throw mismatch();
    if (state !== undefined && (state.rank !== x.rank || state.shape.some((d, i) => d !== x.shape[i]))) throw mismatch();
    const next = tf.tidy(() => {
      const xf = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
      const bx = b === 1 ? tf.clone(xf) : tf.mul(xf, b);
      return state === undefined ? bx : tf.add(a === 1 ? state : tf.mul(state, a), bx);
    });
    return tf.keep(next);
  }
  if (x instanceof Float64Array) {
    if (state !== undefined && !(state instanceof Float64Array && state.length === x.length)) throw mismatch();
    const out = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = (state === undefined ? 0 : a * (state[i] as number)) + b * (x[i] as number);
    return out;
  }
  if (typeof x === 'number') {
    if (state !== undefined && typeof state !== 'number') throw mismatch();
    return (state === undefined ? 0 : a * state) + b * x;
  }
  if (Array.isArray(x)) {
    if (state !== undefined && !(Array.isArray(state) && state.length === x.length)) throw mismatch();
    const s = state as readonly Accumulable[] | undefined;
    return x.map((v, i) => combineAll(owner, s?.[i], v as Accumulable, a, b, path === '' ? `${i}` : `${path}.${i}`));
  }
  if (x !== null && typeof x === 'object' && !ArrayBuffer.isView(x)) {
    const xo = x as { readonly [key: string]: Accumulable | undefined };
    const keys = Object.keys(xo).filter((k) => xo[k] !== undefined);
    if (state !== undefined) {
      if (state === null || typeof state !== 'object' || Array.isArray(state) || state instanceof tf.Tensor || ArrayBuffer.isView(state)) {
        throw mismatch();
      }
      const so = state as { readonly [key: string]: Accumulable | undefined };
      const sk = Object.keys(so).filter((k) => so[k] !== undefined);
      if (sk.length !== keys.length || keys.some((k) => so[k] === undefined)) throw mismatch();
    }
    const so = state as { readonly [key: string]: Accumulable | undefined } | undefined;
    const out: Record<string, Accumulable> = {};
    for (const k of keys) out[k] = combineAll(owner, so?.[k], xo[k] as Accumulable, a, b, path === '' ? k : `${path}.${k}`);
    return out;
  }
  throw new Error(
    `${owner}.update: ${pathStr(path)} is ${describe(x)}; accumulate tensors, Float64Arrays, numbers, or arrays / plain objects of them.`,
  );
}

/** `scale · value` as a new owned structure. */
function scaled(value: Accumulable, scale: number): Accumulable {
  if (value instanceof tf.Tensor) return tf.keep(tf.mul(value, scale));
  if (value instanceof Float64Array) return value.map((v) => v * scale);
  if (typeof value === 'number') return value * scale;
  if (Array.isArray(value)) return value.map((v) => scaled(v as Accumulable, scale));
  const out: Record<string, Accumulable> = {};
  for (const [k, v] of Object.entries(value as Record<string, Accumulable | undefined>)) if (v !== undefined) out[k] = scaled(v, scale);
  return out;
}

function disposeValue(v: Accumulable | undefined): void {
  if (v !== undefined) tf.dispose(tensorsIn(v));
}

/** Common state handling of the accumulators. */
abstract class Accumulator<T extends Accumulable> {
  protected state: Accumulable | undefined;
  protected derived: Accumulable | undefined;
  private n = 0;
  private disposed = false;

  protected abstract readonly owner: string;

  /** Number of updates since construction or the last `reset()`. */
  get count(): number {
    return this.n;
  }

  protected check(): void {
    if (this.disposed) throw new Error(`${this.owner}: this accumulator was disposed.`);
  }

  protected push(combine: Combine, x: T): void {
    this.check();
    if (x === undefined || x === null) throw new Error(`${this.owner}.update: the value is ${x}; pass a tensor, Float64Array, number, or arrays / objects of them.`);
    const next = combine(this.state, x, '');
    disposeValue(this.state);
    disposeValue(this.derived);
    this.derived = undefined;
    this.state = next;
    this.n += 1;
  }

  protected current(): Accumulable {
    this.check();
    if (this.state === undefined) throw new Error(`${this.owner}: no value yet; call update(value) first (count is 0).`);
    return this.state;
  }

  /** Forget every update (count 0); frees the state. */
  reset(): void {
    this.check();
    disposeValue(this.state);
    disposeValue(this.derived);
    this.state = undefined;
    this.derived = undefined;
    this.n = 0;
  }

  /** Free the state; the accumulator cannot be used afterwards. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    disposeValue(this.state);
    disposeValue(this.derived);
    this.state = undefined;
    this.derived = undefined;
    this.disposed = true;
  }
}

export interface ExponentialMovingAverageOptions {
  /** Decay β in [0, 1): `m_t = β·m_{t−1} + (1 − β)·x_t`. Default 0.95. */
  decay?: number;
  /**
   * Divide by `1 − β^t` (Adam's bias correction), so that the average of
   * t equal values is that value; default true. Without it the average
   * starts from zero (`m_1 = (1 − β)·x_1`).
   */
  biasCorrection?: boolean;
}

/**
 * Exponential moving average `m_t = β·m_{t−1} + (1 − β)·x_t`, `m_0 = 0`;
 * `value()` is `m_t / (1 − β^t)` with bias correction (default), else `m_t`.
 */
export class ExponentialMovingAverage<T extends Accumulable = Accumulable> extends Accumulator<T> {
  protected readonly owner = 'ExponentialMovingAverage';
  readonly decay: number;
  readonly biasCorrection: boolean;

  constructor(options: ExponentialMovingAverageOptions = {}) {
    super();
    const decay = options.decay ?? 0.95;
    if (typeof decay !== 'number' || !(decay >= 0 && decay < 1)) {
      throw new Error(`ExponentialMovingAverage: option 'decay' must be a number in [0, 1), got ${String(decay)}.`);
    }
    this.decay = decay;
    this.biasCorrection = options.biasCorrection ?? true;
  }

  /** Fold one value in (read only; the caller keeps ownership of `x`). */
  update(x: T): void {
    const beta = this.decay;
    this.push((s, v) => combineAll(this.owner, s, v, beta, 1 - beta), x);
  }

  /** The (bias-corrected) average; owned by the accumulator, valid until the next update/reset/dispose. */
  value(): T {
    const m = this.current();
    if (!this.biasCorrection) return m as T;
    if (this.derived === undefined) this.derived = scaled(m, 1 / (1 - this.decay ** this.count));
    return this.derived as T;
  }
}

/** Plain running sum `Σ_t x_t` (and mean `Σ_t x_t / t`), resettable. */
export class RunningSum<T extends Accumulable = Accumulable> extends Accumulator<T> {
  protected readonly owner = 'RunningSum';

  /** Add one value (read only; the caller keeps ownership of `x`). */
  update(x: T): void {
    this.push((s, v) => combineAll(this.owner, s, v, 1, 1), x);
  }

  /** The sum; owned by the accumulator, valid until the next update/reset/dispose. */
  value(): T {
    return this.current() as T;
  }

  /** The mean `Σ_t x_t / count`; owned by the accumulator, valid until the next update/reset/dispose. */
  mean(): T {
    const s = this.current();
    if (this.derived === undefined) this.derived = scaled(s, 1 / this.count);
    return this.derived as T;
  }
}
