/**
 * The Gram-space machinery shared by the ViViT hooks (GramMatrix, Eigvalsh,
 * Eigh, DirectionalDerivatives, DirectionalDampedNewton).
 *
 * Notation. For a group (GGN block) with parameters p, `V` rows of the loss
 * Hessian's square root (V = C exact, V = M Monte-Carlo), `N` the batch
 * size, `n` curvature samples (all N, or `subsampling`), and the GGN
 * square-root vectors `s_vn ∈ R^{D_g}` (rows of `S_n J_n`, carrying the
 * loss's 1/N for reduction `mean`). With `c² = N/n` (ViViT's correction for
 * curvature subsampling):
 *
 *   Gram            G = c² · [⟨s_vm, s_wn⟩]          [V·n, V·n], index (v,n) ↦ v·n + n
 *   GGN block       c² Σ s_vn s_vnᵀ  — same nonzero eigenvalues λ_k as G
 *   eigenvectors    e_k = c · Σ_{v,n} u_k[(v,n)] s_vn / √λ_k   (G u_k = λ_k u_k)
 *   gammas          γ_nk = N ⟨e_k, g_n⟩               g_n = ∂ℓ_n/∂θ_g (gradient samples)
 *   lambdas         λ_nk = N Σ_v ⟨e_k, s_vn⟩² = n · λ_k · Σ_v u_k[(v,n)]²
 *   Newton step     s = Σ_k −mean_n γ_nk / (mean_n λ_nk + δ_k) · e_k
 *
 * Every quantity is assembled from per-parameter Gram contributions
 * (`⟨s_vm, s_wn⟩` restricted to p, and the cross products `⟨s_vm, g_n⟩`),
 * summed over the group's parameters when its last parameter is done; the
 * Gram matrix is eigen-decomposed in float64 on the CPU (Eigvalsh: a
 * two-stage solver with TF.js matMuls for large Gram matrices); parameter-space
 * vectors are one re-weighted summed product per parameter (gramProducts.ts).
 * The D_g × D_g GGN and the `[V, n, ...p]` per-sample square roots are never formed
 * (except, for layers with several patches per sample, where explicit
 * per-sample products are the cheaper Gram route).
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelInfo, ParamContext, StepInfo } from '../src/engine/extension';
import { checkSubsampling } from '../src/engine/extension';
import type { GroupHook, ResolvedGroup } from '../src/engine/hook';
import { SqrtGgnExactQuantity, SqrtGgnMcQuantity } from '../src/engine/quantity';
import { eigh, eigvalsh } from '../src/linalg/index';
import { eigvalshLargeSync, LARGE_EIGEN_THRESHOLD } from '../src/linalg/large';
import { ensureFits, validateBackprop } from '../extensions/secondorder/common';
import { biasCrossGram, chooseKernelGramRoute, kernelCrossGram, weightedParamProduct } from './gramProducts';
import {
  aboveRelativeThreshold,
  checkSelection,
  copyGroups,
  type Criterion,
  type HostMatrix,
  type VivitGroup,
} from './groups';

/** Relative accuracy floor of the two-stage eigenvalue solver (float32 band reduction). */
export const TWO_STAGE_CUTOFF = 1e-6;

/** A numerical warning of a ViViT hook (delivered to `onWarning`, and listed in the group's result). */
export type VivitWarning = {
  /** The hook's name. */
  hook: string;
  /** Index of the group (in the order the groups were given). */
  group: number;
  code: 'smallEigenvalues';
  message: string;
  /** The offending eigenvalues. */
  eigenvalues: number[];
  /** The threshold they fell below (`warnSmallEigvals`). */
  threshold: number;
};

/**
 * How Eigvalsh computes eigenvalues: 'float64' (Householder + QL in float64 on
 * the CPU, ≈ 4/3 n³ flops), 'twoStage' (band reduction with TF.js matMuls in
 * float32, then float64; absolute error ≈ 1e-6·λ_max, so eigenvalues below
 * that are noise), 'auto' (twoStage for Gram size ≥ 384 off the cpu backend).
 */
