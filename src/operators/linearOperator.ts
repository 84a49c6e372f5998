/**
 * Matrix-free linear operators on flat vectors (the flat parameter vector of
 * FORMAT.md §5 for curvature operators).
 *
 * Vectors are float32 tensors `[D]`, or stacks `[K, D]` of K vectors (one per
 * row). `apply(v)` returns a new tensor of v's shape and never disposes or
 * mutates v. Operators that stream a `tf.data.Dataset` are asynchronous
 * (`isAsync`): use `applyAsync`, which works on every operator; `apply`
 * works on every synchronous one.
 *
 * Composition (`scale`, `add`, `damp`, `restrict`, `blockDiagonal`) returns
 * views that do not own their operands: disposing a view never disposes the
 * operator it wraps. Operators returned by `inverse(damping)` own what they
 * create (dispose them when done).
 */
import * as tf from '@tensorflow/tfjs';
import { eigh } from '../linalg/eigh';
import { checkInteger } from '../utils/options';
import {
  embedColumns,
  extractColumns,
  indexSetSize,
  indexSetsOverlap,
  toIndexSet,
  type IndexSet,
  type IndexSpec,
} from './indices';

/** Largest D for which `toDense` builds the explicit D×D matrix. */
export const MAX_DENSE_SIZE = 8192;

function shapeStr(t: { shape: readonly number[] }): string {
  return `[${t.shape.join(', ')}]`;
}

/** Validate `v` (`[D]` or `[K, D]`, float32) and view it as a stack `[K, D]` (a new tensor object). */
export function toStack(name: string, size: number, v: tf.Tensor): tf.Tensor2D {
  if (!(v instanceof tf.Tensor)) {
    throw new Error(`${name}: expected a tensor [${size}] or a stack [K, ${size}], got ${typeof v}.`);
  }
  if (v.isDisposed) throw new Error(`${name}: the input tensor was disposed.`);
  const okShape = (v.rank === 1 && v.shape[0] === size) || (v.rank === 2 && v.shape[1] === size && (v.shape[0] as number) > 0);
  if (!okShape) {
    throw new Error(`${name}: input of shape ${shapeStr(v)} does not fit; expected [${size}] or [K, ${size}] (the operator acts on vectors of length ${size}).`);
  }
  if (v.dtype !== 'float32') {
    throw new Error(`${name}: input has dtype ${v.dtype}; pass float32 (e.g. tf.cast(v, 'float32')).`);
  }
  return tf.reshape(v, [v.rank === 1 ? 1 : (v.shape[0] as number), size]);
}

/** Back to the caller's rank: `[1, D] → [D]` for vector inputs (consumes `R`). */
export function fromStack(R: tf.Tensor2D, rank: number): tf.Tensor {
  if (rank !== 1) return R;
  const out = tf.reshape(R, [R.shape[1]]);
  R.dispose();
  return out;
}

/** `[K, D]` stack of unit vectors e_{j0}, …, e_{j1−1}. */
function unitRows(j0: number, j1: number, D: number): tf.Tensor2D {
  const buf = new Float32Array((j1 - j0) * D);
  for (let j = j0; j < j1; j++) buf[(j - j0) * D + j] = 1;
  return tf.tensor2d(buf, [j1 - j0, D]);
}

function checkDamping(what: string, damping: number, strict: boolean): void {
  if (typeof damping !== 'number' || !Number.isFinite(damping) || (strict ? !(damping > 0) : !(damping >= 0))) {
    throw new Error(`${what}: damping must be a finite number ${strict ? '> 0' : '≥ 0'}, got ${damping}.`);
  }
}

export interface ToDenseOptions {
  /** Columns computed per operator application (default 32). */
  chunk?: number;
}

export abstract class LinearOperator {
  /** Vector length D. */
  abstract readonly size: number;
  /** Name used in messages. */
  abstract readonly name: string;

  /** Whether the operator is symmetric (default true). */
  get symmetric(): boolean {
    return true;
  }

  /** True when products need `applyAsync` (the operator streams a tf.data.Dataset). */
  get isAsync(): boolean {
    return false;
  }

  /** Whether `inverse(damping)` has a closed form. */
  get hasInverse(): boolean {
    return false;
  }

  /**
   * The product with a stack `[K, D] → [K, D]` (no validation; `apply` is the
   * checked entry point). Returns a new tensor; never disposes V.
   */
  abstract matmat(V: tf.Tensor2D): tf.Tensor2D;

