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
 * Gram matrix is eigen-decomposed on the CPU: float64 `eigh`/`eigvalsh` for
 * small Gram matrices, the two-stage solver of src/linalg/large.ts (band
 * reduction with TF.js matMuls, then float64; eigenvectors only for the
 * selected directions) from size 320 on; parameter-space vectors are one
 * re-weighted summed product per parameter (gramProducts.ts). A Dense
 * layer's kernel and bias (same group) share one Gram product
 * `(X Xᵀ + 1) ⊙ (D Dᵀ)`. The D_g × D_g GGN and the `[V, n, ...p]` per-sample
 * square roots are never formed at once (layers with several patches per
 * sample form per-sample products chunk by chunk, gramProducts.ts).
 *
 * Softmax cross-entropy (exact square root, `reduceFactor`, all hooks but
 * GramMatrix): the loss Hessian's factor has rank C − 1, so the hooks
 * backpropagate the reduced factor S̃ (reducedFactor.ts, V = C − 1) — same
 * GGN, eigenvalues, eigenvectors, γ, λ and Newton steps, a Gram matrix of
 * size (C−1)·n instead of C·n.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelInfo, ParamContext, StepInfo } from '../src/engine/extension';
import { checkSubsampling } from '../src/engine/extension';
import type { GroupHook, ResolvedGroup } from '../src/engine/hook';
import { SqrtGgnExactQuantity, SqrtGgnMcQuantity } from '../src/engine/quantity';
import { eigh, eighLargeSync, eigvalsh, eigvalshLargeSync, LARGE_EIGEN_THRESHOLD } from '../src/linalg/index';
import { ensureFits, validateBackprop } from '../extensions/secondorder/common';
import { biasCrossGram, chooseKernelGramRoute, explicitGram, kernelCrossGram, weightedParamProduct } from './gramProducts';
import { hasReducibleFactor, SqrtGgnReducedQuantity } from './reducedFactor';
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
 * How the Gram matrix is eigen-decomposed: 'float64' (Householder + QL in
 * float64 on the CPU, ≈ 4/3 n³ flops for values, ≈ 9 n³ with all vectors),
 * 'twoStage' (band reduction with TF.js matMuls in float32, then float64;
 * eigenvectors only for the selected directions; absolute error ≈ 1e-6·λ_max,
 * so eigenvalues below that are noise and dropped, and eigenvector angles are
 * ≈ 1e-6·λ_max / gap), 'auto' (twoStage for Gram size ≥ 320 off the cpu
 * backend, else float64).
 */
export type EigenvalueMethod = 'auto' | 'float64' | 'twoStage';

