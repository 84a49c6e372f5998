/**
 * KfacOptimizer: a Kronecker-factored preconditioned optimizer (K-FAC,
 * Martens & Grosse 2015; KFLR; EKFAC, George et al. 2018) for the Trainer.
 *
 * Each step, for every kernel (Dense, Conv2D) with Kronecker factors
 * `{A, G}` (the GGN block ≈ A ⊗ G, see kroneckerFactors.ts) and every bias
 * with `{G}`:
 *
 *   1. moving averages  Ā ← EMA(A),  Ḡ ← EMA(G)   (ExponentialMovingAverage, decay β, bias-corrected)
 *   2. every `inverseEvery` steps (and at the first): eigendecompositions
 *      Ā = UA diag(a) UAᵀ, Ḡ = UG diag(g) UGᵀ (float64 on the CPU, on the
 *      factors' support: exactly-zero rows — dead inputs/units — are split off);
 *      the preconditioner is fixed between these "inversions"
 *   3. Δ = P⁻¹ ∇θ in the eigenbasis Q = UA ⊗ UG:  Δ = UA [(UAᵀ ∇W UG) ⊘ S] UGᵀ  with
 *        dampingMode 'exact'   S = a gᵀ + δ                (= (Ā⊗Ḡ + δI)⁻¹ ∇ exactly; default)
 *        dampingMode 'piSplit' S = (a + π√δ)(g + √δ/π)ᵀ   (= ((Ā + π√δ I) ⊗ (Ḡ + √δ/π I))⁻¹ ∇,
 *                              π = √((tr Ā / I) / (tr Ḡ / O)), Martens & Grosse §6.3)
 *        variant 'ekfac'       S = s + δ, s the EMA of the EKFAC scaling
 *                              s[i][j] = Σ_{n,v} (UAᵀ S_vn UG)[i][j]² in the current basis
 *      A bias uses `S = g + δ` (its block is Ḡ itself) in every mode.
 *      Negative eigenvalues (float32 rounding of PSD factors) are clamped to 0.
 *   4. optional KL clipping (Ba et al. 2017, as in KFAC-pytorch):
 *      Δ ← ν Δ, ν = min(1, √(κ / (lr² Σ_p ⟨Δ_p, ∇_p⟩)))
 *   5. optional heavy-ball momentum on Δ: m ← μ m + Δ; update = m (μ = 0: update = Δ)
 *   6. θ ← θ − lr · update
 *
 * Variants: 'kfac' (G from the Monte-Carlo GGN square root, `mcSamples`
 * per sample), 'kflr' (G from the exact square root, C vectors per sample),
 * 'ekfac' (the eigenbasis of the KFLR factors — of the KFAC factors with
 * `mcSamples` — and a per-step scaling re-estimated in that basis from the
 * same square root). EKFAC's scaling lives in the basis of the last
 * inversion: its moving average restarts at every inversion, and on the
 * inversion steps themselves (whose backward pass ran in the old basis) the
 * scaling is K-FAC's `a gᵀ`, so that step is a K-FAC step in the new basis.
 *
 * Cost: the factors (cheap: `I²·N·T + O²·V·N` per layer), the
 * eigendecompositions every `inverseEvery` steps (`≈ 9(I³ + O³)` float64
 * flops per layer on the live rows, e.g. ≈ 0.3–0.8 s for MNIST's 784 inputs
 * on this machine), and four 2-D matMuls per parameter per step.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../../engine/extend';
import type { Extension, ModelInfo, ParamContext } from '../../engine/extension';
import type { BackwardResult } from '../../engine/results';
import type { ParamInfo } from '../../engine/params';
import { SqrtGgnExactQuantity, SqrtGgnMcQuantity } from '../../engine/quantity';
import { KFAC } from '../../../extensions/secondorder/kfac';
import { KFLR } from '../../../extensions/secondorder/kflr';
import { ekfacScaling } from '../../../extensions/secondorder/ekfac';
import { validateBackprop } from '../../../extensions/secondorder/common';
import { applyInBasis, type KroneckerEigen, type KroneckerFactors } from '../../../extensions/secondorder/kroneckerFactors';
import { eigh } from '../../linalg/index';
import { ExponentialMovingAverage } from '../accumulate';
import type { StepContext, StepOptimizer, StepRequests } from '../events';
import {
  checkExtendedModel,
  checkLearningRate,
  checkOptionNames,
  checkPositive,
  checkPositiveInt,
  checkSameModel,
  checkUnitInterval,
  learningRateAt,
  type FixedRequests,
  type LearningRate,
} from './common';

export type KfacVariant = 'kfac' | 'kflr' | 'ekfac';
export type KfacDampingMode = 'exact' | 'piSplit';

export interface KfacOptimizerOptions {
  /** Learning rate (or schedule step → lr). Default 0.01. */
  lr?: LearningRate;
  /** Tikhonov damping δ > 0 (default 1e-2). */
  damping?: number;
  /** 'exact' (default): (Ā⊗Ḡ + δI)⁻¹; 'piSplit': ((Ā + π√δI) ⊗ (Ḡ + √δ/π I))⁻¹. K-FAC/KFLR only. */
  dampingMode?: KfacDampingMode;
  /** 'kfac' (default, Monte-Carlo G), 'kflr' (exact G) or 'ekfac' (eigenbasis + re-estimated scaling). */
  variant?: KfacVariant;
  /** Monte-Carlo samples per data point ('kfac': default 1; 'ekfac': use the MC square root instead of the exact one). */
  mcSamples?: number;
  /** Decay β of the factors' (and EKFAC scaling's) moving average, in [0, 1) (default 0.95). */
  decay?: number;
  /** Recompute the eigendecompositions every k ≥ 1 steps (default 10). */
  inverseEvery?: number;
  /** Heavy-ball momentum μ in [0, 1) on the preconditioned direction (default 0). */
  momentum?: number;
  /** KL-clipping bound κ > 0 (off by default). */
  klClip?: number;
  /** Prefix of the internal extensions' names (default 'KfacOptimizer'). */
  name?: string;
}