  /** Asynchronous `matmat` (operators that stream data override it). */
  async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    return this.matmat(V);
  }

  /** `A v` for `v [D]` or `A vᵀ` row-wise for a stack `[K, D]`. */
  apply(v: tf.Tensor): tf.Tensor {
    const V = toStack(this.name, this.size, v);
    try {
      return fromStack(this.matmat(V), v.rank);
    } finally {
      V.dispose();
    }
  }

  /** `apply` for every operator, including those that stream a dataset. */
  async applyAsync(v: tf.Tensor): Promise<tf.Tensor> {
    const V = toStack(this.name, this.size, v);
    try {
      return fromStack(await this.matmatAsync(V), v.rank);
    } finally {
      V.dispose();
    }
  }

  private checkDenseSize(): void {
    if (this.size > MAX_DENSE_SIZE) {
      throw new Error(
        `${this.name}.toDense: D = ${this.size} is too large for an explicit matrix (D² = ${(this.size * this.size).toExponential(2)} numbers, limit D ≤ ${MAX_DENSE_SIZE}); use apply / the solvers instead.`,
      );
    }
  }

  private static chunkOf(options: ToDenseOptions): number {
    return checkInteger('toDense', 'chunk', options.chunk ?? 32, 1);
  }

  /** Store the columns `A e_j` (rows of R) into the row-major matrix. */
  private static storeColumns(out: Float64Array, R: tf.Tensor2D, j0: number, D: number): void {
    const r = R.dataSync();
    const k = R.shape[0];
    for (let c = 0; c < k; c++) {
      const j = j0 + c;
      for (let i = 0; i < D; i++) {
        const x = r[c * D + i] as number;
        if (!Number.isFinite(x)) {
          throw new Error(`toDense: the operator returned ${x} in column ${j}; check the model, data and damping for NaN/Inf.`);
        }
        out[i * D + j] = x;
      }
    }
  }

  /** The explicit matrix, row-major `D×D` float64 (D ≤ MAX_DENSE_SIZE), by applying the operator to unit vectors. */
  toDense(options: ToDenseOptions = {}): Float64Array {
    this.checkDenseSize();
    const D = this.size;
    const chunk = LinearOperator.chunkOf(options);
    const out = new Float64Array(D * D);
    for (let j0 = 0; j0 < D; j0 += chunk) {
      const j1 = Math.min(D, j0 + chunk);
      const E = unitRows(j0, j1, D);
      try {
        const R = this.matmat(E);
        try {
          LinearOperator.storeColumns(out, R, j0, D);
        } finally {
          R.dispose();
        }
      } finally {
        E.dispose();
      }
    }
    return out;
  }

  /** `toDense` for every operator, including those that stream a dataset. */
  async toDenseAsync(options: ToDenseOptions = {}): Promise<Float64Array> {
    this.checkDenseSize();
    const D = this.size;
    const chunk = LinearOperator.chunkOf(options);
    const out = new Float64Array(D * D);
    for (let j0 = 0; j0 < D; j0 += chunk) {
      const j1 = Math.min(D, j0 + chunk);
      const E = unitRows(j0, j1, D);
      try {
        const R = await this.matmatAsync(E);
        try {
          LinearOperator.storeColumns(out, R, j0, D);
        } finally {
          R.dispose();
        }
      } finally {
        E.dispose();
      }
    }
    return out;
  }

  /**
   * `(A + damping·I)⁻¹` as an operator, where a closed form exists (dense,
   * diagonal, identity, low-rank, Kronecker, EKFAC, and block-diagonal /
   * scaled / damped compositions of those). Otherwise throws: solve with `cg`.
   */
  inverse(damping: number): LinearOperator {
    void damping;
    throw new Error(
      `${this.name} has no closed-form inverse; solve (A + λI)x = b with cg / blockCg, or build a low-rank approximation (arnoldi, nystromSketch) and invert that.`,
    );
  }

  /** `c·A` (a view). */
  scale(c: number): LinearOperator {
    return new ScaledOperator(this, c);
  }

  /** `A + B` (a view). */
  add(other: LinearOperator): LinearOperator {
    return new SumOperator([this, other]);
  }

  /** `A + λI` (a view), λ ≥ 0. */
  damp(damping: number): LinearOperator {
    return new DampedOperator(this, damping);
  }

  /** `Pᵀ A P` on the coordinates `indices` (ranges `[start, end)` or a list), in increasing order. */
  restrict(indices: IndexSpec): LinearOperator {
    return new RestrictedOperator(this, toIndexSet(indices, this.size, `${this.name}.restrict`));
  }

  /**
   * The block-diagonal part of A for disjoint coordinate groups (e.g. the
   * parameters of each layer, `paramGroups(model, 'layer')`): entries
   * between different groups are 0, and so are rows/columns outside every group.
   */
  blockDiagonal(groups: readonly IndexSpec[]): LinearOperator {
    const sets = groups.map((g, i) => toIndexSet(g, this.size, `${this.name}.blockDiagonal group ${i}`));
    return new BlockDiagonalOperator(
      sets.map((s) => this.restrict(s)),
      { sets, size: this.size, owns: true },
    );
  }

  /** Free the tensors this operator owns (views own none). Idempotent. */
  dispose(): void {}

  /** An operator from a product function (`fn` gets `[D]` vectors, or stacks `[K, D]` with `stacked: true`). */
  static fromMatvec(size: number, fn: Matvec, options: MatvecOptions = {}): LinearOperator {
    return new MatvecOperator(size, fn, options);
  }
}

