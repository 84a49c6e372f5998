/**
 * Dataset-averaged curvature operators on the flat parameter vector
 * (FORMAT.md §5 order): Hessian, generalized Gauss–Newton (GGN) and empirical
 * Fisher of the MEAN loss over the data,
 *
 *   L(θ) = (1/P) Σ_j ℓ_j(θ),   ℓ_j = loss({(x_j, y_j)})  (P data points),
 *
 * where loss({(x_j, y_j)}) is the model's loss (type and reduction) applied
 * to the single-sample batch — FORMAT.md §6.5's convention for influence
 * functions. (For reduction `mean` a batch loss is the mean of its ℓ_j; for
 * `sum` it is their sum; MSE `mean` divides each ℓ_j by C.) So
 *
 *   hessian           ∇²L = (1/P) Σ_j ∇²ℓ_j
 *   ggn               (1/P) Σ_j J_jᵀ ∇²_f ℓ_j J_j
 *   empiricalFisher   (1/P) Σ_j ∇ℓ_j ∇ℓ_jᵀ
 *
 * Data are streamed in batches (data.ts); each batch contributes the
 * curvature of Σ_{j∈batch} ℓ_j, the sum is divided by P, so a short last
 * batch is weighted correctly. Products use the model's current weights.
 *
 * Hessian-vector products are exact (Pearlmutter's R-operator through the
 * module derivatives, works on every backend): a forward pass carrying
 * R{h_i} = J_i R{h_{i−1}} + (∂h_i/∂θ_i) v_i, R{δ_L} = H_loss R{f}, and a
 * backward pass R{δ_in} = J_iᵀ R{δ_out} + (φ''(x) ⊙ δ_out) ⊙ R{x}
 * (elementwise modules) + Jᵀ(V_kernel) δ_out (Dense/Conv2D), with
 * R{∇W} = Σ unfold(R{x})ᵀ δ + Σ unfold(x)ᵀ R{δ}. Other parameter-free
 * modules must be linear or piecewise linear in their input (pooling,
 * padding, flatten, dropout): their second derivative vanishes almost
 * everywhere. The GGN drops every second-derivative term of the network
 * (R{δ} is backpropagated with Jᵀ only). Cost per batch and K vectors:
 * about 2 (GGN) or 3 (Hessian) forward+backward passes with K-wide stacks.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { ParamInfo, ParamRef } from '../engine/params';
import { paramProduct } from '../engine/paramProducts';
import type { ForwardRecord, LinearModuleDerivatives, ModuleDerivatives } from '../derivatives/types';
import { isLinearModule } from '../derivatives/types';
import { summedKernelProduct } from '../derivatives/weightProducts';
import { Rng } from '../utils/random';
import { BatchStream, sumOverBatches, type Batch, type DataSource } from './data';
import { toIndexSet, type IndexSet, type IndexSpec } from './indices';
import { LinearOperator } from './linearOperator';

export type CurvatureKind = 'hessian' | 'ggn' | 'empiricalFisher';

export interface CurvatureOptions {
  /**
   * Restrict the operator to these parameters (any order; the operator uses
   * their flat order). Default: every trainable parameter.
   */
  params?: readonly ParamRef[];
}

/** An operator that can also multiply with the curvature of a random minibatch (for LiSSA). */
export interface SampledOperator {
  /** Product with the curvature of the mean loss over a random minibatch of `batchSize` points. */
  sampledMatmat(V: tf.Tensor2D, rng: Rng, batchSize: number): tf.Tensor2D;
  sampledMatmatAsync(V: tf.Tensor2D, rng: Rng, batchSize: number): Promise<tf.Tensor2D>;
}

export function isSampledOperator(op: unknown): op is SampledOperator {
  return typeof (op as Partial<SampledOperator>).sampledMatmat === 'function';
}

/** The selected parameters, grouped by module. */
export interface Selection {
  readonly params: readonly ParamInfo[];
  readonly size: number;
  readonly byModule: readonly (readonly ParamInfo[])[];
  /** Lowest module index with a selected parameter (the backward pass stops there). */
  readonly firstModule: number;
}