const KNOWN = ['lr', 'damping', 'dampingMode', 'variant', 'mcSamples', 'decay', 'inverseEvery', 'momentum', 'klClip', 'name'];

type Basis = ReadonlyMap<string, KroneckerEigen>;

/**
 * `M = U diag(evals) Uᵀ` of a symmetric PSD factor, decomposed on its
 * support: rows that are exactly zero (dead inputs such as MNIST's border
 * pixels, dead ReLU units; for a PSD matrix a zero diagonal entry forces a
 * zero row) get their unit vector and eigenvalue 0; the rest is
 * eigendecomposed in float64 on the CPU (eigh). Exact, and cheaper when many
 * rows are dead. Columns: the dead rows' unit vectors first, then the
 * support's eigenvectors by ascending eigenvalue.
 */
export function factorEigen(M: tf.Tensor2D, what: string): { U: tf.Tensor2D; evals: tf.Tensor1D } {
  const [n, m] = M.shape;
  if (n !== m) throw new Error(`${what}: expected a square factor, got [${M.shape.join(', ')}].`);
  const a = M.dataSync();
  const live: number[] = [];
  const dead: number[] = [];
  for (let i = 0; i < n; i++) {
    let zero = true;
    for (let j = 0; j < n && zero; j++) if ((a[i * n + j] as number) !== 0) zero = false;
    (zero ? dead : live).push(i);
  }
  const k = live.length;
  const U = new Float32Array(n * n);
  const evals = new Float32Array(n);
  dead.forEach((i, c) => (U[i * n + c] = 1));
  if (k > 0) {
    const sub = new Float64Array(k * k);
    live.forEach((i, r) => live.forEach((j, c) => (sub[r * k + c] = a[i * n + j] as number)));
    const e = eigh(sub, k, { vectors: true });
    const V = e.vectors as Float64Array;
    const z = dead.length;
    for (let c = 0; c < k; c++) {
      evals[z + c] = e.values[c] as number;
      live.forEach((i, r) => (U[i * n + z + c] = V[r * k + c] as number));
    }
  }
  return { U: tf.tensor2d(U, [n, n]), evals: tf.tensor1d(evals) };
}

