/**
 * DampedNewton: ViViT's optimizer — a directionally damped Newton step along
 * the top-k GGN eigenvectors of each parameter group (default: one group per
 * layer, i.e. the layer-wise block-diagonal GGN).
 *
 * Per group g, with the K selected GGN eigenpairs (λ_k, e_k) of the group's
 * block, the gradient g and the damping δ_k (DirectionalDampedNewton hook):
 *
 *   s = Σ_k −⟨e_k, g⟩ / (λ_k + δ_k) · e_k                 (ViViT's step)
 *   θ ← θ + lr · s  [ − complementLr · (g − Σ_k ⟨e_k, g⟩ e_k) ]
 *
 * The orthogonal complement of the K directions gets nothing by default (as
 * ViViT). With `complementLr > 0` it gets an SGD step on the projected
 * gradient (needs the eigenvectors: K·D_g more memory). With constant damping
 * δ and `complementLr = lr/δ` the update is exactly `−lr (Ĝ_K + δI)⁻¹ g`,
 * Ĝ_K the rank-K truncation of the group's GGN block. Parameters in no group
 * get `−complementLr · g` (nothing by default).
 *
 * ⟨e_k, g⟩ and λ_k are the means of ViViT's γ_nk and λ_nk over the
 * gradient / curvature samples (exact for the full batch). The curvature is
 * the Monte-Carlo GGN with `mcSamples` (default 1: a rank-≤n estimate, cheap)
 * or the exact GGN (`mcSamples: 0`, V = C vectors per sample: the Gram
 * matrix has C·n rows and its float64 eigendecomposition dominates), on all
 * samples or on `subsamplingGgn`.
 *
 * Cost per step on top of the gradient (MC 1, top-10 per layer, wasm, 2
 * cores): ≈ 3 ms for an MLP 784-64-10 at batch 64, ≈ 22 ms for 784-256-128-10
 * at batch 128, ≈ 21 ms for a small CNN at batch 64. Exact curvature on the
 * whole batch costs a float64 eigendecomposition of a C·n Gram matrix per
 * group (seconds for C·n = 1280): subsample (`subsamplingGgn`) instead.
 *
 * Caveat (measured on MNIST): Monte-Carlo curvature with many directions (k ≳ 30)
 * or tiny damping can diverge — low MC eigenvalues underestimate the
 * curvature along directions that the gradient points into; keep δ ≳ 0.1.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../../engine/extend';
import type { BackwardResult } from '../../engine/results';
import type { ParamInfo } from '../../engine/params';
import { DirectionalDampedNewton, type DirectionalDampedNewtonResult } from '../../../hooks/directionalDampedNewton';
import {
  aboveRelativeThreshold,
  constantDamping,
  groupsFull,
  groupsPerLayer,
  groupsPerParam,
  topK,
  type Criterion,
  type Damping,
  type VivitGroup,
} from '../../../hooks/groups';
import type { StepContext, StepOptimizer, StepRequests } from '../events';
import {
  addToVariable,
  checkExtendedModel,
  checkLearningRate,
  checkOptionNames,
  checkPositiveInt,
  checkSameModel,
  learningRateAt,
  type FixedRequests,
  type LearningRate,
} from './common';

export interface DampedNewtonOptions {
  /** Learning rate (or schedule step → lr); θ ← θ + lr·s. Default 1. */
  lr?: LearningRate;
  /**
   * Directional damping δ_k > 0: a constant, or ViViT's callable
   * `(evals, gramEvecs, gammas, lambdas) => δ` (one value or one per
   * direction; every value must be > 0). Default 1 (ViViT's ConstantDamping).
   */
  damping?: number | Damping;
  /** Number of top eigen-directions per group (default 10). Ignored for groups with their own `criterion`. */
  k?: number;
  /**
   * Keep only directions with `λ > relativeThreshold · max λ` among the top
   * k (default 1e-4, ViViT's selection; tiny eigenvalues have unstable
   * eigenvectors). 0 keeps every positive one.
   */
  relativeThreshold?: number;
  /** Full selection rule instead of `k` / `relativeThreshold` (groups' own criteria still win). */
  criterion?: Criterion;
  /** The GGN blocks: 'perLayer' (default), 'full', 'perParam', or explicit groups `[{ params, criterion?, damping? }]`. */
  groups?: 'perLayer' | 'full' | 'perParam' | readonly VivitGroup[];
  /** Monte-Carlo samples of the GGN square root (default 1); 0 = exact GGN (C vectors per sample, slow for large batches). */
  mcSamples?: number;
  /** Curvature samples (batch indices) for the eigen-directions and λ (default: the whole batch). */
  subsamplingGgn?: readonly number[];
  /** Gradient samples (batch indices) for ⟨e_k, g⟩ (default: the whole batch, exact). */
  subsamplingGrad?: readonly number[];
  /** SGD learning rate in the orthogonal complement of the directions (default 0: nothing, as ViViT). */
  complementLr?: number;
  /** Name of the internal hook (its results in `result.groups(name)`; default 'DampedNewton'). */
  name?: string;
}