/** A product function: `v ↦ A v` (sync or async). */
export type Matvec = (v: tf.Tensor) => tf.Tensor | Promise<tf.Tensor>;

export interface MatvecOptions {
  /** `fn` accepts stacks `[K, D]` (default false: called once per vector). */
  stacked?: boolean;
  /** Default true. */
  symmetric?: boolean;
  /** `fn` returns promises (default false). */
  async?: boolean;
  name?: string;
}

/** Wraps a user product function. The results of `fn` are owned (disposed) by the operator's caller. */
export class MatvecOperator extends LinearOperator {
  readonly name: string;
  private readonly stacked: boolean;
  private readonly sym: boolean;
  private readonly asyncFn: boolean;

  constructor(
    readonly size: number,
    private readonly fn: Matvec,
    options: MatvecOptions = {},
  ) {
    super();
    if (!Number.isInteger(size) || size < 1) throw new Error(`fromMatvec: size must be an integer ≥ 1, got ${size}.`);
    if (typeof fn !== 'function') throw new Error('fromMatvec: fn must be a function v ↦ A·v.');
    this.name = options.name ?? 'MatvecOperator';
    this.stacked = options.stacked ?? false;
    this.sym = options.symmetric ?? true;
    this.asyncFn = options.async ?? false;
  }

  override get symmetric(): boolean {
    return this.sym;
  }

  override get isAsync(): boolean {
    return this.asyncFn;
  }

  private check(r: unknown, want: readonly number[]): tf.Tensor {
    if (!(r instanceof tf.Tensor)) {
      if (r instanceof Promise) {
        throw new Error(`${this.name}: the product function returned a Promise; create the operator with { async: true } and use applyAsync / the async solvers.`);
      }
      throw new Error(`${this.name}: the product function must return a tensor, got ${typeof r}.`);
    }
    if (r.size !== want.reduce((a, b) => a * b, 1)) {
      r.dispose();
      throw new Error(`${this.name}: the product function returned shape ${shapeStr(r)}, expected [${want.join(', ')}].`);
    }
    return r;
  }

  private rows(V: tf.Tensor2D): tf.Tensor[] {
    const K = V.shape[0];
    return K === 1 ? [tf.reshape(V, [this.size])] : tf.unstack(V);
  }

  private gather(outs: tf.Tensor[], K: number): tf.Tensor2D {
    const R = tf.tidy(() => tf.reshape(K === 1 ? (outs[0] as tf.Tensor) : tf.stack(outs), [K, this.size]) as tf.Tensor2D);
    tf.dispose(outs);
    return R;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    if (this.asyncFn) throw new Error(`${this.name} is asynchronous; use applyAsync / the async solvers.`);
    if (this.stacked) {
      const r = this.check(this.fn(V), V.shape);
      const R = tf.reshape(r, V.shape) as tf.Tensor2D;
      r.dispose();
      return R;
    }
    const rows = this.rows(V);
    const outs: tf.Tensor[] = [];
    try {
      for (const v of rows) outs.push(this.check(this.fn(v), [this.size]));
    } catch (e) {
      tf.dispose(outs);
      throw e;
    } finally {
      tf.dispose(rows);
    }
    return this.gather(outs, V.shape[0]);
  }

  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    if (this.stacked) {
      const r = this.check(await this.fn(V), V.shape);
      const R = tf.reshape(r, V.shape) as tf.Tensor2D;
      r.dispose();
      return R;
    }
    const rows = this.rows(V);
    const outs: tf.Tensor[] = [];
    try {
      for (const v of rows) outs.push(this.check(await this.fn(v), [this.size]));
    } catch (e) {
      tf.dispose(outs);
      throw e;
    } finally {
      tf.dispose(rows);
    }
    return this.gather(outs, V.shape[0]);
  }
}

// ---------------------------------------------------------------------------
// Explicit operators.

