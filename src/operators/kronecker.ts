/**
 * KFAC/KFLR and EKFAC as operators on the flat parameter vector: block
 * diagonal with one block per parameter (kernel `kron(A, G)`, bias `G`, or
 * their EKFAC versions), averaged over a dataset with the curvature
 * operators' convention (curvature of the mean loss (1/P) Σ_j ℓ_j):
 *
 *   A = (1/P) Σ_j Σ_t x_jt x_jtᵀ,   G = (1/P) Σ_j Σ_v b̃_jv b̃_jvᵀ,
 *
 * with b̃ the backpropagated square root of the single-sample loss ℓ_j.
 * From a batch's extension results (A_b with 1/B, G_b of the batch loss):
 * A = Σ_b B_b A_b / P and G = Σ_b c_b G_b / P with c_b = norm(B_b)/norm(1)
 * (FORMAT.md §4), so batching never changes the factors (KFLR) — a short
 * last batch is weighted correctly.
 *
 * EKFAC (George et al. 2018) needs two passes over the data: the factors'
 * eigenbases Q = UA ⊗ UG first, then the corrected eigenvalues
 * `lambda = (1/P) Σ_j Σ_v (UAᵀ S_jv UG)²` in those fixed bases.
 *
 * `inverse(λ)` (λ > 0) is closed-form: `(kron(A, G) + λI)⁻¹` through the
 * eigendecompositions of A and G (kroneckerInverseApply), and
 * `Q diag(1/(lambda + λ)) Qᵀ` for EKFAC. The operators own their factors:
 * dispose them (and their inverses) when done.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { Extension, ParamContext } from '../engine/extension';
import type { ParamInfo, ParamRef } from '../engine/params';
import { SqrtGgnExactQuantity } from '../engine/quantity';
import { KFAC, KFLR } from '../../extensions/secondorder/index';
import {
  kroneckerApply,
  kroneckerEigen,
  kroneckerInverseApply,
  type KroneckerEigen,
  type KroneckerFactors,
} from '../../extensions/secondorder/kroneckerFactors';
import { ekfacApply, ekfacInverseApply, ekfacScaling, type EkfacResult } from '../../extensions/secondorder/ekfac';
import { batchScale, selectParams } from './curvature';
import { BatchStream, type Batch, type DataPasses, type DataSource } from './data';
import { BlockDiagonalOperator, LinearOperator } from './linearOperator';

/** Tensors shared by an operator and its inverses (freed when the last user is disposed). */
class Shared<T extends tf.TensorContainer> {
  private refs = 1;
  private extra: tf.TensorContainer[] = [];
  constructor(readonly value: T) {}
  retain(): this {
    this.refs++;
    return this;
  }
  /** Attach a lazily computed value that dies with this one. */
  attach<U extends tf.TensorContainer>(u: U): U {
    this.extra.push(u);
    return u;
  }
  release(): void {
    if (--this.refs === 0) tf.dispose([this.value, ...this.extra] as tf.TensorContainer);
  }
}

function checkInverseDamping(where: string, damping: number): void {
  if (typeof damping !== 'number' || !Number.isFinite(damping) || !(damping > 0)) {
    throw new Error(`${where}: damping must be a finite number > 0 (Kronecker factors are typically rank-deficient), got ${damping}.`);
  }
}

/** `[K, size] → [K, ...shape] → f → [K, size]`. */
function inParamLayout(V: tf.Tensor2D, shape: readonly number[], f: (v: tf.Tensor) => tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => tf.reshape(f(tf.reshape(V, [V.shape[0], ...shape])), V.shape) as tf.Tensor2D);
}

/**
 * An operator on one parameter's coordinates, `v ↦ product(v)` in the
 * parameter's layout, holding one reference to tensors shared with related
 * operators (a block and its inverses).
 */
class SharedParamBlock<T extends tf.TensorContainer> extends LinearOperator {
  readonly size: number;
  private disposed = false;

  constructor(
    readonly name: string,
    readonly param: ParamInfo,
    protected readonly shared: Shared<T>,
    private readonly product: (v: tf.Tensor) => tf.Tensor,
  ) {
    super();
    this.size = param.size;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    if (this.disposed) throw new Error(`${this.name}: used after dispose().`);
    return inParamLayout(V, this.param.shape, this.product);
  }

  override dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.shared.release();
  }
}

/** One parameter's Kronecker block: `kron(A, G)` (kernel) or `G` (bias). Owns the factors. */
export class KroneckerBlock extends SharedParamBlock<KroneckerFactors> {
  private eigen: KroneckerEigen | undefined;