/** factorEigen of both factors (new tensors). */
function kroneckerEigenOnSupport(f: KroneckerFactors, param: string): KroneckerEigen {
  const g = factorEigen(f.G, `KfacOptimizer: G of '${param}'`);
  if (!('A' in f) || f.A === undefined) return { UG: g.U, evalsG: g.evals };
  try {
    const a = factorEigen(f.A, `KfacOptimizer: A of '${param}'`);
    return { UA: a.U, evalsA: a.evals, UG: g.U, evalsG: g.evals };
  } catch (e) {
    tf.dispose([g.U, g.evals]);
    throw e;
  }
}

/**
 * EKFAC's scaling in a given eigenbasis: `Σ_{n,v} (UAᵀ S_vn UG)²` `[I, O]`
 * (bias: `Σ_{n,v} (UGᵀ b_vn)²` `[O]`), from a backpropagated square root;
 * nothing is stored while there is no basis.
 */
class EkfacScaling implements Extension<tf.Tensor> {
  readonly quantities: readonly (SqrtGgnExactQuantity | SqrtGgnMcQuantity)[];

  constructor(
    readonly name: string,
    private readonly stack: SqrtGgnExactQuantity | SqrtGgnMcQuantity,
    private readonly basis: () => Basis | undefined,
  ) {
    this.quantities = [stack];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, this.stack instanceof SqrtGgnExactQuantity ? 'sqrtHessian' : 'sqrtHessianSampled');
  }

  computeParam(ctx: ParamContext): tf.Tensor | undefined {
    const eig = this.basis()?.get(ctx.param.name);
    if (eig === undefined) return undefined;
    return ekfacScaling(ctx, ctx.value(this.stack), eig.UA, eig.UG);
  }
}

export class KfacOptimizer implements StepOptimizer, FixedRequests {
  readonly ext: ExtendedModel;
  readonly lr: LearningRate;
  readonly damping: number;
  readonly dampingMode: KfacDampingMode;
  readonly variant: KfacVariant;
  readonly decay: number;
  readonly inverseEvery: number;
  readonly momentum: number;
  readonly klClip: number | undefined;
  /** The extension that computes the step's Kronecker factors (KFAC or KFLR). */
  readonly factorExtension: KFAC | KFLR;
  /** EKFAC only: the extension that computes the scaling in the current basis. */
  readonly scalingExtension: Extension<tf.Tensor> | undefined;
  readonly allRequests: StepRequests;

  private readonly factorEma: ExponentialMovingAverage<Record<string, KroneckerFactors>>;
  private readonly scalingEma: ExponentialMovingAverage<Record<string, tf.Tensor>> | undefined;
  private basis: Map<string, KroneckerEigen> | undefined;
  /** K-FAC/KFLR: 1/S per parameter, fixed between inversions. */
  private inverseScale: Map<string, tf.Tensor> | undefined;
  private readonly velocity = new Map<string, tf.Tensor>();
  private taken = 0;
  private inverted = 0;
  private lastInversion = -1;
  private disposed = false;