/** `c·I`. */
export class IdentityOperator extends LinearOperator {
  readonly name = 'IdentityOperator';
  constructor(
    readonly size: number,
    readonly c = 1,
  ) {
    super();
    if (!Number.isInteger(size) || size < 1) throw new Error(`IdentityOperator: size must be an integer ≥ 1, got ${size}.`);
    if (!Number.isFinite(c)) throw new Error(`IdentityOperator: the scale must be finite, got ${c}.`);
  }
  matmat(V: tf.Tensor2D): tf.Tensor2D {
    return this.c === 1 ? tf.clone(V) : tf.mul(V, this.c);
  }
  override get hasInverse(): boolean {
    return true;
  }
  override inverse(damping: number): LinearOperator {
    checkDamping('IdentityOperator.inverse', damping, false);
    if (this.c + damping === 0) throw new Error('IdentityOperator.inverse: c + damping = 0, the matrix is singular; use damping > 0.');
    return new IdentityOperator(this.size, 1 / (this.c + damping));
  }
}

/** `diag(d)`; owns a copy of d. */
export class DiagonalOperator extends LinearOperator {
  readonly name = 'DiagonalOperator';
  readonly size: number;
  readonly diagonal: tf.Tensor1D;

  constructor(d: tf.Tensor | ArrayLike<number>) {
    super();
    const t = d instanceof tf.Tensor ? tf.cast(tf.reshape(d, [-1]), 'float32') : tf.tensor1d(Float32Array.from(d as ArrayLike<number>));
    this.diagonal = tf.keep(t as tf.Tensor1D);
    this.size = this.diagonal.shape[0];
    if (this.size < 1) {
      this.diagonal.dispose();
      throw new Error('DiagonalOperator: the diagonal is empty.');
    }
  }
  matmat(V: tf.Tensor2D): tf.Tensor2D {
    return tf.mul(V, this.diagonal);
  }
  override get hasInverse(): boolean {
    return true;
  }
  override inverse(damping: number): LinearOperator {
    checkDamping('DiagonalOperator.inverse', damping, false);
    const d = this.diagonal.dataSync();
    const inv = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) {
      const s = (d[i] as number) + damping;
      if (s === 0 || !Number.isFinite(s)) {
        throw new Error(`DiagonalOperator.inverse: diagonal entry ${i} + damping is ${s}; the matrix is singular — increase the damping.`);
      }
      inv[i] = 1 / s;
    }
    return new DiagonalOperator(inv);
  }
  override dispose(): void {
    this.diagonal.dispose();
  }
}

/** An explicit matrix (row-major D×D); float32 products, float64 copy for `toDense` and `inverse`. */
export class DenseOperator extends LinearOperator {
  readonly name = 'DenseOperator';
  readonly size: number;
  private readonly m: Float64Array;
  private readonly mt: tf.Tensor2D; // Mᵀ: rows of V·Mᵀ are (M v)ᵀ
  private readonly sym: boolean;
  private disposed = false;

  constructor(matrix: ArrayLike<number> | tf.Tensor2D, size?: number) {
    super();
    let data: ArrayLike<number>;
    if (matrix instanceof tf.Tensor) {
      if (matrix.rank !== 2 || matrix.shape[0] !== matrix.shape[1]) {
        throw new Error(`DenseOperator: expected a square matrix, got shape ${shapeStr(matrix)}.`);
      }
      data = matrix.dataSync();
      size = matrix.shape[0];
    } else {
      data = matrix;
      size = size ?? Math.round(Math.sqrt(matrix.length));
      if (size * size !== matrix.length) {
        throw new Error(`DenseOperator: a row-major ${size}×${size} matrix needs ${size * size} numbers, got ${matrix.length}.`);
      }
    }
    if (size < 1) throw new Error('DenseOperator: the matrix is empty.');
    this.size = size;
    this.m = Float64Array.from(data);
    let maxAbs = 0;
    let asym = 0;
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const a = this.m[i * size + j] as number;
        if (!Number.isFinite(a)) throw new Error(`DenseOperator: entry [${i}, ${j}] is ${a}; the matrix must be finite.`);
        maxAbs = Math.max(maxAbs, Math.abs(a));
        asym = Math.max(asym, Math.abs(a - (this.m[j * size + i] as number)));
      }
    }
    this.sym = asym <= 1e-6 * maxAbs;
    const t = new Float32Array(size * size);
    for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) t[j * size + i] = this.m[i * size + j] as number;
    this.mt = tf.keep(tf.tensor2d(t, [size, size]));
  }

  override get symmetric(): boolean {
    return this.sym;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    if (this.disposed) throw new Error('DenseOperator: used after dispose().');
    return tf.matMul(V, this.mt);
  }

  override toDense(): Float64Array {
    return Float64Array.from(this.m);
  }

  override async toDenseAsync(): Promise<Float64Array> {
    return this.toDense();
  }

  override get hasInverse(): boolean {
    return this.sym;
  }

  /** `(M + λI)⁻¹` through the float64 eigendecomposition (M symmetric, possibly indefinite). */
  override inverse(damping: number): LinearOperator {
    checkDamping('DenseOperator.inverse', damping, false);
    if (!this.sym) throw new Error('DenseOperator.inverse: the matrix is not symmetric; only symmetric matrices are inverted here.');
    const n = this.size;
    const { values, vectors } = eigh(this.m, n);
    const Q = vectors as Float64Array;
    let maxAbs = 0;
    for (const v of values) maxAbs = Math.max(maxAbs, Math.abs(v));
    const inv = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const s = (values[i] as number) + damping;
      if (!(Math.abs(s) > 1e-12 * Math.max(maxAbs, damping))) {
        throw new Error(`DenseOperator.inverse: M + ${damping}·I is singular (eigenvalue ${values[i]} + ${damping} ≈ 0); increase the damping.`);
      }
      inv[i] = 1 / s;
    }
    const out = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += (Q[i * n + k] as number) * (inv[k] as number) * (Q[j * n + k] as number);
        out[i * n + j] = s;
        out[j * n + i] = s;
      }
    }
    return new DenseOperator(out, n);
  }

  override dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.mt.dispose();
  }
}