  constructor(param: ParamInfo, factors: KroneckerFactors) {
    super(`Kronecker(${param.name})`, param, new Shared(factors), (v) => kroneckerApply(factors, v));
  }

  get factors(): KroneckerFactors {
    return this.shared.value;
  }

  override get hasInverse(): boolean {
    return true;
  }

  /** Eigendecompositions of the factors (computed once, shared with every inverse). */
  eigendecomposition(): KroneckerEigen {
    if (this.eigen === undefined) this.eigen = this.shared.attach(kroneckerEigen(this.shared.value));
    return this.eigen;
  }

  override inverse(damping: number): LinearOperator {
    checkInverseDamping(`${this.name}.inverse`, damping);
    const eig = this.eigendecomposition();
    return new SharedParamBlock(`(${this.param.name} Kronecker + ${damping}·I)⁻¹`, this.param, this.shared.retain(), (v) => kroneckerInverseApply(eig, v, damping));
  }
}

/** One parameter's EKFAC block `Q diag(lambda) Qᵀ`. Owns the result. */
export class EkfacBlock extends SharedParamBlock<EkfacResult> {
  constructor(param: ParamInfo, result: EkfacResult) {
    super(`EKFAC(${param.name})`, param, new Shared(result), (v) => ekfacApply(result, v));
  }

  get result(): EkfacResult {
    return this.shared.value;
  }

  override get hasInverse(): boolean {
    return true;
  }

  override inverse(damping: number): LinearOperator {
    checkInverseDamping(`${this.name}.inverse`, damping);
    const result = this.shared.value;
    return new SharedParamBlock(`(${this.param.name} EKFAC + ${damping}·I)⁻¹`, this.param, this.shared.retain(), (v) => ekfacInverseApply(result, v, damping));
  }
}

/** Block-diagonal operator over parameters (blocks in flat order); owns its blocks. */
export class ParamBlockOperator<B extends LinearOperator & { param: ParamInfo }> extends BlockDiagonalOperator {
  constructor(readonly paramBlocks: readonly B[]) {
    super(paramBlocks, { owns: true });
  }
  /** The parameters, in flat order. */
  get params(): readonly ParamInfo[] {
    return this.paramBlocks.map((b) => b.param);
  }
  /** The block of one parameter. */
  block(param: ParamInfo | string): B {
    const name = typeof param === 'string' ? param : param.name;
    const b = this.paramBlocks.find((x) => x.param.name === name || x.param.shortName === name);
    if (b === undefined) throw new Error(`no block for parameter '${name}'; the operator covers ${this.params.map((p) => p.name).join(', ')}.`);
    return b;
  }
}

export type KroneckerOperator = ParamBlockOperator<KroneckerBlock>;
export type EkfacOperator = ParamBlockOperator<EkfacBlock>;

export interface KroneckerOperatorOptions {
  /** `kflr` (exact GGN square root, default) or `kfac` (Monte-Carlo). */
  factors?: 'kflr' | 'kfac';
  /** kfac: MC samples per data point (default 1). */
  mcSamples?: number;
  /** kfac: seed (batch b uses seed + b; default 0). */
  seed?: number;
  /** Restrict to these parameters (default: all trainable ones). */
  params?: readonly ParamRef[];
}

export interface EkfacOperatorOptions extends KroneckerOperatorOptions {
  /** Corrected eigenvalues from the exact GGN square root (`ggn`, default) or the per-sample gradients (`empiricalFisher`). */
  correction?: 'ggn' | 'empiricalFisher';
}

/** `map[key] += w·t` (a new tensor; the previous sum is freed). */
function addWeighted(map: Map<number, tf.Tensor>, key: number, t: tf.Tensor, w: number): void {
  const prev = map.get(key);
  map.set(key, tf.tidy(() => (prev === undefined ? tf.mul(t, w) : tf.add(prev, tf.mul(t, w)))));
  prev?.dispose();
}

/** Weighted running sums of the factors over batches (float32 tensors; divided by P at the end). */
class FactorSums {
  readonly A = new Map<number, tf.Tensor>();
  readonly G = new Map<number, tf.Tensor>();
  dispose(): void {
    tf.dispose([...this.A.values(), ...this.G.values()]);
  }
}

interface Plan {
  model: ExtendedModel;
  params: readonly ParamInfo[];
  stream: BatchStream;
  options: EkfacOperatorOptions;
}