/** Options of the hooks that eigen-decompose the Gram matrix (all but GramMatrix). */
export interface VivitSolverOptions {
  /** Eigen solver (default 'auto', see `EigenvalueMethod`). */
  method?: EigenvalueMethod;
  /**
   * Softmax cross-entropy with the exact square root: backpropagate the
   * rank-reduced factor (C − 1 rows instead of C; default true). The GGN, its
   * eigenvalues and eigenvectors, γ, λ and Newton steps are the same; the Gram
   * matrix has size (C−1)·n (0.73× the eigen-decomposition cost for C = 10),
   * so `gramEvecs` handed to a damping callback have (C−1)·n rows. Pass false
   * for ViViT's C·n Gram space, or to share the backpropagated square root with
   * extensions that need BackPACK's factor (SqrtGGNExact, DiagGGNExact, ...).
   * Other losses and Monte-Carlo square roots are never reduced.
   */
  reduceFactor?: boolean;
}

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
export interface VivitDirectionOptions extends VivitBaseOptions, VivitSolverOptions {
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
  /**
   * `⟨s_vm, s_wn⟩` restricted to the parameter, `[V·n, V·n]` (no c²). Absent
   * for a Dense bias whose kernel is in the same group (the kernel's gram
   * then holds both).
   */
  gram?: tf.Tensor2D;
  /** `⟨s_vm, g_n⟩` restricted to the parameter, `[V·n, n_grad]` (absent as `gram`). */
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

/** The sampling options of the curvature-only hooks (GramMatrix, Eigvalsh, Eigh). */
export interface CurvatureSamplingOptions {
  /** Curvature samples: indices into the batch (unique). Default: the whole batch. */
  subsampling?: readonly number[];
  /** 0 (default): exact GGN. M ≥ 1: Monte-Carlo GGN with M samples. */
  mcSamples?: number;
}

/** Normalised sampling of a curvature-only hook; `rejects` lists the options it does not take. */
export function curvatureSampling(hook: string, options: CurvatureSamplingOptions | undefined, rejects = CURVATURE_ONLY_REJECTS): SamplingSettings {
  rejectOptions(hook, options, rejects);
  return samplingSettings(hook, { curvature: options?.subsampling, curvatureOption: 'subsampling', mcSamples: options?.mcSamples, mcOption: 'mcSamples' });
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
  /**
   * The backpropagated square root this hook consumes (shared with other
   * hooks/extensions of equal key): BackPACK's exact or Monte-Carlo factor, or
   * the reduced softmax factor (chosen in `validate` from the model's loss).
   */
  sqrtQuantity: SqrtGgnExactQuantity | SqrtGgnMcQuantity | SqrtGgnReducedQuantity;
  private readonly fullQuantity: SqrtGgnExactQuantity | SqrtGgnMcQuantity;
  private readonly reducedQuantity: SqrtGgnReducedQuantity | undefined;
  readonly sampling: SamplingSettings;
  /** Eigen solver (see `EigenvalueMethod`). */
  readonly method: EigenvalueMethod;
  readonly relativeCutoff: number;
  readonly warnSmallEigvals: number;
  readonly seed: number | undefined;
  protected readonly onWarning: ((w: VivitWarning) => void) | undefined;
  protected abstract readonly needs: Needs;

  /**
   * `solver`: whether the hook eigen-decomposes (then it takes `method` and
   * `reduceFactor`; GramMatrix does not, its result is BackPACK's factor Gram).
   */
  protected constructor(defaultName: string, options: VivitDirectionOptions, sampling: SamplingSettings, solver = true) {
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
    const method = solver ? (options.method ?? 'auto') : 'float64';
    if (method !== 'auto' && method !== 'float64' && method !== 'twoStage') {
      throw new Error(`${this.name}: option 'method' must be 'auto', 'float64' or 'twoStage', got '${String(method)}'.`);
    }
    this.method = method;
    const reduce = solver ? (options.reduceFactor ?? true) : false;
    if (typeof reduce !== 'boolean') throw new Error(`${this.name}: option 'reduceFactor' must be true or false, got ${String(reduce)}.`);
    this.fullQuantity =
      sampling.mcSamples === 0
        ? new SqrtGgnExactQuantity(sampling.curvature)
        : new SqrtGgnMcQuantity(sampling.mcSamples, options.seed, sampling.curvature);
    this.reducedQuantity = reduce && sampling.mcSamples === 0 ? new SqrtGgnReducedQuantity(sampling.curvature) : undefined;
    this.sqrtQuantity = this.fullQuantity;
  }

  /** The quantities of the current model (see `sqrtQuantity`). */
  get quantities(): readonly (SqrtGgnExactQuantity | SqrtGgnMcQuantity | SqrtGgnReducedQuantity)[] {
    return [this.sqrtQuantity];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, this.sampling.mcSamples === 0 ? 'sqrtHessian' : 'sqrtHessianSampled');
    this.sqrtQuantity = this.reducedQuantity !== undefined && hasReducibleFactor(model.loss) ? this.reducedQuantity : this.fullQuantity;
  }

  validateStep(step: StepInfo): void {
    checkSubsampling(this.name, this.sampling.curvature, step.batchSize);
    if (this.needs.cross) checkSubsampling(this.name, this.sampling.gradient, step.batchSize);
  }

  computeParam(ctx: ParamContext, group: ResolvedGroup): GramContribution {
    const curv = this.sampling.curvature;
    const grad = this.sampling.gradient;
    return tf.tidy(() => {
      const D = ctx.module.foldOutput(ctx.value(this.sqrtQuantity)); // [V, n, T, O]
      const T = D.shape[2];
      const kernel = ctx.param.role === 'kernel';
      // Dense (T = 1): kernel and bias share D Dᵀ; with both in the group the
      // kernel contributes (X Xᵀ + 1) ⊙ (D Dᵀ) for the two, the bias nothing.
      const pair = T === 1 && group.params.some((q) => q.moduleIndex === ctx.param.moduleIndex && q.role !== ctx.param.role);
      const out: GramContribution = {};
      const G = this.needs.cross ? ctx.module.foldOutput(ctx.gradStack(grad)) : undefined; // [1, n_grad, T, O]
      const X = kernel ? ctx.unfoldedInput(curv) : undefined;
      if (X) {
        const Xg = G ? ctx.unfoldedInput(grad) : undefined;
        const [n, , I] = X.shape;
        const [V, , , O] = D.shape;
        const route = chooseKernelGramRoute(V, n, V, n, T, I, O, true);
        if (G && Xg === X && route === 'explicit') {
          // Same samples: the Gram of the stack [D; G] holds the Gram and the cross products.
          const full = this.kernelGram(ctx, X, tf.concat([D, G], 0) as tf.Tensor4D);
          out.gram = tf.slice(full, [0, 0], [V * n, V * n]);
          out.cross = tf.slice(full, [0, V * n], [V * n, n]);
        } else {
          out.gram = this.kernelGram(ctx, X, D, undefined, undefined, pair);
          if (G && Xg) out.cross = this.kernelGram(ctx, X, D, Xg, G, pair);
        }
      } else if (!pair) {
        out.gram = biasCrossGram(D, D);
        if (G) out.cross = biasCrossGram(D, G);
      }
      if (this.needs.paramSpace) {
        // The engine frees the module's buffers after this parameter: keep own references.
        out.D = tf.clone(D);
        if (X) out.X = tf.clone(X);
      }
      return out;
    });
  }