/** Orthonormal rows `U [r, D]` and `Uᵀ [D, r]`, shared by a low-rank operator and its inverses. */
class SharedBasis {
  private refs = 1;
  readonly Ut: tf.Tensor2D;
  constructor(readonly U: tf.Tensor2D) {
    this.Ut = tf.keep(tf.transpose(U));
  }
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) tf.dispose([this.U, this.Ut]);
  }
}

/**
 * `Uᵀ diag(d) U + shift·I` with orthonormal rows `U [r, D]` (eigenvectors of
 * a symmetric operator as rows). Cost per product: two `[K, D]×[D, r]`-sized
 * matMuls. Owns copies of U and d.
 */
export class LowRankOperator extends LinearOperator {
  readonly name = 'LowRankOperator';
  readonly size: number;
  readonly rank: number;
  /** The diagonal d (float64 copy). */
  readonly values: Float64Array;
  private readonly d: tf.Tensor1D;
  private readonly basis: SharedBasis;
  private disposed = false;

  constructor(
    U: tf.Tensor2D | SharedBasis,
    d: ArrayLike<number>,
    readonly shift = 0,
  ) {
    super();
    if (U instanceof SharedBasis) this.basis = U.retain();
    else {
      if (!(U instanceof tf.Tensor) || U.rank !== 2) throw new Error('LowRankOperator: U must be a tensor [r, D] (orthonormal rows).');
      this.basis = new SharedBasis(tf.keep(tf.cast(U, 'float32') as tf.Tensor2D));
    }
    const [r, D] = this.basis.U.shape;
    if (d.length !== r) {
      this.basis.release();
      throw new Error(`LowRankOperator: U has ${r} rows but d has ${d.length} entries.`);
    }
    if (!Number.isFinite(shift)) throw new Error(`LowRankOperator: shift must be finite, got ${shift}.`);
    this.size = D;
    this.rank = r;
    this.values = Float64Array.from(d);
    this.d = tf.keep(tf.tensor1d(Float32Array.from(d)));
  }

  /** The orthonormal rows U `[r, D]` (owned by the operator: do not dispose). */
  get vectors(): tf.Tensor2D {
    return this.basis.U;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    if (this.disposed) throw new Error('LowRankOperator: used after dispose().');
    return tf.tidy(() => {
      const c = tf.mul(tf.matMul(V, this.basis.Ut), this.d); // [K, r]
      const low = tf.matMul(c, this.basis.U); // [K, D]
      return (this.shift === 0 ? low : tf.add(low, tf.mul(V, this.shift))) as tf.Tensor2D;
    });
  }

  override get hasInverse(): boolean {
    return true;
  }

  /**
   * The exact inverse `(Uᵀ diag(d) U + (shift+λ) I)⁻¹ =
   * Uᵀ diag(1/(d+s) − 1/s) U + (1/s) I` with s = shift + λ (Woodbury for
   * orthonormal U); needs s > 0.
   */
  override inverse(damping: number): LinearOperator {
    checkDamping('LowRankOperator.inverse', damping, false);
    const s = this.shift + damping;
    if (!(s > 0)) {
      throw new Error(
        `LowRankOperator.inverse: shift + damping = ${s} must be > 0 (the low-rank matrix is singular on the complement of its range); pass damping > 0, or use projectedInverse.`,
      );
    }
    const d = this.values.map((x) => {
      const t = x + s;
      if (t === 0) throw new Error(`LowRankOperator.inverse: eigenvalue ${x} + ${s} = 0; the matrix is singular — change the damping.`);
      return 1 / t - 1 / s;
    });
    return new LowRankOperator(this.basis, d, 1 / s);
  }