function plan(where: string, model: ExtendedModel, data: DataSource, options: EkfacOperatorOptions): Plan {
  const kind = options.factors ?? 'kflr';
  if (kind !== 'kflr' && kind !== 'kfac') throw new Error(`${where}: option 'factors' must be 'kflr' or 'kfac', got '${String(kind)}'.`);
  if (kind === 'kflr' && (options.mcSamples !== undefined || options.seed !== undefined)) {
    throw new Error(`${where}: options 'mcSamples' and 'seed' apply to factors: 'kfac' only.`);
  }
  const c = options.correction ?? 'ggn';
  if (c !== 'ggn' && c !== 'empiricalFisher') throw new Error(`${where}: option 'correction' must be 'ggn' or 'empiricalFisher', got '${String(c)}'.`);
  const sel = selectParams(model, options.params, where);
  return { model, params: sel.params, stream: new BatchStream(data, where), options };
}

/** Pass 1: add one batch's Kronecker factors to the sums. */
function addFactors(p: Plan, sums: FactorSums, b: Batch, index: number): void {
  const o = p.options;
  const ext: Extension<KroneckerFactors> =
    (o.factors ?? 'kflr') === 'kflr' ? new KFLR({ name: 'curvpack:factors' }) : new KFAC({ name: 'curvpack:factors', mcSamples: o.mcSamples ?? 1, seed: (o.seed ?? 0) + index });
  const B = b.x.shape[0] as number;
  const r = p.model.backward(b.x, b.y, { extensions: [ext], training: false, seed: (o.seed ?? 0) + index });
  try {
    const c = batchScale(p.model, B);
    for (const q of p.params) {
      const f = r.get(ext, q) as KroneckerFactors;
      if ('A' in f && f.A !== undefined) addWeighted(sums.A, q.index, f.A, B);
      addWeighted(sums.G, q.index, f.G, c);
    }
  } finally {
    r.dispose();
  }
}

/** Pass 1 (KFAC/KFLR and EKFAC): the factors averaged over the data. */
function* factorPass(p: Plan): DataPasses<Map<number, KroneckerFactors>> {
  const sums = new FactorSums();
  try {
    const rows = yield (b, index) => addFactors(p, sums, b, index);
    if (rows === 0) throw new Error('the data is empty; Kronecker factors need at least one data point.');
    const out = new Map<number, KroneckerFactors>();
    for (const q of p.params) {
      const G = tf.div(sums.G.get(q.index) as tf.Tensor, rows) as tf.Tensor2D;
      const A = sums.A.get(q.index);
      out.set(q.index, A === undefined ? { G } : { A: tf.div(A, rows) as tf.Tensor2D, G });
    }
    return out;
  } finally {
    sums.dispose();
  }
}

function* kroneckerPasses(p: Plan): DataPasses<KroneckerOperator> {
  const factors = yield* factorPass(p);
  return new ParamBlockOperator(p.params.map((q) => new KroneckerBlock(q, factors.get(q.index) as KroneckerFactors)));
}

/** KFAC/KFLR operator over in-memory data. */
export function kroneckerOperator(model: ExtendedModel, data: DataSource, options: KroneckerOperatorOptions = {}): KroneckerOperator {
  const p = plan('kroneckerOperator', model, data, options);
  return p.stream.run(kroneckerPasses(p));
}

/** KFAC/KFLR operator over any data (streams a tf.data.Dataset). */
export async function kroneckerOperatorAsync(model: ExtendedModel, data: DataSource, options: KroneckerOperatorOptions = {}): Promise<KroneckerOperator> {
  const p = plan('kroneckerOperatorAsync', model, data, options);
  return p.stream.runAsync(kroneckerPasses(p));
}

/** A Kronecker operator from per-parameter factors (e.g. a KFLR/KFAC extension result); copies them. */
export function kroneckerOperatorFromFactors(params: readonly ParamInfo[], factors: readonly KroneckerFactors[]): KroneckerOperator {
  if (params.length !== factors.length || params.length === 0) {
    throw new Error(`kroneckerOperatorFromFactors: ${params.length} parameters but ${factors.length} factor sets; give one per parameter.`);
  }
  const sorted = params.map((p, i) => ({ p, f: factors[i] as KroneckerFactors })).sort((a, b) => a.p.index - b.p.index);
  return new ParamBlockOperator(
    sorted.map(({ p, f }) => new KroneckerBlock(p, 'A' in f && f.A !== undefined ? { A: tf.clone(f.A), G: tf.clone(f.G) } : { G: tf.clone(f.G) })),
  );
}

/**
 * The EKFAC correction in fixed bases: per parameter, Σ_n Σ_v (UAᵀ S_vn UG)²
 * (kernel `[I, O]`) or Σ_n Σ_v (UGᵀ b_vn)² (bias `[O]`), where S_vn are the
 * per-sample kernel products of the exact GGN square root (or of the
 * gradient for the empirical-Fisher correction).
 */