  constructor(ext: ExtendedModel, options: KfacOptimizerOptions = {}) {
    const owner = 'KfacOptimizer';
    checkExtendedModel(owner, ext);
    checkOptionNames(owner, options, KNOWN);
    this.ext = ext;
    this.lr = checkLearningRate(owner, options.lr, 0.01);
    this.damping = checkPositive(owner, 'damping', options.damping, 1e-2, ' (Tikhonov damping; the factors are rank-deficient)');
    const mode = options.dampingMode ?? 'exact';
    if (mode !== 'exact' && mode !== 'piSplit') throw new Error(`${owner}: option 'dampingMode' must be 'exact' or 'piSplit', got '${String(mode)}'.`);
    const variant = options.variant ?? 'kfac';
    if (variant !== 'kfac' && variant !== 'kflr' && variant !== 'ekfac') {
      throw new Error(`${owner}: option 'variant' must be 'kfac', 'kflr' or 'ekfac', got '${String(variant)}'.`);
    }
    if (variant === 'ekfac' && options.dampingMode !== undefined && mode !== 'exact') {
      throw new Error(`${owner}: dampingMode 'piSplit' applies to Kronecker products (variants 'kfac', 'kflr'); EKFAC damps its diagonal scaling exactly (S = s + δ).`);
    }
    if (variant === 'kflr' && options.mcSamples !== undefined) {
      throw new Error(`${owner}: option 'mcSamples' does not apply to variant 'kflr' (exact square root); use variant 'kfac' for Monte-Carlo factors.`);
    }
    this.dampingMode = mode;
    this.variant = variant;
    this.decay = checkUnitInterval(owner, 'decay', options.decay, 0.95);
    this.inverseEvery = checkPositiveInt(owner, 'inverseEvery', options.inverseEvery, 10, ' (recompute the eigendecompositions every k steps)');
    this.momentum = checkUnitInterval(owner, 'momentum', options.momentum, 0);
    this.klClip = options.klClip === undefined ? undefined : checkPositive(owner, 'klClip', options.klClip, 0);
    const name = options.name ?? owner;
    const useMc = variant === 'kfac' || (variant === 'ekfac' && options.mcSamples !== undefined);
    if (useMc) {
      const M = checkPositiveInt(owner, 'mcSamples', options.mcSamples, 1);
      this.factorExtension = new KFAC({ mcSamples: M, name: `${name}:KFAC` });
    } else {
      this.factorExtension = new KFLR({ name: `${name}:KFLR` });
    }
    if (variant === 'ekfac') {
      const q = useMc ? new SqrtGgnMcQuantity((this.factorExtension as KFAC).mcSamples, undefined) : new SqrtGgnExactQuantity();
      this.scalingExtension = new EkfacScaling(`${name}:EKFACScaling`, q, () => this.basis);
      this.scalingEma = new ExponentialMovingAverage({ decay: this.decay });
    }
    this.factorEma = new ExponentialMovingAverage({ decay: this.decay });
    const extensions: Extension<tf.TensorContainer>[] = [this.factorExtension];
    if (this.scalingExtension) extensions.push(this.scalingExtension);
    this.allRequests = Object.freeze({ extensions });
    // Fail early on models the factors do not support.
    for (const e of extensions) e.validate?.(ext.info);
  }

  /** Steps applied so far. */
  get steps(): number {
    return this.taken;
  }

  /** Eigendecompositions ("inversions") done so far. */
  get inversions(): number {
    return this.inverted;
  }

  /** The `context.step` of the last inversion (−1 before the first step). */
  get lastInversionStep(): number {
    return this.lastInversion;
  }

  /** Whether the next applied step recomputes the eigendecompositions. */
  get invertsNext(): boolean {
    return this.taken % this.inverseEvery === 0 || this.basis === undefined;
  }

  /** The moving-average factors per parameter (owned by the optimizer; valid until the next step). */
  factors(): Record<string, KroneckerFactors> {
    this.check();
    return this.factorEma.value();
  }

  /** The eigenbasis of the last inversion per parameter (owned by the optimizer), or undefined before the first step. */
  eigenbasis(): ReadonlyMap<string, KroneckerEigen> | undefined {
    this.check();
    return this.basis;
  }

  /** EKFAC: the moving-average scaling since the last inversion (owned; valid until the next step), or undefined. */
  scaling(): Record<string, tf.Tensor> | undefined {
    this.check();
    return this.scalingEma !== undefined && this.scalingEma.count > 0 ? this.scalingEma.value() : undefined;
  }

  requests(): StepRequests {
    // EKFAC's scaling is wasted on inversion steps (the basis changes after the backward pass).
    if (this.scalingExtension !== undefined && this.invertsNext) return { extensions: [this.factorExtension] };
    return this.allRequests;
  }