  /**
   * The inverse restricted to the range of U: `Uᵀ diag(1/(d + shift + λ)) U`
   * (pyDVL's Arnoldi influence, no correction on the complement).
   */
  projectedInverse(damping: number): LowRankOperator {
    checkDamping('LowRankOperator.projectedInverse', damping, false);
    const d = this.values.map((x, i) => {
      const t = x + this.shift + damping;
      if (!(Math.abs(t) > 0)) throw new Error(`LowRankOperator.projectedInverse: eigenvalue ${i} + damping = ${t}; increase the damping.`);
      return 1 / t;
    });
    return new LowRankOperator(this.basis, d, 0);
  }

  override dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.d.dispose();
    this.basis.release();
  }
}

// ---------------------------------------------------------------------------
// Composition views.

/** Disposes the operands a composite owns. */
function disposeOwned(owns: boolean, ops: readonly LinearOperator[]): void {
  if (owns) for (const op of ops) op.dispose();
}

export class ScaledOperator extends LinearOperator {
  readonly name: string;
  constructor(
    readonly op: LinearOperator,
    readonly c: number,
    private readonly owns = false,
  ) {
    super();
    if (typeof c !== 'number' || !Number.isFinite(c)) throw new Error(`scale: the factor must be a finite number, got ${c}.`);
    this.name = `${op.name}·${c}`;
  }
  get size(): number {
    return this.op.size;
  }
  override get symmetric(): boolean {
    return this.op.symmetric;
  }
  override get isAsync(): boolean {
    return this.op.isAsync;
  }
  matmat(V: tf.Tensor2D): tf.Tensor2D {
    const R = this.op.matmat(V);
    const out = tf.mul(R, this.c) as tf.Tensor2D;
    R.dispose();
    return out;
  }
  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    const R = await this.op.matmatAsync(V);
    const out = tf.mul(R, this.c) as tf.Tensor2D;
    R.dispose();
    return out;
  }
  override get hasInverse(): boolean {
    return this.op.hasInverse && this.c > 0;
  }
  /** `(cA + λI)⁻¹ = (1/c)(A + (λ/c) I)⁻¹` for c > 0. */
  override inverse(damping: number): LinearOperator {
    checkDamping(`${this.name}.inverse`, damping, false);
    if (!(this.c > 0)) throw new Error(`${this.name}.inverse: only positive scale factors are inverted, got ${this.c}.`);
    return new ScaledOperator(this.op.inverse(damping / this.c), 1 / this.c, true);
  }
  override dispose(): void {
    disposeOwned(this.owns, [this.op]);
  }
}

export class DampedOperator extends LinearOperator {
  readonly name: string;
  constructor(
    readonly op: LinearOperator,
    readonly damping: number,
    private readonly owns = false,
  ) {
    super();
    checkDamping('damp', damping, false);
    this.name = `(${op.name} + ${damping}·I)`;
  }
  get size(): number {
    return this.op.size;
  }
  override get symmetric(): boolean {
    return this.op.symmetric;
  }
  override get isAsync(): boolean {
    return this.op.isAsync;
  }
  private finish(R: tf.Tensor2D, V: tf.Tensor2D): tf.Tensor2D {
    if (this.damping === 0) return R;
    const out = tf.tidy(() => tf.add(R, tf.mul(V, this.damping)) as tf.Tensor2D);
    R.dispose();
    return out;
  }
  matmat(V: tf.Tensor2D): tf.Tensor2D {
    return this.finish(this.op.matmat(V), V);
  }
  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    return this.finish(await this.op.matmatAsync(V), V);
  }
  override get hasInverse(): boolean {
    return this.op.hasInverse;
  }
  override inverse(damping: number): LinearOperator {
    checkDamping(`${this.name}.inverse`, damping, false);
    return this.op.inverse(this.damping + damping);
  }
  override dispose(): void {
    disposeOwned(this.owns, [this.op]);
  }
}