class EkfacCorrection implements Extension<tf.Tensor> {
  readonly name = 'curvpack:ekfacCorrection';
  private readonly sqrt = new SqrtGgnExactQuantity();
  readonly quantities: readonly SqrtGgnExactQuantity[];

  constructor(
    private readonly bases: Map<string, KroneckerEigen>,
    private readonly correction: 'ggn' | 'empiricalFisher',
  ) {
    this.quantities = correction === 'ggn' ? [this.sqrt] : [];
  }

  computeParam(ctx: ParamContext): tf.Tensor | undefined {
    const basis = this.bases.get(ctx.param.name);
    if (basis === undefined) return undefined;
    const stack = this.correction === 'ggn' ? ctx.value(this.sqrt) : ctx.gradStack();
    return ekfacScaling(ctx, stack, basis.UA, basis.UG);
  }
}

function addCorrection(p: Plan, ext: EkfacCorrection, sums: Map<number, tf.Tensor>, b: Batch, index: number): void {
  const B = b.x.shape[0] as number;
  const c = batchScale(p.model, B);
  const w = (p.options.correction ?? 'ggn') === 'ggn' ? c : c * c;
  const r = p.model.backward(b.x, b.y, { extensions: [ext], training: false, seed: (p.options.seed ?? 0) + index });
  try {
    for (const q of p.params) addWeighted(sums, q.index, r.get(ext, q) as tf.Tensor, w);
  } finally {
    r.dispose();
  }
}

function ekfacFrom(p: Plan, eigs: Map<number, KroneckerEigen>, sums: Map<number, tf.Tensor>, rows: number): EkfacOperator {
  return new ParamBlockOperator(
    p.params.map((q) => {
      const e = eigs.get(q.index) as KroneckerEigen;
      const lambda = tf.div(sums.get(q.index) as tf.Tensor, rows);
      const result: EkfacResult =
        e.UA !== undefined
          ? { UA: e.UA, UG: e.UG, evalsA: e.evalsA as tf.Tensor1D, evalsG: e.evalsG, lambda: lambda as tf.Tensor2D }
          : { UG: e.UG, evalsG: e.evalsG, lambda: lambda as tf.Tensor1D };
      return new EkfacBlock(q, result);
    }),
  );
}

function eigenbases(p: Plan, factors: Map<number, KroneckerFactors>): Map<number, KroneckerEigen> {
  const eigs = new Map<number, KroneckerEigen>();
  try {
    for (const q of p.params) eigs.set(q.index, kroneckerEigen(factors.get(q.index) as KroneckerFactors));
  } catch (e) {
    tf.dispose([...eigs.values()] as unknown as tf.TensorContainer);
    throw e;
  }
  return eigs;
}

/** Pass 1: the factors and their eigenbases; pass 2: the corrected eigenvalues in those bases. */
function* ekfacPasses(p: Plan): DataPasses<EkfacOperator> {
  const factors = yield* factorPass(p);
  let eigs: Map<number, KroneckerEigen> | undefined;
  const corr = new Map<number, tf.Tensor>();
  let done = false;
  try {
    const bases = eigenbases(p, factors);
    eigs = bases;
    const ext = new EkfacCorrection(new Map(p.params.map((q) => [q.name, bases.get(q.index) as KroneckerEigen])), p.options.correction ?? 'ggn');
    const rows = yield (b, index) => addCorrection(p, ext, corr, b, index);
    const op = ekfacFrom(p, bases, corr, rows);
    done = true;
    return op;
  } finally {
    tf.dispose([...corr.values()]);
    tf.dispose([...factors.values()] as unknown as tf.TensorContainer);
    if (!done && eigs) tf.dispose([...eigs.values()] as unknown as tf.TensorContainer);
  }
}

/** EKFAC operator over in-memory data (two passes). */
export function ekfacOperator(model: ExtendedModel, data: DataSource, options: EkfacOperatorOptions = {}): EkfacOperator {
  const p = plan('ekfacOperator', model, data, options);
  return p.stream.run(ekfacPasses(p));
}

/** EKFAC operator over any data (streams a tf.data.Dataset twice). */
export async function ekfacOperatorAsync(model: ExtendedModel, data: DataSource, options: EkfacOperatorOptions = {}): Promise<EkfacOperator> {
  const p = plan('ekfacOperatorAsync', model, data, options);
  return p.stream.runAsync(ekfacPasses(p));
}