  applyStep(result: BackwardResult, context: StepContext): void {
    const owner = 'KfacOptimizer';
    this.check();
    checkSameModel(owner, this.ext, context.ext);
    const lr = learningRateAt(owner, this.lr, context.step);
    const params = this.ext.params;
    const factors: Record<string, KroneckerFactors> = {};
    for (const p of params) {
      if (!result.has(this.factorExtension, p)) {
        throw new Error(
          `${owner}: the step has no Kronecker factors for '${p.name}'; request the optimizer's extensions on every step (Trainer does this; with the plugin use new TrainingPlugin(ext, { ...opt.allRequests })).`,
        );
      }
      factors[p.name] = result.get(this.factorExtension, p);
    }
    this.factorEma.update(factors);
    const invert = this.invertsNext;
    if (invert) this.invert(context.step);
    let scale: Map<string, tf.Tensor>;
    let ownScale = false;
    if (this.variant === 'ekfac') {
      scale = this.ekfacInverseScale(result, invert);
      ownScale = true;
    } else {
      scale = this.inverseScale as Map<string, tf.Tensor>;
    }
    try {
      // Preconditioned directions Δ_p (kept until the update).
      const deltas = new Map<string, tf.Tensor>();
      try {
        for (const p of params) {
          const eig = (this.basis as Map<string, KroneckerEigen>).get(p.name) as KroneckerEigen;
          const g = result.grads[p.name] as tf.Tensor;
          const I = eig.UA ? (eig.UA.shape[0] as number) : 1;
          const O = eig.UG.shape[0] as number;
          deltas.set(
            p.name,
            tf.tidy(() => tf.reshape(applyInBasis(eig.UA, eig.UG, scale.get(p.name) as tf.Tensor, tf.reshape(g, [1, I, O])), g.shape)),
          );
        }
        const nu = this.klClip === undefined ? 1 : this.klFactor(deltas, result, lr);
        for (const p of params) this.update(p, deltas.get(p.name) as tf.Tensor, nu, lr);
      } finally {
        tf.dispose([...deltas.values()]);
      }
    } finally {
      if (ownScale) tf.dispose([...scale.values()]);
    }
    this.taken += 1;
  }

  /** Free the optimizer's state (moving averages, eigenbases, momentum). Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.factorEma.dispose();
    this.scalingEma?.dispose();
    this.freeBasis();
    tf.dispose([...this.velocity.values()]);
    this.velocity.clear();
  }

  // ------------------------------------------------------------------ internals

  private check(): void {
    if (this.disposed) throw new Error('KfacOptimizer: this optimizer was disposed.');
  }

  private freeBasis(): void {
    if (this.basis) for (const e of this.basis.values()) tf.dispose(e as unknown as tf.TensorContainer);
    if (this.inverseScale) tf.dispose([...this.inverseScale.values()]);
    this.basis = undefined;
    this.inverseScale = undefined;
  }

  /** Eigendecompositions of the averaged factors; K-FAC/KFLR also fix 1/S until the next inversion. */
  private invert(step: number): void {
    const avg = this.factorEma.value();
    const basis = new Map<string, KroneckerEigen>();
    const inv = new Map<string, tf.Tensor>();
    try {
      for (const p of this.ext.params) {
        const eig = kroneckerEigenOnSupport(avg[p.name] as KroneckerFactors, p.name);
        for (const t of Object.values(eig)) if (t) tf.keep(t as tf.Tensor);
        basis.set(p.name, eig);
        if (this.variant !== 'ekfac') inv.set(p.name, tf.keep(tf.tidy(() => tf.reciprocal(this.kroneckerScale(eig)))));
      }
    } catch (e) {
      for (const b of basis.values()) tf.dispose(b as unknown as tf.TensorContainer);
      tf.dispose([...inv.values()]);
      throw e;
    }
    this.freeBasis();
    this.basis = basis;
    if (this.variant !== 'ekfac') this.inverseScale = inv;
    this.scalingEma?.reset();
    this.inverted += 1;
    this.lastInversion = step;
  }