export function selectParams(model: ExtendedModel, refs: readonly ParamRef[] | undefined, where: string): Selection {
  let params: ParamInfo[];
  if (refs === undefined) params = [...model.params];
  else {
    if (!Array.isArray(refs) || refs.length === 0) throw new Error(`${where}: option 'params' must list at least one parameter.`);
    const seen = new Set<number>();
    params = [];
    for (const r of refs) {
      const p = model.layout.resolve(r);
      if (seen.has(p.index)) throw new Error(`${where}: parameter '${p.name}' is listed twice in 'params'.`);
      seen.add(p.index);
      params.push(p);
    }
    params.sort((a, b) => a.index - b.index);
  }
  if (params.length === 0) throw new Error(`${where}: the model has no trainable parameters.`);
  const byModule: ParamInfo[][] = model.modules.map(() => []);
  for (const p of params) (byModule[p.moduleIndex] as ParamInfo[]).push(p);
  return {
    params,
    size: params.reduce((s, p) => s + p.size, 0),
    byModule,
    firstModule: Math.min(...params.map((p) => p.moduleIndex)),
  };
}

/** Forward through every module keeping the records (inside the caller's tidy). */
function recordForward(mods: readonly ModuleDerivatives[], x: tf.Tensor): ForwardRecord[] {
  const recs: ForwardRecord[] = [];
  let h = x;
  for (const d of mods) {
    let rec = d.forward(h, { training: false });
    if (rec.output === h) rec = { ...rec, output: tf.clone(h) };
    recs.push(rec);
    h = rec.output;
  }
  return recs;
}

/** Per-parameter views `[K, ...shape]` of a stack `[K, size]` over the selection. */
export function splitStack(sel: Selection, V: tf.Tensor2D): Map<number, tf.Tensor> {
  const K = V.shape[0];
  const parts = sel.params.length === 1 ? [V] : tf.split(V, sel.params.map((p) => p.size), 1);
  const out = new Map<number, tf.Tensor>();
  sel.params.forEach((p, i) => out.set(p.index, tf.reshape(parts[i] as tf.Tensor, [K, ...p.shape])));
  return out;
}

/** Per-parameter results `[K, ...shape]` → `[K, size]` in selection order. */
function joinStack(sel: Selection, parts: Map<number, tf.Tensor>, K: number): tf.Tensor2D {
  const flat = sel.params.map((p) => tf.reshape(parts.get(p.index) as tf.Tensor, [K, p.size]));
  return (flat.length === 1 ? flat[0] : tf.concat(flat, 1)) as tf.Tensor2D;
}

/** `norm(B, C) / norm(1, C)`: the batch loss's per-sample terms → single-sample losses ℓ_j. */
export function batchScale(model: ExtendedModel, B: number): number {
  const C = model.numOutputs;
  return model.loss.normalizer(B, C) / model.loss.normalizer(1, C);
}

function checkModules(mods: readonly ModuleDerivatives[]): void {
  for (const d of mods) {
    if (d.residualDiag !== undefined && !d.elementwise) {
      throw new Error(`${d.kind}: exact Hessian products support second derivatives of elementwise modules only; use the GGN for this model.`);
    }
  }
}

/**
 * `Σ_n unfold(R{x}_k)[n]ᵀ δ[n]` for every k: the kernel term of R{∇W} from
 * the input's R-value. Rx `[K, N, ...in]`, delta `[N, ...out]` → `[K, ...kernel]`.
 */
function crossKernelTerm(d: LinearModuleDerivatives, rec: ForwardRecord, Rx: tf.Tensor, delta: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const K = Rx.shape[0] as number;
  const N = rec.input.shape[0] as number;
  const Xr = d.unfoldInput({ ...rec, input: tf.reshape(Rx, [K * N, ...rec.input.shape.slice(1)]) }); // [K·N, T, I]
  const [, T, I] = Xr.shape;
  const D = d.foldOutput(tf.expandDims(delta, 0)); // [1, N, T, O]
  const O = D.shape[3];
  const Xt = tf.reshape(tf.transpose(tf.reshape(Xr, [K, N * T, I]), [0, 2, 1]), [K * I, N * T]);
  return tf.reshape(tf.matMul(Xt, tf.reshape(D, [N * T, O])), [K, ...shape]);
}