export type EigenvalueMethod = 'auto' | 'float64' | 'twoStage';

/** Options shared by every ViViT hook. */
export interface VivitBaseOptions {
  /** The parameter groups (GGN blocks): `[{ params, criterion?, damping? }]`. */
  groups: readonly VivitGroup[];
  /** Result name (default: the class name); needed to run two instances at once. */
  name?: string;
  /**
   * Eigenvalues with `|λ| ≤ relativeCutoff · max|λ|` are treated as zero and
   * dropped from `evals` (default 1e-8, FORMAT.md §6.4; ViViT's Gram matrix has
   * V·n eigenvalues, at most D_g of them nonzero). A negative value keeps all V·n.
   * Float32 Gram matrices carry noise of ~1e-7 · max, so eigenvalues below
   * ~1e-6 · max are not reliable.
   */
  relativeCutoff?: number;
  /** Seed of the Monte-Carlo sampling (default: the step's seed). */
  seed?: number;
}

/** Options of hooks that transform eigenvectors to parameter space. */
export interface VivitDirectionOptions extends VivitBaseOptions {
  /**
   * Warn (see `onWarning`) when a selected eigenvalue has `|λ| <
   * warnSmallEigvals`: the transformation `e = V u / √λ` to parameter space is
   * numerically unstable there (ViViT's default 1e-4; 0 disables).
   */
  warnSmallEigvals?: number;
  /** Receives numerical warnings (no console output is ever written). */
  onWarning?: (warning: VivitWarning) => void;
}

/** How the hooks sample: normalised options. */
export interface SamplingSettings {
  /** Curvature samples (undefined: the whole batch). */
  readonly curvature: readonly number[] | undefined;
  /** Gradient samples (undefined: the whole batch). */
  readonly gradient: readonly number[] | undefined;
  /** 0: exact square root (V = C); M ≥ 1: Monte-Carlo with M samples. */
  readonly mcSamples: number;
}

/** What a parameter contributes (freed by the engine after `finishGroup`). */
export type GramContribution = {
  /** `⟨s_vm, s_wn⟩` restricted to the parameter, `[V·n, V·n]` (no c²). */
  gram: tf.Tensor2D;
  /** `⟨s_vm, g_n⟩` restricted to the parameter, `[V·n, n_grad]`. */
  cross?: tf.Tensor2D;
  /** Unfolded input of the curvature samples `[n, T, I]` (kernels, when parameter-space vectors are needed). */
  X?: tf.Tensor3D;
  /** Square-root stack folded to patches `[V, n, T, O]` (when parameter-space vectors are needed). */
  D?: tf.Tensor4D;
};

/** The Gram matrix of a group, eigen-decomposed and filtered. */
export interface GramEigen {
  /** Nonzero eigenvalues (|λ| > cutoff), ascending, of the corrected Gram matrix c²·VᵀV. */
  readonly evals: number[];
  /** Size of the Gram matrix V·n. */
  readonly size: number;
  /** Index of each `evals` entry in the full (size) eigen order. */
  readonly kept: number[];
  /** All eigenvectors (size×size row-major, column j), when requested. */
  readonly vectors?: Float64Array;
  /** c² = N / n. */
  readonly c2: number;
}

/** The selected directions in Gram space. */
export interface GramDirections {
  /** Indices into `evals` chosen by the criterion (criterion order). */
  readonly selected: number[];
  /** Their eigenvalues λ_k. */
  readonly lambda: number[];
  /** Gram eigenvectors `[size, K]` row-major, column k, sign fixed (largest-magnitude entry positive). */
  readonly U: HostMatrix;
  /** Warnings raised by the selection (already delivered to `onWarning`). */
  readonly warnings: VivitWarning[];
}