  /** S of K-FAC/KFLR in the eigenbasis: `[I, O]` (bias `[1, O]`), damped per `dampingMode`. */
  private kroneckerScale(eig: KroneckerEigen): tf.Tensor {
    const d = this.damping;
    return tf.tidy(() => {
      const O = eig.UG.shape[0] as number;
      const g = tf.reshape(tf.relu(eig.evalsG), [1, O]);
      if (eig.evalsA === undefined) return tf.add(g, d);
      const I = eig.evalsA.shape[0] as number;
      const a = tf.reshape(tf.relu(eig.evalsA), [I, 1]);
      if (this.dampingMode === 'exact') return tf.add(tf.mul(a, g), d);
      // π-split with the trace norm: π² = (tr A / I) / (tr G / O).
      const trA = (tf.sum(a).dataSync()[0] as number) / I;
      const trG = (tf.sum(g).dataSync()[0] as number) / O;
      const pi = trA > 0 && trG > 0 ? Math.sqrt(trA / trG) : 1;
      const s = Math.sqrt(d);
      return tf.mul(tf.add(a, pi * s), tf.add(g, s / pi));
    });
  }

  /** EKFAC: 1/S per parameter for this step (new tensors). */
  private ekfacInverseScale(result: BackwardResult, inverted: boolean): Map<string, tf.Tensor> {
    const ema = this.scalingEma as ExponentialMovingAverage<Record<string, tf.Tensor>>;
    const out = new Map<string, tf.Tensor>();
    if (inverted) {
      // The backward pass ran in the previous basis: K-FAC's scaling in the new one.
      for (const p of this.ext.params) {
        const eig = (this.basis as Map<string, KroneckerEigen>).get(p.name) as KroneckerEigen;
        out.set(p.name, tf.tidy(() => tf.reciprocal(this.exactKron(eig))));
      }
      return out;
    }
    const ext = this.scalingExtension as Extension<tf.Tensor>;
    const s: Record<string, tf.Tensor> = {};
    for (const p of this.ext.params) {
      if (!result.has(ext, p)) {
        throw new Error(`KfacOptimizer: the step has no EKFAC scaling for '${p.name}'; request the optimizer's extensions (opt.requests(step) / opt.allRequests).`);
      }
      s[p.name] = result.get<tf.Tensor>(ext.name, p);
    }
    ema.update(s);
    const avg = ema.value();
    for (const p of this.ext.params) {
      const eig = (this.basis as Map<string, KroneckerEigen>).get(p.name) as KroneckerEigen;
      const O = eig.UG.shape[0] as number;
      const I = eig.UA ? (eig.UA.shape[0] as number) : 1;
      out.set(p.name, tf.tidy(() => tf.reciprocal(tf.add(tf.reshape(avg[p.name] as tf.Tensor, [I, O]), this.damping))));
    }
    return out;
  }

  private exactKron(eig: KroneckerEigen): tf.Tensor {
    const O = eig.UG.shape[0] as number;
    const g = tf.reshape(tf.relu(eig.evalsG), [1, O]);
    if (eig.evalsA === undefined) return tf.add(g, this.damping);
    const I = eig.evalsA.shape[0] as number;
    return tf.add(tf.mul(tf.reshape(tf.relu(eig.evalsA), [I, 1]), g), this.damping);
  }

  /** KL clipping: ν = min(1, √(κ / (lr² Σ_p ⟨Δ_p, ∇_p⟩))). */
  private klFactor(deltas: Map<string, tf.Tensor>, result: BackwardResult, lr: number): number {
    const vg = tf.tidy(() => tf.addN(this.ext.params.map((p) => tf.sum(tf.mul(deltas.get(p.name) as tf.Tensor, result.grads[p.name] as tf.Tensor)))));
    const v = (vg.dataSync()[0] as number) * lr * lr;
    vg.dispose();
    if (!(v > 0)) return 1;
    return Math.min(1, Math.sqrt((this.klClip as number) / v));
  }

  private update(p: ParamInfo, delta: tf.Tensor, nu: number, lr: number): void {
    let dir = delta;
    let fresh: tf.Tensor | undefined;
    if (this.momentum > 0) {
      const prev = this.velocity.get(p.name);
      fresh = tf.keep(tf.tidy(() => (prev === undefined ? tf.mul(delta, nu) : tf.add(tf.mul(prev, this.momentum), tf.mul(delta, nu)))));
      prev?.dispose();
      this.velocity.set(p.name, fresh);
      dir = fresh;
    }
    const scale = this.momentum > 0 ? lr : lr * nu;
    tf.tidy(() => {
      p.variable.assign(tf.sub(p.variable, tf.mul(dir, scale)));
    });
  }
}