/**
 * Pearlmutter's forward pass with R-values (inside the caller's tidy): every
 * module's record, the R-value of its input `Rin[i]` (undefined while it is
 * 0: R{x} = 0, the direction is in θ only) and of the output `Rf [K, N, C]`,
 * R{h_i} = J_i R{h_{i−1}} + (∂h_i/∂θ_i) v_i with v_i = vOf(θ_i) `[K, ...shape]`.
 */
export function rForward(
  mods: readonly ModuleDerivatives[],
  sel: Selection,
  x: tf.Tensor,
  vOf: Map<number, tf.Tensor>,
): { recs: ForwardRecord[]; Rin: (tf.Tensor | undefined)[]; f: tf.Tensor2D; Rf: tf.Tensor3D } {
  const recs: ForwardRecord[] = [];
  const Rin: (tf.Tensor | undefined)[] = [];
  let h = x;
  let Rh: tf.Tensor | undefined;
  mods.forEach((d, i) => {
    let rec = d.forward(h, { training: false });
    if (rec.output === h) rec = { ...rec, output: tf.clone(h) };
    recs.push(rec);
    Rin.push(Rh);
    let Rout = Rh === undefined ? undefined : d.jacMatProd(rec, Rh);
    for (const p of sel.byModule[i] as readonly ParamInfo[]) {
      const t = (d as LinearModuleDerivatives).paramJacMatProd(rec, p.role, vOf.get(p.index) as tf.Tensor);
      Rout = Rout === undefined ? t : tf.add(Rout, t);
    }
    Rh = Rout;
    h = rec.output;
  });
  return { recs, Rin, f: h as tf.Tensor2D, Rf: Rh as tf.Tensor3D };
}

/**
 * `RDin` (= J_iᵀ R{δ_out}) plus the second-order terms of R{δ_in} for the
 * exact Hessian: `(φ''(x) ⊙ δ_out) ⊙ R{x}` (elementwise modules) and
 * `J_i(v_kernel)ᵀ δ_out` (Dense/Conv2D with a selected kernel). `delta` is
 * δ_out `[N, ...out]`, `params` the module's selected parameters.
 */
export function addSecondOrderTerms(
  RDin: tf.Tensor,
  d: ModuleDerivatives,
  rec: ForwardRecord,
  Rx: tf.Tensor | undefined,
  delta: tf.Tensor,
  params: readonly ParamInfo[],
  vOf: Map<number, tf.Tensor>,
): tf.Tensor {
  let out = RDin;
  if (d.residualDiag !== undefined && Rx !== undefined) {
    out = tf.add(out, tf.mul(tf.expandDims(d.residualDiag(rec, delta), 0), Rx));
  }
  const kp = params.find((p) => p.role === 'kernel');
  if (kp !== undefined && isLinearModule(d)) {
    const vk = vOf.get(kp.index) as tf.Tensor;
    const d1 = tf.expandDims(delta, 0);
    const terms = (vk.shape[0] === 1 ? [tf.reshape(vk, kp.shape as number[])] : tf.unstack(vk)).map((k) => d.jacTMatProdWithKernel(rec, d1, k));
    out = tf.add(out, terms.length === 1 ? (terms[0] as tf.Tensor) : tf.concat(terms, 0));
  }
  return out;
}

/**
 * Product of a stack V `[K, size]` with the Hessian (`exact`) or GGN of
 * Σ_{j∈batch} ℓ_j, restricted to the selection. Pure function of the batch
 * (everything intermediate is disposed).
 */