  /** Kernel Gram (b absent) or cross-Gram; `withBias`: Dense kernel and bias at once. */
  private kernelGram(ctx: ParamContext, Xa: tf.Tensor3D, Da: tf.Tensor4D, Xb?: tf.Tensor3D, Db?: tf.Tensor4D, withBias = false): tf.Tensor2D {
    const [na, T, I] = Xa.shape;
    const [Va, , , O] = Da.shape;
    const [Vb, nb] = Db ? Db.shape : [Va, na];
    const symmetric = Xb === undefined;
    const route = chooseKernelGramRoute(Va, na, Vb, nb, T, I, O, symmetric);
    if (route === 'explicit') {
      // Per chunk: the rows of P for ≤ 8192 entries, its transpose and the matMul inputs.
      ensureFits(
        this.name,
        `the per-sample products of parameter '${ctx.param.name}' (V = ${Va}, n = ${na}, ${I * O} entries each, formed in chunks)`,
        (Va * na + (symmetric ? 0 : Vb * nb)) * Math.min(I * O, 8192) * 3 + Da.size,
        `Pass fewer curvature samples ('subsampling'/'subsamplingGgn') or use Monte-Carlo ('mcSamples').`,
      );
      return symmetric ? explicitGram(Xa, Da) : explicitGram(Xa, Da, Xb, Db);
    }
    return symmetric ? kernelCrossGram(Xa, Da, Xa, Da, route, withBias) : kernelCrossGram(Xa, Da, Xb, Db as tf.Tensor4D, route, withBias);
  }

  abstract finishGroup(group: ResolvedGroup, contributions: readonly GramContribution[], step: StepInfo): R;

  // ---------------------------------------------------------------- group pipeline

  /** Number of curvature samples n for a batch of N. */
  protected curvatureCount(N: number): number {
    return this.sampling.curvature?.length ?? N;
  }

  /** `Σ_p ⟨s, s⟩_p` (no correction) `[V·n, V·n]`. */
  protected rawGram(contributions: readonly GramContribution[]): tf.Tensor2D {
    const grams = contributions.map((c) => c.gram).filter((g): g is tf.Tensor2D => g !== undefined);
    return tf.tidy(() => (grams.length === 1 ? tf.clone(grams[0] as tf.Tensor2D) : (tf.addN(grams) as tf.Tensor2D)));
  }

  /** The summed Gram matrix on the host (one read). */
  private hostGram(contributions: readonly GramContribution[]): { data: Float32Array; size: number } {
    const raw = this.rawGram(contributions);
    try {
      return { data: raw.dataSync() as Float32Array, size: raw.shape[0] };
    } finally {
      raw.dispose();
    }
  }

  /** Whether the two-stage solver handles a Gram matrix of this size. */
  private twoStage(size: number): boolean {
    return this.method === 'twoStage' || (this.method === 'auto' && size >= LARGE_EIGEN_THRESHOLD && tf.getBackend() !== 'cpu');
  }

  /** The nonzero eigenvalues (times c²) and their positions among all `size` values. */
  private filtered(values: Float64Array, twoStage: boolean, c2: number): { evals: number[]; kept: number[] } {
    let cutoff = this.relativeCutoff;
    // Below its accuracy the two-stage solver's eigenvalues are indistinguishable from 0.
    if (twoStage && cutoff >= 0) cutoff = Math.max(cutoff, TWO_STAGE_CUTOFF);
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
    return { evals, kept };
  }

