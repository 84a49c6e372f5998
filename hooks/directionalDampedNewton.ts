/**
 * DirectionalDampedNewton: ViViT's directionally damped Newton step of each
 * group, in parameter format,
 *
 *   s = Σ_k −mean_n(γ_nk) / (mean_n(λ_nk) + δ_k) · e_k,
 *
 * along the eigenvectors e_k the group's criterion selects, with γ, λ as in
 * DirectionalDerivatives and δ_k from the group's `damping(evals, gramEvecs,
 * gammas, lambdas)` (default: the hook's `damping` option, else
 * `constantDamping(1)`). The step is formed in Gram space,
 * `w = c U Λ^{-1/2} a` with the coefficients a_k, and mapped to parameter
 * space by one summed product per parameter (`[1, ...p]`, cheap).
 * Apply it with a learning rate: θ ← θ + lr · s.
 */
import * as tf from '@tensorflow/tfjs';
import type { StepInfo } from '../src/engine/extension';
import type { ResolvedGroup } from '../src/engine/hook';
import { directionalSampling, type DirectionalOptions } from './directionalDerivatives';
import { columnMeans, GramSpaceHook, hostToTensor, type GramContribution, type VivitWarning } from './gramSpace';
import { constantDamping, type Damping, type HostMatrix, type VivitGroup } from './groups';

export interface DirectionalDampedNewtonOptions extends DirectionalOptions {
  /** Damping of groups that give none (default `constantDamping(1)`, as in FORMAT.md §6.4). */
  damping?: Damping;
}

export type DirectionalDampedNewtonResult = {
  /** Nonzero GGN eigenvalues of the group, ascending. */
  evals: number[];
  /** Indices into `evals` of the K directions. */
  selected: number[];
  /** `[n_grad, K]` first-order directional derivatives. */
  gammas: tf.Tensor2D;
  /** `[n_ggn, K]` second-order directional derivatives. */
  lambdas: tf.Tensor2D;
  /** δ_k, the damping of each direction. */
  damping: number[];
  /** a_k = −mean γ_k / (mean λ_k + δ_k): the step is Σ_k a_k e_k. */
  coefficients: number[];
  /** The step, one tensor of the parameter's shape per group parameter (order of `params`). */
  newtonStep: tf.Tensor[];
  /** With `evecs: true`: unit eigenvectors `[K, ...paramShape]` per group parameter. */
  evecs?: tf.Tensor[];
  /** Variable names of the group's parameters. */
  params: string[];
  warnings: VivitWarning[];
};

export class DirectionalDampedNewton extends GramSpaceHook<DirectionalDampedNewtonResult> {
  protected readonly needs = { cross: true, paramSpace: true };
  readonly returnsEvecs: boolean;
  private readonly defaultDamping: Damping;

  constructor(options: DirectionalDampedNewtonOptions) {
    super('DirectionalDampedNewton', options, directionalSampling(options?.name ?? 'DirectionalDampedNewton', options));
    this.returnsEvecs = options.evecs === true;
    if (options.damping !== undefined && typeof options.damping !== 'function') {
      throw new Error(`${this.name}: option 'damping' must be a function (evals, gramEvecs, gammas, lambdas) => δ, e.g. constantDamping(1).`);
    }
    this.defaultDamping = options.damping ?? constantDamping(1);
  }

  finishGroup(group: ResolvedGroup, contributions: readonly GramContribution[], step: StepInfo): DirectionalDampedNewtonResult {
    const d = this.directional(group, contributions, step, this.returnsEvecs);
    const toFree: tf.Tensor[] = [d.gammas, ...(d.evecs ?? [])];
    try {
      const K = d.dirs.selected.length;
      const lambdas = hostToTensor(d.lambdas);
      toFree.push(lambdas);
      const gammasHost: HostMatrix = { rows: d.gammas.shape[0], cols: K, data: Float64Array.from(d.gammas.dataSync()) };
      const spec = this.groups[group.index] as VivitGroup;
      const delta = this.dampingValues(group.index, spec.damping ?? this.defaultDamping, d.dirs.lambda, d.dirs.U, gammasHost, d.lambdas);
      const meanG = columnMeans(gammasHost);
      const meanL = columnMeans(d.lambdas);
      const coefficients = d.dirs.lambda.map((_l, k) => {
        const den = (meanL[k] as number) + (delta[k] as number);
        const a = -(meanG[k] as number) / den;
        if (!Number.isFinite(a)) {
          throw new Error(
            `${this.name}: group ${group.index}, direction ${k}: mean λ + δ = ${den} gives a non-finite Newton coefficient; use a damping that keeps mean λ_k + δ_k away from 0.`,
          );
        }
        return a;
      });
      // Gram-space weights of the step: w_i = Σ_k a_k W[k, i].
      const size = d.dirs.U.rows;
      const w = new Float32Array(size);
      coefficients.forEach((a, k) => {
        for (let i = 0; i < size; i++) w[i] = (w[i] as number) + a * (d.W[k * size + i] as number);
      });
      const raw = this.paramVectors(group, contributions, w, 1, 'Newton step');
      const newtonStep = raw.map((t, i) => {
        const r = tf.reshape(t, (group.params[i] as { shape: readonly number[] }).shape as number[]);
        t.dispose();
        return r;
      });
      return {
        evals: d.eig.evals,
        selected: d.dirs.selected,
        gammas: d.gammas,
        lambdas,
        damping: delta,
        coefficients,
        newtonStep,
        ...(d.evecs ? { evecs: d.evecs } : {}),
        params: group.params.map((p) => p.name),
        warnings: d.dirs.warnings,
      };
    } catch (e) {
      tf.dispose(toFree);
      throw e;
    }
  }

  private dampingValues(
    group: number,
    damping: Damping,
    lambda: readonly number[],
    U: HostMatrix,
    gammas: HostMatrix,
    lambdas: HostMatrix,
  ): number[] {
    const K = lambda.length;
    // Copies: the callback may keep or modify its arguments.
    const r = damping(
      lambda.slice(),
      { rows: U.rows, cols: U.cols, data: U.data.slice() },
      { rows: gammas.rows, cols: gammas.cols, data: gammas.data.slice() },
      { rows: lambdas.rows, cols: lambdas.cols, data: lambdas.data.slice() },
    );
    const out = typeof r === 'number' ? new Array<number>(K).fill(r) : Array.from(r as ArrayLike<number>);
    if (out.length !== K) {
      throw new Error(`${this.name}: group ${group}'s damping returned ${out.length} values for ${K} directions; return one δ per direction or a single number.`);
    }
    out.forEach((v, k) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw new Error(`${this.name}: group ${group}'s damping returned ${String(v)} for direction ${k}; damping values must be finite numbers.`);
      }
    });
    return out;
  }
}

/**
 * The steps of several group results as one map variable name → step tensor
 * (the results' own tensors, not copies: dispose the BackwardResult, not the
 * map). Parameters in no group are absent. Apply θ ← θ + lr · s, e.g.
 * `v.assign(tf.add(v, tf.mul(lr, s)))`, or pass `−s` as gradients to SGD.
 */
export function newtonStepMap(results: readonly DirectionalDampedNewtonResult[]): tf.NamedTensorMap {
  const out: tf.NamedTensorMap = {};
  for (const r of results) r.params.forEach((name, i) => (out[name] = r.newtonStep[i] as tf.Tensor));
  return out;
}