export function curvatureBatchProduct(model: ExtendedModel, exact: boolean, sel: Selection, batch: Batch, V: tf.Tensor2D): tf.Tensor2D {
  const mods = model.modules.map((m) => m.derivatives);
  if (exact) checkModules(mods);
  return tf.tidy(() => {
    const K = V.shape[0];
    const vOf = splitStack(sel, V);
    const { recs, Rin, f, Rf } = rForward(mods, sel, batch.x, vOf);
    const targets = model.loss.prepareTargets(f, batch.y);
    let RD: tf.Tensor = model.loss.hessianMatProd(f, targets, Rf); // [K, N, C]
    let delta: tf.Tensor | undefined = exact ? model.loss.gradient(f, targets) : undefined; // [N, C]
    const out = new Map<number, tf.Tensor>();
    for (let i = mods.length - 1; i >= sel.firstModule; i--) {
      const d = mods[i] as ModuleDerivatives;
      const rec = recs[i] as ForwardRecord;
      const Rx = Rin[i];
      for (const p of sel.byModule[i] as readonly ParamInfo[]) {
        const lin = d as LinearModuleDerivatives;
        if (p.role === 'kernel') {
          let g = paramProduct('summed', lin, 'kernel', p.shape, lin.unfoldInput(rec), RD);
          if (exact && Rx !== undefined) g = tf.add(g, crossKernelTerm(lin, rec, Rx, delta as tf.Tensor, p.shape));
          out.set(p.index, g);
        } else {
          out.set(p.index, paramProduct('summed', lin, 'bias', p.shape, undefined, RD));
        }
      }
      if (i === sel.firstModule) break;
      let RDin = d.jacTMatProd(rec, RD);
      if (exact) {
        const dl = delta as tf.Tensor;
        RDin = addSecondOrderTerms(RDin, d, rec, Rx, dl, sel.byModule[i] as readonly ParamInfo[], vOf);
        delta = tf.reshape(d.jacTMatProd(rec, tf.expandDims(dl, 0)), rec.input.shape);
      }
      RD = RDin;
    }
    return tf.mul(joinStack(sel, out, K), batchScale(model, batch.x.shape[0] as number)) as tf.Tensor2D;
  });
}

/** Unfolded input and folded output gradient of one selected parameter's module (per-sample gradient factors). */
export interface GradientFactors {
  readonly param: ParamInfo;
  readonly module: LinearModuleDerivatives;
  /** Kernel: unfolded input `[N, T, I]`; undefined for a bias. */
  readonly X: tf.Tensor3D | undefined;
  /** Gradient of the batch loss w.r.t. the module output, folded `[N, T, O]`. */
  readonly D: tf.Tensor3D;
}

/**
 * Per-sample gradient factors of the batch: the gradient of sample n w.r.t. a
 * kernel is `X[n]ᵀ D[n]` (bias: `Σ_t D[n, t]`), of the batch loss's term ℓ̂_n
 * (FORMAT.md §4). Call inside a tidy. Also returns `scale = norm(B)/norm(1)`:
 * the gradient of the single-sample loss ℓ_n is `scale ·` that.
 */
export function gradientFactors(model: ExtendedModel, sel: Selection, batch: Batch): { factors: GradientFactors[]; scale: number } {
  const mods = model.modules.map((m) => m.derivatives);
  const recs = recordForward(mods, batch.x);
  const f = (recs[recs.length - 1] as ForwardRecord).output as tf.Tensor2D;
  const targets = model.loss.prepareTargets(f, batch.y);
  let delta: tf.Tensor = model.loss.gradient(f, targets);
  const factors: GradientFactors[] = [];
  for (let i = mods.length - 1; i >= sel.firstModule; i--) {
    const d = mods[i] as ModuleDerivatives;
    const rec = recs[i] as ForwardRecord;
    const ps = sel.byModule[i] as readonly ParamInfo[];
    if (ps.length > 0) {
      const lin = d as LinearModuleDerivatives;
      const D4 = lin.foldOutput(tf.expandDims(delta, 0));
      const [, n, t, o] = D4.shape;
      const D = tf.reshape(D4, [n, t, o]) as tf.Tensor3D;
      const X = ps.some((p) => p.role === 'kernel') ? lin.unfoldInput(rec) : undefined;
      for (const p of ps) factors.push({ param: p, module: lin, X: p.role === 'kernel' ? X : undefined, D });
    }
    if (i === sel.firstModule) break;
    delta = tf.reshape(d.jacTMatProd(rec, tf.expandDims(delta, 0)), rec.input.shape);
  }
  factors.sort((a, b) => a.param.index - b.param.index);
  return { factors, scale: batchScale(model, batch.x.shape[0] as number) };
}