function copySamples(hook: string, option: string, s: readonly number[] | undefined): readonly number[] | undefined {
  if (s === undefined) return undefined;
  if (!Array.isArray(s)) throw new Error(`${hook}: option '${option}' must be an array of batch indices, got ${typeof s}.`);
  if (s.length === 0) throw new Error(`${hook}: option '${option}' is empty; pass at least one index.`);
  const seen = new Set<number>();
  for (const i of s) {
    if (!Number.isInteger(i) || i < 0) throw new Error(`${hook}: option '${option}' has entry ${String(i)}; indices must be integers ≥ 0.`);
    if (seen.has(i)) {
      throw new Error(`${hook}: option '${option}' has index ${i} twice; sub-sampling indices must be unique (ViViT's rule: a repeated sample would be counted twice).`);
    }
    seen.add(i);
  }
  return Object.freeze([...s]);
}

function checkNumber(hook: string, option: string, v: number | undefined, fallback: number, min = -Infinity): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new Error(`${hook}: option '${option}' must be a finite number${min > -Infinity ? ` ≥ ${min}` : ''}, got ${String(v)}.`);
  }
  return v;
}

/** Throw for options that belong to other ViViT hooks (naming the right one), so that a misnamed option is never ignored. */
export function rejectOptions(hook: string, options: object | undefined, wrong: Readonly<Record<string, string>>): void {
  if (options === null || typeof options !== 'object') return;
  for (const [key, right] of Object.entries(wrong)) {
    if ((options as Record<string, unknown>)[key] !== undefined) {
      throw new Error(`${hook}: unknown option '${key}'; ${right}.`);
    }
  }
}

/** Options of the directional hooks that Gram/Eigvalsh/Eigh do not take. */
export const CURVATURE_ONLY_REJECTS: Readonly<Record<string, string>> = {
  subsamplingGgn: "this hook's curvature subsampling option is 'subsampling'",
  subsamplingGrad: 'this hook uses no gradients (DirectionalDerivatives and DirectionalDampedNewton do)',
  mcSamplesGgn: "this hook's Monte-Carlo option is 'mcSamples'",
};

/** Options of Gram/Eigvalsh/Eigh that the directional hooks name differently. */
export const DIRECTIONAL_REJECTS: Readonly<Record<string, string>> = {
  subsampling: "use 'subsamplingGgn' (curvature samples) and/or 'subsamplingGrad' (gradient samples)",
  mcSamples: "use 'mcSamplesGgn'",
};

/** Normalise the sampling options of a hook. */
export function samplingSettings(
  hook: string,
  o: { curvature?: readonly number[]; curvatureOption: string; gradient?: readonly number[]; mcSamples?: number; mcOption: string },
): SamplingSettings {
  const mc = o.mcSamples ?? 0;
  if (typeof mc !== 'number' || !Number.isInteger(mc) || mc < 0) {
    throw new Error(`${hook}: option '${o.mcOption}' must be 0 (exact GGN) or an integer ≥ 1 (Monte-Carlo samples), got ${String(mc)}.`);
  }
  return {
    curvature: copySamples(hook, o.curvatureOption, o.curvature),
    gradient: copySamples(hook, 'subsamplingGrad', o.gradient),
    mcSamples: mc,
  };
}

/** The parts of a parameter-space computation a hook needs. */
interface Needs {
  /** Cross products with the per-sample gradients (gammas). */
  readonly cross: boolean;
  /** Keep X and D for parameter-space vectors (eigenvectors, Newton step). */
  readonly paramSpace: boolean;
}

/**
 * Base of the ViViT hooks: per-parameter Gram contributions during the
 * backward pass, and the group-level pipeline pieces used by `finishGroup`.
 */