const KNOWN = ['lr', 'damping', 'k', 'relativeThreshold', 'criterion', 'groups', 'mcSamples', 'subsamplingGgn', 'subsamplingGrad', 'complementLr', 'name'];

/** Top-k among the eigenvalues above `ratio · max` (ascending order, as topK). */
function topKAbove(k: number, ratio: number): Criterion {
  const top = topK(k);
  const above = aboveRelativeThreshold(ratio);
  return (evals) => {
    const ok = new Set(above(evals));
    return top(evals).filter((i) => ok.has(i) && (evals[i] as number) > 0);
  };
}

/** Wrap a damping so that every value it yields is checked to be > 0. */
function positiveDamping(owner: string, d: number | Damping): Damping {
  if (typeof d === 'number') {
    if (!Number.isFinite(d) || !(d > 0)) {
      throw new Error(`${owner}: option 'damping' must be a finite number > 0 (or a function returning values > 0), got ${d}.`);
    }
    return constantDamping(d);
  }
  if (typeof d !== 'function') {
    throw new Error(`${owner}: option 'damping' must be a number > 0 or a function (evals, gramEvecs, gammas, lambdas) => δ, got ${String(d)}.`);
  }
  return (evals, U, gammas, lambdas) => {
    const r = d(evals, U, gammas, lambdas);
    const values = typeof r === 'number' ? [r] : Array.from(r as ArrayLike<number>);
    for (const v of values) {
      if (typeof v !== 'number' || !Number.isFinite(v) || !(v > 0)) {
        throw new Error(`${owner}: the damping function returned ${String(v)}; damping values must be finite numbers > 0.`);
      }
    }
    return r;
  };
}

export class DampedNewton implements StepOptimizer, FixedRequests {
  readonly ext: ExtendedModel;
  /** The hook that computes the steps (requested from the trainer at every step). */
  readonly hook: DirectionalDampedNewton;
  readonly lr: LearningRate;
  readonly complementLr: number;
  readonly allRequests: StepRequests;
  private readonly uncovered: ParamInfo[];
  private readonly byName: Map<string, ParamInfo>;