/** `⟨g_n, v_k⟩` for one parameter: `[N, K]` given v `[K, ...shape]`. */
export function perSampleDot(g: GradientFactors, v: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const [N, T, O] = g.D.shape;
    const K = v.shape[0] as number;
    if (g.X === undefined) {
      const b = T === 1 ? tf.reshape(g.D, [N, O]) : tf.sum(g.D, 1);
      return tf.matMul(b, tf.transpose(tf.reshape(v, [K, O]))) as tf.Tensor2D;
    }
    const I = g.X.shape[2];
    const vm = K === 1 ? tf.reshape(v, [I, O]) : tf.reshape(tf.transpose(tf.reshape(v, [K, I, O]), [1, 0, 2]), [I, K * O]);
    const XV = tf.reshape(tf.matMul(tf.reshape(g.X, [N * T, I]), vm), [N * T, K, O]);
    const s = tf.sum(tf.mul(XV, tf.reshape(g.D, [N * T, 1, O])), 2); // [N·T, K]
    return (T === 1 ? s : tf.sum(tf.reshape(s, [N, T, K]), 1)) as tf.Tensor2D;
  });
}

/** `Σ_n W[k, n] g_n` for one parameter: `[K, ...shape]` given weights W `[K, N]`. */
export function weightedGradientSum(g: GradientFactors, W: tf.Tensor2D): tf.Tensor {
  return tf.tidy(() => {
    const [N] = g.D.shape;
    const K = W.shape[0];
    const Dw = tf.mul(tf.reshape(W, [K, N, 1, 1]), tf.expandDims(g.D, 0)) as tf.Tensor4D; // [K, N, T, O]
    if (g.X === undefined) return tf.reshape(tf.sum(Dw, [1, 2]), [K, ...g.param.shape]);
    return tf.reshape(summedKernelProduct(g.X, Dw), [K, ...g.param.shape]);
  });
}

/** Empirical Fisher `Σ_{j∈batch} ∇ℓ_j ∇ℓ_jᵀ` times V `[K, size]`. */
export function empiricalFisherBatchProduct(model: ExtendedModel, sel: Selection, batch: Batch, V: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const K = V.shape[0];
    const vOf = splitStack(sel, V);
    const { factors, scale } = gradientFactors(model, sel, batch);
    let S: tf.Tensor2D | undefined; // [N, K] = ⟨ĝ_n, v_k⟩
    for (const g of factors) {
      const s = perSampleDot(g, vOf.get(g.param.index) as tf.Tensor);
      S = S === undefined ? s : (tf.add(S, s) as tf.Tensor2D);
    }
    const W = tf.mul(tf.transpose(S as tf.Tensor2D), scale * scale) as tf.Tensor2D; // [K, N]
    const out = new Map<number, tf.Tensor>();
    for (const g of factors) out.set(g.param.index, weightedGradientSum(g, W));
    return joinStack(sel, out, K);
  });
}

/**
 * A dataset-averaged curvature operator (see the file comment for the exact
 * definition). Synchronous for in-memory data, asynchronous (`applyAsync`)
 * for a `tf.data.Dataset`.
 */
export class CurvatureOperator extends LinearOperator implements SampledOperator {
  readonly name: string;
  readonly size: number;
  readonly selection: Selection;
  readonly stream: BatchStream;

  constructor(
    readonly model: ExtendedModel,
    readonly kind: CurvatureKind,
    data: DataSource | BatchStream,
    options: CurvatureOptions = {},
  ) {
    super();
    const where = `${kind}Operator`;
    if (!['hessian', 'ggn', 'empiricalFisher'].includes(kind)) {
      throw new Error(`curvature operator: unknown kind '${String(kind)}'; use hessian, ggn or empiricalFisher.`);
    }
    this.selection = selectParams(model, options.params, where);
    this.stream = data instanceof BatchStream ? data : new BatchStream(data, where);
    this.size = this.selection.size;
    this.name = `${where}(D=${this.size})`;
    if (kind === 'hessian') checkModules(model.modules.map((m) => m.derivatives));
  }

  /** The parameters the operator acts on, in flat order. */
  get params(): readonly ParamInfo[] {
    return this.selection.params;
  }

  override get isAsync(): boolean {
    return this.stream.isAsync;
  }

  /** Product with the curvature of Σ_{j∈batch} ℓ_j (not divided by the batch size). */
  batchProductSum(batch: Batch, V: tf.Tensor2D): tf.Tensor2D {
    if (this.kind === 'empiricalFisher') return empiricalFisherBatchProduct(this.model, this.selection, batch, V);
    return curvatureBatchProduct(this.model, this.kind === 'hessian', this.selection, batch, V);
  }