export class SumOperator extends LinearOperator {
  readonly name: string;
  readonly size: number;
  constructor(
    readonly ops: readonly LinearOperator[],
    private readonly owns = false,
  ) {
    super();
    if (ops.length === 0) throw new Error('sum: needs at least one operator.');
    this.size = (ops[0] as LinearOperator).size;
    for (const op of ops) {
      if (op.size !== this.size) {
        throw new Error(`sum: operators act on different sizes (${ops.map((o) => `${o.name}: ${o.size}`).join(', ')}).`);
      }
    }
    this.name = `(${ops.map((o) => o.name).join(' + ')})`;
  }
  override get symmetric(): boolean {
    return this.ops.every((o) => o.symmetric);
  }
  override get isAsync(): boolean {
    return this.ops.some((o) => o.isAsync);
  }
  private accumulate(acc: tf.Tensor2D | undefined, R: tf.Tensor2D): tf.Tensor2D {
    if (acc === undefined) return R;
    const next = tf.add(acc, R) as tf.Tensor2D;
    tf.dispose([acc, R]);
    return next;
  }
  matmat(V: tf.Tensor2D): tf.Tensor2D {
    let acc: tf.Tensor2D | undefined;
    try {
      for (const op of this.ops) acc = this.accumulate(acc, op.matmat(V));
    } catch (e) {
      acc?.dispose();
      throw e;
    }
    return acc as tf.Tensor2D;
  }
  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    let acc: tf.Tensor2D | undefined;
    try {
      for (const op of this.ops) acc = this.accumulate(acc, await op.matmatAsync(V));
    } catch (e) {
      acc?.dispose();
      throw e;
    }
    return acc as tf.Tensor2D;
  }
  override dispose(): void {
    disposeOwned(this.owns, this.ops);
  }
}

/** `Pᵀ A P`: A on the coordinates of an index set (a view). */
export class RestrictedOperator extends LinearOperator {
  readonly name: string;
  readonly size: number;
  constructor(
    readonly op: LinearOperator,
    readonly indices: IndexSet,
  ) {
    super();
    this.size = indexSetSize(indices);
    this.name = `${op.name}[restricted to ${this.size} of ${op.size}]`;
  }
  override get symmetric(): boolean {
    return this.op.symmetric;
  }
  override get isAsync(): boolean {
    return this.op.isAsync;
  }
  matmat(V: tf.Tensor2D): tf.Tensor2D {
    const full = embedColumns(V, this.indices, this.op.size);
    try {
      const R = this.op.matmat(full);
      const out = extractColumns(R, this.indices);
      R.dispose();
      return out;
    } finally {
      full.dispose();
    }
  }
  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    const full = embedColumns(V, this.indices, this.op.size);
    try {
      const R = await this.op.matmatAsync(full);
      const out = extractColumns(R, this.indices);
      R.dispose();
      return out;
    } finally {
      full.dispose();
    }
  }
}

export interface BlockDiagonalOptions {
  /** The coordinates of each block (default: consecutive blocks in order). */
  sets?: readonly IndexSet[];
  /** Total size (default: the sum of the block sizes). */
  size?: number;
  /** Dispose the blocks with this operator (default false). */
  owns?: boolean;
}

/**
 * `diag(A_1, …, A_B)`: block b acts on the coordinates `sets[b]`;
 * coordinates outside every block map to 0.
 */
export class BlockDiagonalOperator extends LinearOperator {
  readonly name: string;
  readonly size: number;
  readonly sets: readonly IndexSet[];
  private readonly owns: boolean;
  /** Column map for the output gather (undefined: consecutive single ranges, plain concat). */
  private readonly gatherMap: Int32Array | undefined;
  private readonly covered: number;

  constructor(
    readonly blocks: readonly LinearOperator[],
    options: BlockDiagonalOptions = {},
  ) {
    super();
    if (blocks.length === 0) throw new Error('blockDiagonal: needs at least one block.');
    const total = blocks.reduce((s, b) => s + b.size, 0);
    this.size = options.size ?? total;
    this.owns = options.owns ?? false;
    if (options.sets === undefined) {
      let pos = 0;
      this.sets = blocks.map((b) => {
        const r: IndexSet = [[pos, pos + b.size]];
        pos += b.size;
        return r;
      });
    } else {
      this.sets = options.sets;
      if (this.sets.length !== blocks.length) {
        throw new Error(`blockDiagonal: ${blocks.length} blocks but ${this.sets.length} index sets.`);
      }
    }
    this.sets.forEach((s, i) => {
      const n = indexSetSize(s);
      const b = blocks[i] as LinearOperator;
      if (n !== b.size) throw new Error(`blockDiagonal: block ${i} (${b.name}) has size ${b.size} but its index set has ${n} entries.`);
      const last = s[s.length - 1];
      if (last !== undefined && last[1] > this.size) throw new Error(`blockDiagonal: block ${i} reaches index ${last[1] - 1} ≥ size ${this.size}.`);
      for (let j = 0; j < i; j++) {
        if (indexSetsOverlap(s, this.sets[j] as IndexSet)) throw new Error(`blockDiagonal: blocks ${j} and ${i} share coordinates; groups must be disjoint.`);
      }
    });
    this.covered = total;
    const consecutive = this.sets.every((s, i) => s.length === 1 && (s[0] as readonly number[])[0] === (i === 0 ? 0 : ((this.sets[i - 1] as IndexSet)[0] as readonly number[])[1]));
    if (consecutive && total === this.size) this.gatherMap = undefined;
    else {
      // Output column j ← column map[j] of [R_1 | … | R_B | 0].
      const map = new Int32Array(this.size).fill(total);
      let col = 0;
      for (const s of this.sets) for (const [a, b] of s) for (let i = a; i < b; i++) map[i] = col++;
      this.gatherMap = map;
    }
    this.name = `BlockDiagonal(${blocks.map((b) => b.name).join(', ')})`;
  }