  /**
   * Eigenvalues of c²·VᵀV, zero eigenvalues dropped (Eigvalsh): float64
   * `eigvalsh`, or `eigvalshLargeSync` on the two-stage route (see `method`).
   */
  protected eigenvalues(contributions: readonly GramContribution[], N: number): GramEigen {
    const { data, size } = this.hostGram(contributions);
    const c2 = N / this.curvatureCount(N);
    const twoStage = this.twoStage(size);
    const values = twoStage ? eigvalshLargeSync(data, size, { method: 'twoStage' }) : eigvalsh(data, size);
    return { ...this.filtered(values, twoStage, c2), size, c2 };
  }

  /**
   * Eigenvalues of c²·VᵀV and the Gram eigenvectors of the directions the
   * group's criterion selects: float64 `eigh` (all vectors, then the
   * selection), or on the two-stage route `eighLargeSync` with the criterion
   * as its selection (only the K selected vectors are formed).
   */
  protected eigenDirections(group: ResolvedGroup, contributions: readonly GramContribution[], N: number): { eig: GramEigen; dirs: GramDirections } {
    const { data, size } = this.hostGram(contributions);
    const c2 = N / this.curvatureCount(N);
    const twoStage = this.twoStage(size);
    let found: { evals: number[]; kept: number[] } | undefined;
    let chosen: { selected: number[]; lambda: number[]; warnings: VivitWarning[] } | undefined;
    // Column of the eigenvector of full index j in `vectors` (row-major, `cols` columns).
    let vectors: Float64Array;
    let cols: number;
    let columnOf: (j: number) => number;
    if (twoStage) {
      const r = eighLargeSync(data, size, {
        method: 'twoStage',
        select: (values) => {
          found = this.filtered(values, true, c2);
          chosen = this.choose(group, found.evals);
          const f = found;
          return chosen.selected.map((i) => f.kept[i] as number);
        },
      });
      const position = new Map<number, number>();
      r.indices.forEach((j, col) => position.set(j, col));
      vectors = r.vectors;
      cols = r.indices.length;
      columnOf = (j) => position.get(j) as number;
    } else {
      const e = eigh(data, size, { vectors: true });
      found = this.filtered(e.values, false, c2);
      chosen = this.choose(group, found.evals);
      vectors = e.vectors as Float64Array;
      cols = size;
      columnOf = (j) => j;
    }
    const f = found as { evals: number[]; kept: number[] };
    const ch = chosen as { selected: number[]; lambda: number[]; warnings: VivitWarning[] };
    const K = ch.selected.length;
    const U = new Float64Array(size * K);
    ch.selected.forEach((sel, k) => {
      const j = columnOf(f.kept[sel] as number);
      // Sign convention: the largest-magnitude entry of u_k is positive.
      let best = 0;
      for (let i = 0; i < size; i++) if (Math.abs(vectors[i * cols + j] as number) > Math.abs(best)) best = vectors[i * cols + j] as number;
      const sign = best < 0 ? -1 : 1;
      for (let i = 0; i < size; i++) U[i * K + k] = sign * (vectors[i * cols + j] as number);
    });
    return {
      eig: { evals: f.evals, kept: f.kept, size, c2 },
      dirs: { selected: ch.selected, lambda: ch.lambda, U: { rows: size, cols: K, data: U }, warnings: ch.warnings },
    };
  }

  /** Apply the group's criterion; check the selection; warn about tiny eigenvalues. */
  private choose(group: ResolvedGroup, evals: readonly number[]): { selected: number[]; lambda: number[]; warnings: VivitWarning[] } {
    const spec = this.groups[group.index] as VivitGroup;
    const criterion: Criterion = spec.criterion ?? aboveRelativeThreshold();
    const selected = checkSelection(this.name, group.index, criterion(evals.slice()), evals.length);
    const lambda = selected.map((i) => evals[i] as number);
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
    return { selected, lambda, warnings };
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
    const size = W.length / Math.max(1, K);
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
    const nGrad = (contributions.find((c) => c.cross !== undefined)?.cross as tf.Tensor2D).shape[1];
    // No zero-size matMul (wasm's XNNPACK logs an error for it).
    if (K === 0) return tf.zeros([nGrad, 0]);
    return tf.tidy(() => {
      const parts = contributions.map((c) => c.cross).filter((c): c is tf.Tensor2D => c !== undefined);
      const cross = parts.length === 1 ? (parts[0] as tf.Tensor2D) : (tf.addN(parts) as tf.Tensor2D);
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
    const { eig, dirs } = this.eigenDirections(group, contributions, N);
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