  /** Product with the curvature of the mean loss over one batch `{x, y}`. */
  batchMatmat(batch: Batch, V: tf.Tensor2D): tf.Tensor2D {
    const R = this.batchProductSum(batch, V);
    const out = tf.div(R, batch.x.shape[0] as number) as tf.Tensor2D;
    R.dispose();
    return out;
  }

  private finish(acc: tf.Tensor2D | undefined, rows: number): tf.Tensor2D {
    if (acc === undefined || rows === 0) {
      acc?.dispose();
      throw new Error(`${this.name}: the data is empty; an operator averaged over data needs at least one data point.`);
    }
    const out = tf.div(acc, rows) as tf.Tensor2D;
    acc.dispose();
    return out;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    if (this.stream.isAsync) {
      throw new Error(`${this.name} streams a tf.data.Dataset: use applyAsync (and the async solvers: cgAsync, …), or pass in-memory { x, y } data.`);
    }
    const { sum, rows } = this.stream.run(sumOverBatches((b) => this.batchProductSum(b, V)));
    return this.finish(sum, rows);
  }

  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    const { sum, rows } = await this.stream.runAsync(sumOverBatches((b) => this.batchProductSum(b, V)));
    return this.finish(sum, rows);
  }

  sampledMatmat(V: tf.Tensor2D, rng: Rng, batchSize: number): tf.Tensor2D {
    const b = this.stream.sample(rng, batchSize);
    try {
      return this.batchMatmat(b, V);
    } finally {
      tf.dispose([b.x, b.y]);
    }
  }

  async sampledMatmatAsync(V: tf.Tensor2D, rng: Rng, batchSize: number): Promise<tf.Tensor2D> {
    const b = await this.stream.sampleAsync(rng, batchSize);
    try {
      return this.batchMatmat(b, V);
    } finally {
      tf.dispose([b.x, b.y]);
    }
  }

  /**
   * Restriction to coordinates. When they are whole parameters, the result is
   * a curvature operator on those parameters (cheaper products: only their
   * terms are computed); otherwise a generic restricted view.
   */
  override restrict(indices: IndexSpec): LinearOperator {
    const set = toIndexSet(indices, this.size, `${this.name}.restrict`);
    const chosen = paramsCovering(this.selection.params, set);
    if (chosen === undefined) return super.restrict(set);
    return new CurvatureOperator(this.model, this.kind, this.stream, { params: chosen });
  }
}

/** The parameters whose ranges (within the selection's vector) exactly make up `set`, or undefined. */
function paramsCovering(params: readonly ParamInfo[], set: IndexSet): ParamInfo[] | undefined {
  const inSet = (a: number, b: number) => set.some(([s, e]) => s <= a && b <= e);
  const outSet = (a: number, b: number) => set.every(([s, e]) => e <= a || b <= s);
  const chosen: ParamInfo[] = [];
  let off = 0;
  for (const p of params) {
    const a = off;
    const b = off + p.size;
    off = b;
    if (inSet(a, b)) chosen.push(p);
    else if (!outSet(a, b)) return undefined;
  }
  return chosen.length > 0 ? chosen : undefined;
}

/** Exact Hessian of the mean loss over `data` (see curvature.ts). */
export function hessianOperator(model: ExtendedModel, data: DataSource, options: CurvatureOptions = {}): CurvatureOperator {
  return new CurvatureOperator(model, 'hessian', data, options);
}

/** Generalized Gauss–Newton matrix of the mean loss over `data`. */
export function ggnOperator(model: ExtendedModel, data: DataSource, options: CurvatureOptions = {}): CurvatureOperator {
  return new CurvatureOperator(model, 'ggn', data, options);
}

/** Empirical Fisher `(1/P) Σ_j ∇ℓ_j ∇ℓ_jᵀ` over `data`. */
export function empiricalFisherOperator(model: ExtendedModel, data: DataSource, options: CurvatureOptions = {}): CurvatureOperator {
  return new CurvatureOperator(model, 'empiricalFisher', data, options);
}