export abstract class GramSpaceHook<R extends tf.TensorContainer> implements GroupHook<GramContribution, R> {
  readonly name: string;
  readonly groups: readonly VivitGroup[];
  readonly quantities: readonly (SqrtGgnExactQuantity | SqrtGgnMcQuantity)[];
  /** The backpropagated square root this hook consumes (shared with other hooks/extensions of equal settings). */
  readonly sqrtQuantity: SqrtGgnExactQuantity | SqrtGgnMcQuantity;
  readonly sampling: SamplingSettings;
  readonly relativeCutoff: number;
  readonly warnSmallEigvals: number;
  readonly seed: number | undefined;
  protected readonly onWarning: ((w: VivitWarning) => void) | undefined;
  protected abstract readonly needs: Needs;

  protected constructor(defaultName: string, options: VivitDirectionOptions, sampling: SamplingSettings) {
    if (options === null || typeof options !== 'object') {
      throw new Error(`${defaultName}: options { groups, ... } are required (e.g. { groups: groupsFull(ext) }).`);
    }
    this.name = options.name ?? defaultName;
    this.groups = copyGroups(this.name, options.groups);
    this.sampling = sampling;
    this.relativeCutoff = checkNumber(this.name, 'relativeCutoff', options.relativeCutoff, 1e-8);
    this.warnSmallEigvals = checkNumber(this.name, 'warnSmallEigvals', options.warnSmallEigvals, 1e-4, 0);
    if (options.seed !== undefined) checkNumber(this.name, 'seed', options.seed, 0);
    this.seed = options.seed;
    if (options.onWarning !== undefined && typeof options.onWarning !== 'function') {
      throw new Error(`${this.name}: option 'onWarning' must be a function (warning) => void.`);
    }
    this.onWarning = options.onWarning;
    this.sqrtQuantity =
      sampling.mcSamples === 0
        ? new SqrtGgnExactQuantity(sampling.curvature)
        : new SqrtGgnMcQuantity(sampling.mcSamples, options.seed, sampling.curvature);
    this.quantities = [this.sqrtQuantity];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, this.sampling.mcSamples === 0 ? 'sqrtHessian' : 'sqrtHessianSampled');
  }

  validateStep(step: StepInfo): void {
    checkSubsampling(this.name, this.sampling.curvature, step.batchSize);
    if (this.needs.cross) checkSubsampling(this.name, this.sampling.gradient, step.batchSize);
  }

  computeParam(ctx: ParamContext): GramContribution {
    const curv = this.sampling.curvature;
    return tf.tidy(() => {
      const D = ctx.module.foldOutput(ctx.value(this.sqrtQuantity)); // [V, n, T, O]
      const kernel = ctx.param.role === 'kernel';
      const X = kernel ? ctx.unfoldedInput(curv) : undefined;
      const gram = X ? this.kernelGram(ctx, X, D, X, D) : biasCrossGram(D, D);
      const out: GramContribution = { gram };
      if (this.needs.cross) {
        const grad = this.sampling.gradient;
        const G = ctx.module.foldOutput(ctx.gradStack(grad)); // [1, n_grad, T, O]
        out.cross = X ? this.kernelGram(ctx, X, D, ctx.unfoldedInput(grad), G) : biasCrossGram(D, G);
      }
      if (this.needs.paramSpace) {
        // The engine frees the module's buffers after this parameter: keep own references.
        out.D = tf.clone(D);
        if (X) out.X = tf.clone(X);
      }
      return out;
    });
  }

  private kernelGram(ctx: ParamContext, Xa: tf.Tensor3D, Da: tf.Tensor4D, Xb: tf.Tensor3D, Db: tf.Tensor4D): tf.Tensor2D {
    const [na, T, I] = Xa.shape;
    const [Va, , , O] = Da.shape;
    const [Vb, nb] = Db.shape;
    const route = chooseKernelGramRoute(Va, na, Vb, nb, T, I, O);
    if (route === 'explicit') {
      ensureFits(
        this.name,
        `the per-sample products of parameter '${ctx.param.name}' (V = ${Va}, n = ${na}, ${I * O} entries each)`,
        (Va * na + (Xa === Xb ? 0 : Vb * nb)) * I * O * 2,
        `Pass fewer curvature samples ('subsampling'/'subsamplingGgn') or use Monte-Carlo ('mcSamples').`,
      );
    }
    return kernelCrossGram(Xa, Da, Xb, Db, route);
  }

  abstract finishGroup(group: ResolvedGroup, contributions: readonly GramContribution[], step: StepInfo): R;

  // ---------------------------------------------------------------- group pipeline

  /** Number of curvature samples n for a batch of N. */
  protected curvatureCount(N: number): number {
    return this.sampling.curvature?.length ?? N;
  }

  /** `Σ_p ⟨s, s⟩_p` (no correction) `[V·n, V·n]`. */
  protected rawGram(contributions: readonly GramContribution[]): tf.Tensor2D {
    return tf.tidy(() =>
      contributions.length === 1 ? tf.clone((contributions[0] as GramContribution).gram) : (tf.addN(contributions.map((c) => c.gram)) as tf.Tensor2D),
    );
  }

  /**
   * Eigen-decomposition of c²·VᵀV, zero eigenvalues dropped. With vectors:
   * float64 `eigh` on the CPU. Values only: `eigvalshLargeSync` with `method`
   * ('auto': two-stage TF.js band reduction for V·n ≥ 384 off the cpu
   * backend, else float64 `eigvalsh`).
   */
  protected decompose(
    contributions: readonly GramContribution[],
    N: number,
    vectors: boolean,
    method: EigenvalueMethod = 'float64',
  ): GramEigen {
    const raw = this.rawGram(contributions);
    const size = raw.shape[0];
    const data = raw.dataSync();
    raw.dispose();
    const c2 = N / this.curvatureCount(N);
    let values: Float64Array;
    let vecs: Float64Array | undefined;
    let cutoff = this.relativeCutoff;
    if (vectors) {
      const e = eigh(data, size, { vectors: true });
      values = e.values;
      vecs = e.vectors;
    } else {
      const twoStage = method === 'twoStage' || (method === 'auto' && size >= LARGE_EIGEN_THRESHOLD && tf.getBackend() !== 'cpu');
      values = twoStage ? eigvalshLargeSync(data as Float32Array, size, { method: 'twoStage' }) : eigvalsh(data, size);
      // Below its accuracy the two-stage solver's eigenvalues are indistinguishable from 0.
      if (twoStage && cutoff >= 0) cutoff = Math.max(cutoff, TWO_STAGE_CUTOFF);
    }
    let maxAbs = 0;
    for (const v of values) maxAbs = Math.max(maxAbs, Math.abs(v));
    const evals: number[] = [];
    const kept: number[] = [];
    values.forEach((v, j) => {
      if (Math.abs(v) > cutoff * maxAbs || (cutoff < 0 && maxAbs === 0)) {
        evals.push(v * c2);
        kept.push(j);
      }
    });
    return { evals, size, kept, c2, ...(vecs ? { vectors: vecs } : {}) };
  }

  /** Apply the group's criterion; check the selection; warn about tiny eigenvalues. */
  protected select(group: ResolvedGroup, eig: GramEigen): GramDirections {
    const spec = this.groups[group.index] as VivitGroup;
    const criterion: Criterion = spec.criterion ?? aboveRelativeThreshold();
    const selected = checkSelection(this.name, group.index, criterion(eig.evals.slice()), eig.evals.length);
    const lambda = selected.map((i) => eig.evals[i] as number);
    const bad = lambda.filter((l) => !(l > 0));
    if (bad.length > 0) {
      throw new Error(
        `${this.name}: group ${group.index}'s criterion selected eigenvalue ${bad[0]} ≤ 0, whose eigenvector cannot be mapped to parameter space (e = V u / √λ); select positive eigenvalues only, e.g. aboveRelativeThreshold(1e-4) or topK(k).`,
      );
    }
    const small = lambda.filter((l) => Math.abs(l) < this.warnSmallEigvals);
    const warnings: VivitWarning[] = [];
    if (small.length > 0) {
      const w: VivitWarning = {
        hook: this.name,
        group: group.index,
        code: 'smallEigenvalues',
        message: `${this.name}: group ${group.index} selected ${small.length} eigenvalue(s) below ${this.warnSmallEigvals} (smallest ${Math.min(
          ...small,
        ).toExponential(2)}); their parameter-space transformation divides by √λ and is numerically unstable (eigenvectors may lose orthogonality). Use a more restrictive criterion, e.g. aboveRelativeThreshold(1e-4) or topK(k).`,
        eigenvalues: small,
        threshold: this.warnSmallEigvals,
      };
      warnings.push(w);
      this.onWarning?.(w);
    }
    const K = selected.length;
    const size = eig.size;
    const V = eig.vectors as Float64Array;
    const U = new Float64Array(size * K);
    selected.forEach((sel, k) => {
      const j = eig.kept[sel] as number;
      // Sign convention: the largest-magnitude entry of u_k is positive.
      let best = 0;
      for (let i = 0; i < size; i++) if (Math.abs(V[i * size + j] as number) > Math.abs(best)) best = V[i * size + j] as number;
      const sign = best < 0 ? -1 : 1;
      for (let i = 0; i < size; i++) U[i * K + k] = sign * (V[i * size + j] as number);
    });
    return { selected, lambda, U: { rows: size, cols: K, data: U }, warnings };
  }

  /** Gram-space weights of the parameter-space eigenvectors: `W[k, i] = c · U[i,k] / √λ_k` → `[K, size]`. */
  protected directionWeights(dirs: GramDirections, c2: number): Float32Array {
    const { rows: size, cols: K, data: U } = dirs.U;
    const W = new Float32Array(K * size);
    for (let k = 0; k < K; k++) {
      const f = Math.sqrt(c2 / (dirs.lambda[k] as number));
      for (let i = 0; i < size; i++) W[k * size + i] = f * (U[i * K + k] as number);
    }
    return W;
  }

  /** Parameter-space vectors `Σ_i W[k,i] s_i` per group parameter → `[K, ...p]` each. */
  protected paramVectors(group: ResolvedGroup, contributions: readonly GramContribution[], W: Float32Array, K: number, what: string): tf.Tensor[] {
    const size = (contributions[0] as GramContribution).gram.shape[0];
    const entries = group.params.reduce((s, p, i) => {
      const D = (contributions[i] as GramContribution).D as tf.Tensor4D;
      const [, n, T, O] = D.shape;
      return s + K * (p.size + n * T * O);
    }, 0);
    ensureFits(this.name, `the ${what} of group ${group.index} (K = ${K} directions, ${group.size} parameters)`, entries, 'Select fewer directions with the group\'s criterion (e.g. topK(k)).');
    if (K === 0) return group.params.map((p) => tf.zeros([0, ...p.shape]));
    const Wt = tf.tensor2d(W, [K, size]);
    try {
      return group.params.map((p, i) => {
        const c = contributions[i] as GramContribution;
        return weightedParamProduct(p.role, p.shape, c.X, c.D as tf.Tensor4D, Wt);
      });
    } finally {
      Wt.dispose();
    }
  }

  /**
   * Unit parameter-space eigenvectors (ViViT normalises them explicitly):
   * `[K, ...p]` per group parameter.
   */
  protected eigenvectors(group: ResolvedGroup, contributions: readonly GramContribution[], dirs: GramDirections, c2: number): tf.Tensor[] {
    const K = dirs.selected.length;
    const raw = this.paramVectors(group, contributions, this.directionWeights(dirs, c2), K, 'eigenvectors');
    if (K === 0) return raw;
    const out = tf.tidy(() => {
      const sq = tf.addN(raw.map((e) => tf.sum(tf.square(tf.reshape(e, [K, -1])), 1))) as tf.Tensor1D;
      const inv = tf.rsqrt(sq);
      return raw.map((e) => tf.mul(e, tf.reshape(inv, [K, ...new Array(e.rank - 1).fill(1)])));
    });
    tf.dispose(raw);
    return out;
  }

  /** `γ [n_grad, K]` = N · crossᵀ · Wᵀ (float32, one 2-D matMul). */
  protected gammas(contributions: readonly GramContribution[], W: Float32Array, K: number, N: number): tf.Tensor2D {
    const nGrad = ((contributions[0] as GramContribution).cross as tf.Tensor2D).shape[1];
    // No zero-size matMul (wasm's XNNPACK logs an error for it).
    if (K === 0) return tf.zeros([nGrad, 0]);
    return tf.tidy(() => {
      const cross = contributions.length === 1 ? ((contributions[0] as GramContribution).cross as tf.Tensor2D) : (tf.addN(contributions.map((c) => c.cross as tf.Tensor2D)) as tf.Tensor2D);
      const size = cross.shape[0];
      // Wᵀ [size, K] from the CPU copy (no transposed matMul).
      const WT = new Float32Array(size * K);
      for (let k = 0; k < K; k++) for (let i = 0; i < size; i++) WT[i * K + k] = W[k * size + i] as number;
      const g = tf.matMul(tf.transpose(cross), tf.tensor2d(WT, [size, K]));
      return tf.mul(g, N) as tf.Tensor2D;
    });
  }

  /**
   * Eigenpairs, selection, gammas and lambdas of a group (DirectionalDerivatives,
   * DirectionalDampedNewton); eigenvectors in parameter space when asked.
   */
  protected directional(
    group: ResolvedGroup,
    contributions: readonly GramContribution[],
    step: StepInfo,
    withEvecs: boolean,
  ): { eig: GramEigen; dirs: GramDirections; W: Float32Array; gammas: tf.Tensor2D; lambdas: HostMatrix; evecs?: tf.Tensor[] } {
    const N = step.batchSize;
    const eig = this.decompose(contributions, N, true);
    const dirs = this.select(group, eig);
    const K = dirs.selected.length;
    const W = this.directionWeights(dirs, eig.c2);
    const lambdas = this.lambdas(dirs, this.curvatureCount(N));
    const gammas = this.gammas(contributions, W, K, N);
    if (!withEvecs) return { eig, dirs, W, gammas, lambdas };
    try {
      return { eig, dirs, W, gammas, lambdas, evecs: this.eigenvectors(group, contributions, dirs, eig.c2) };
    } catch (e) {
      gammas.dispose();
      throw e;
    }
  }

  /** `λ_nk = n · λ_k · Σ_v u_k[(v,n)]²` on the CPU → `[n, K]` row-major. */
  protected lambdas(dirs: GramDirections, n: number): HostMatrix {
    const { rows: size, cols: K, data: U } = dirs.U;
    const V = size / n;
    const out = new Float64Array(n * K);
    for (let k = 0; k < K; k++) {
      const f = n * (dirs.lambda[k] as number);
      for (let m = 0; m < n; m++) {
        let s = 0;
        for (let v = 0; v < V; v++) {
          const u = U[(v * n + m) * K + k] as number;
          s += u * u;
        }
        out[m * K + k] = f * s;
      }
    }
    return { rows: n, cols: K, data: out };
  }
}

/** A row-major host matrix as a float32 tensor. */
export function hostToTensor(m: HostMatrix): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(m.data), [m.rows, m.cols]);
}

/** Column means of a row-major host matrix. */
export function columnMeans(m: HostMatrix): Float64Array {
  const out = new Float64Array(m.cols);
  for (let i = 0; i < m.rows; i++) for (let k = 0; k < m.cols; k++) out[k] += m.data[i * m.cols + k] as number;
  for (let k = 0; k < m.cols; k++) out[k] = (out[k] as number) / Math.max(1, m.rows);
  return out;
}