  override get symmetric(): boolean {
    return this.blocks.every((b) => b.symmetric);
  }
  override get isAsync(): boolean {
    return this.blocks.some((b) => b.isAsync);
  }

  private assemble(outs: tf.Tensor2D[], K: number): tf.Tensor2D {
    const R = tf.tidy(() => {
      const cat = outs.length === 1 ? (outs[0] as tf.Tensor2D) : (tf.concat(outs, 1) as tf.Tensor2D);
      if (this.gatherMap === undefined) return outs.length === 1 ? tf.clone(cat) : cat;
      const padded = tf.concat([cat, tf.zeros([K, 1])], 1);
      return tf.gather(padded, tf.tensor1d(this.gatherMap, 'int32'), 1) as tf.Tensor2D;
    });
    tf.dispose(outs);
    return R;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    const outs: tf.Tensor2D[] = [];
    try {
      this.blocks.forEach((b, i) => {
        const Vb = extractColumns(V, this.sets[i] as IndexSet);
        try {
          outs.push(b.matmat(Vb));
        } finally {
          Vb.dispose();
        }
      });
    } catch (e) {
      tf.dispose(outs);
      throw e;
    }
    return this.assemble(outs, V.shape[0]);
  }

  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    const outs: tf.Tensor2D[] = [];
    try {
      for (let i = 0; i < this.blocks.length; i++) {
        const Vb = extractColumns(V, this.sets[i] as IndexSet);
        try {
          outs.push(await (this.blocks[i] as LinearOperator).matmatAsync(Vb));
        } finally {
          Vb.dispose();
        }
      }
    } catch (e) {
      tf.dispose(outs);
      throw e;
    }
    return this.assemble(outs, V.shape[0]);
  }

  override get hasInverse(): boolean {
    return this.blocks.every((b) => b.hasInverse);
  }

  /** Blockwise inverses; uncovered coordinates get `1/λ` (needs λ > 0 if any). */
  override inverse(damping: number): LinearOperator {
    checkDamping(`${this.name}.inverse`, damping, false);
    const invs: LinearOperator[] = [];
    try {
      for (const b of this.blocks) invs.push(b.inverse(damping));
      const sets = [...this.sets];
      if (this.covered < this.size) {
        if (!(damping > 0)) {
          throw new Error(`${this.name}.inverse: ${this.size - this.covered} coordinates lie outside every block (zero rows); their inverse needs damping > 0.`);
        }
        const all = new Uint8Array(this.size);
        for (const s of this.sets) for (const [a, b] of s) all.fill(1, a, b);
        const rest: [number, number][] = [];
        for (let i = 0; i < this.size; i++) {
          if (all[i]) continue;
          const last = rest[rest.length - 1];
          if (last !== undefined && last[1] === i) last[1] = i + 1;
          else rest.push([i, i + 1]);
        }
        invs.push(new IdentityOperator(this.size - this.covered, 1 / damping));
        sets.push(rest);
      }
      return new BlockDiagonalOperator(invs, { sets, size: this.size, owns: true });
    } catch (e) {
      for (const op of invs) op.dispose();
      throw e;
    }
  }

  override dispose(): void {
    disposeOwned(this.owns, this.blocks);
  }
}

/** `A_1 + … + A_n` (a view). */
export function sumOperators(ops: readonly LinearOperator[]): LinearOperator {
  return new SumOperator(ops);
}

/** `diag(A_1, …, A_n)` over consecutive coordinates (a view). */
export function blockDiagonalOperator(blocks: readonly LinearOperator[], options: Omit<BlockDiagonalOptions, 'owns'> = {}): LinearOperator {
  return new BlockDiagonalOperator(blocks, options);
}