  constructor(ext: ExtendedModel, options: DampedNewtonOptions = {}) {
    const owner = 'DampedNewton';
    checkExtendedModel(owner, ext);
    checkOptionNames(owner, options, KNOWN);
    this.ext = ext;
    this.lr = checkLearningRate(owner, options.lr, 1);
    const k = checkPositiveInt(owner, 'k', options.k, 10, ' (directions per group)');
    const ratio = options.relativeThreshold ?? 1e-4;
    if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0 || ratio >= 1) {
      throw new Error(`${owner}: option 'relativeThreshold' must be a number in [0, 1), got ${String(ratio)}.`);
    }
    if (options.criterion !== undefined && typeof options.criterion !== 'function') {
      throw new Error(`${owner}: option 'criterion' must be a function (evals) => indices, e.g. topK(10).`);
    }
    const criterion = options.criterion ?? topKAbove(k, ratio);
    const damping = positiveDamping(owner, options.damping ?? 1);
    const clr = options.complementLr ?? 0;
    if (typeof clr !== 'number' || !Number.isFinite(clr) || clr < 0) {
      throw new Error(`${owner}: option 'complementLr' must be a finite number ≥ 0 (0: no step outside the directions), got ${String(clr)}.`);
    }
    this.complementLr = clr;
    const mc = options.mcSamples ?? 1;
    const spec = options.groups ?? 'perLayer';
    let groups: readonly VivitGroup[];
    if (spec === 'perLayer') groups = groupsPerLayer(ext, { criterion });
    else if (spec === 'full') groups = groupsFull(ext, { criterion });
    else if (spec === 'perParam') groups = groupsPerParam(ext, { criterion });
    else if (Array.isArray(spec)) groups = spec.map((g) => ({ ...g, criterion: g.criterion ?? criterion, ...(g.damping ? { damping: positiveDamping(owner, g.damping) } : {}) }));
    else throw new Error(`${owner}: option 'groups' must be 'perLayer', 'full', 'perParam' or an array of groups [{ params }], got ${String(spec)}.`);
    this.hook = new DirectionalDampedNewton({
      name: options.name ?? 'DampedNewton',
      groups,
      damping,
      mcSamplesGgn: mc,
      ...(options.subsamplingGgn ? { subsamplingGgn: options.subsamplingGgn } : {}),
      ...(options.subsamplingGrad ? { subsamplingGrad: options.subsamplingGrad } : {}),
      evecs: clr > 0,
    });
    const resolved = ext.resolveGroups(this.hook.name, this.hook.groups);
    const covered = new Set(resolved.flatMap((g) => g.params.map((p) => p.name)));
    this.uncovered = ext.params.filter((p) => !covered.has(p.name));
    this.byName = new Map(ext.params.map((p) => [p.name, p]));
    this.allRequests = Object.freeze({ hooks: [this.hook] });
  }

  requests(): StepRequests {
    return this.allRequests;
  }

  /** The group results of a step (one per group), e.g. for monitoring the chosen directions. */
  results(result: BackwardResult): DirectionalDampedNewtonResult[] {
    return result.groups(this.hook);
  }

  applyStep(result: BackwardResult, context: StepContext): void {
    checkSameModel('DampedNewton', this.ext, context.ext);
    const lr = learningRateAt('DampedNewton', this.lr, context.step);
    const clr = this.complementLr;
    for (const r of result.groups(this.hook)) {
      const K = r.selected.length;
      // ⟨e_k, g⟩ over the group: c [K] (only for the complement step).
      const c =
        clr > 0 && K > 0
          ? tf.tidy(() =>
              tf.addN(
                r.params.map((name, i) => {
                  const E = tf.reshape((r.evecs as tf.Tensor[])[i] as tf.Tensor, [K, -1]);
                  return tf.reshape(tf.matMul(E, tf.reshape(result.grads[name] as tf.Tensor, [-1, 1])), [K]);
                }),
              ),
            )
          : undefined;
      try {
        r.params.forEach((name, i) => {
          const p = this.byName.get(name) as ParamInfo;
          addToVariable(p, () => {
            let delta = tf.mul(r.newtonStep[i] as tf.Tensor, lr);
            if (clr > 0) {
              const g = result.grads[name] as tf.Tensor;
              let perp = g;
              if (c !== undefined) {
                const E = tf.reshape((r.evecs as tf.Tensor[])[i] as tf.Tensor, [K, -1]);
                perp = tf.sub(g, tf.reshape(tf.matMul(tf.reshape(c, [1, K]), E), g.shape));
              }
              delta = tf.sub(delta, tf.mul(perp, clr));
            }
            return delta;
          });
        });
      } finally {
        c?.dispose();
      }
    }
    if (clr > 0) for (const p of this.uncovered) addToVariable(p, () => tf.mul(result.grads[p.name] as tf.Tensor, -clr));
  }
}
