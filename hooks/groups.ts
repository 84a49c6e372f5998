/**
 * Parameter groups of the ViViT hooks (one group = one GGN block), the
 * eigenvalue selection criteria and the damping rules.
 *
 * A group is `{ params, criterion?, damping? }`:
 * - `params`: the parameters of the block (variable names, short names
 *   `'<layer>/<kernel|bias>'`, flat indices, variables or ParamInfo). A
 *   parameter may belong to one group only; parameters in no group are skipped.
 * - `criterion(evals)`: which eigenvalues (indices into the ascending `evals`
 *   of the group) get eigenvectors / directions (default:
 *   `aboveRelativeThreshold(1e-4)`, ViViT's and FORMAT.md §6.4's selection).
 * - `damping(evals, gramEvecs, gammas, lambdas)`: the directional damping δ_k
 *   of DirectionalDampedNewton (default `constantDamping(1)`).
 */
import type { ParamGroupSpec } from '../src/engine/hook';
import type { ParamInfo, ParamRef } from '../src/engine/params';

/** A row-major float64 matrix handed to user callbacks. */
export interface HostMatrix {
  readonly rows: number;
  readonly cols: number;
  /** Row-major entries, `data[i·cols + j]`. */
  readonly data: Float64Array;
}

/**
 * Selects eigenvalues: receives the group's eigenvalues (ascending, the
 * `evals` of the result) and returns the indices to keep, in the order the
 * eigenvectors/directions should have.
 */
export type Criterion = (evals: readonly number[]) => readonly number[];

/**
 * Directional damping δ_k for the K selected directions. Arguments (ViViT's):
 * `evals [K]` the selected eigenvalues (ascending unless the criterion reorders them); `gramEvecs [V·n, K]` their Gram-space
 * eigenvectors (column k); `gammas [n_grad, K]`; `lambdas [n_ggn, K]`.
 * Returns K values or one number for all directions.
 */
export type Damping = (
  evals: readonly number[],
  gramEvecs: HostMatrix,
  gammas: HostMatrix,
  lambdas: HostMatrix,
) => ArrayLike<number> | number;

export interface VivitGroup extends ParamGroupSpec {
  readonly params: readonly ParamRef[];
  readonly criterion?: Criterion;
  readonly damping?: Damping;
}

/** ViViT's selection threshold: eigenvectors for `λ > 1e-4 · max λ`. */
export const DEFAULT_RELATIVE_THRESHOLD = 1e-4;

/** The `k` largest eigenvalues (all if fewer), ascending. */
export function topK(k: number): Criterion {
  if (!Number.isInteger(k) || k < 0) throw new Error(`topK: k must be an integer ≥ 0, got ${k}.`);
  return (evals) => {
    const out: number[] = [];
    for (let i = Math.max(0, evals.length - k); i < evals.length; i++) out.push(i);
    return out;
  };
}

/** Eigenvalues `λ > threshold` (absolute), ascending. */
export function aboveThreshold(threshold: number): Criterion {
  if (!Number.isFinite(threshold)) throw new Error(`aboveThreshold: threshold must be a finite number, got ${threshold}.`);
  return (evals) => {
    const out: number[] = [];
    evals.forEach((v, i) => {
      if (v > threshold) out.push(i);
    });
    return out;
  };
}

/** Eigenvalues `λ > ratio · max λ`, ascending (default 1e-4: ViViT's / FORMAT.md's selection). */
export function aboveRelativeThreshold(ratio = DEFAULT_RELATIVE_THRESHOLD): Criterion {
  if (!Number.isFinite(ratio) || ratio < 0) throw new Error(`aboveRelativeThreshold: ratio must be a finite number ≥ 0, got ${ratio}.`);
  return (evals) => {
    let max = -Infinity;
    for (const v of evals) max = Math.max(max, v);
    if (!(max > 0)) return [];
    return aboveThreshold(ratio * max)(evals);
  };
}

/**
 * Every positive eigenvalue (the GGN is positive semi-definite; negative
 * entries of `evals` are float32 noise). Use with care: tiny eigenvalues give
 * unstable eigenvectors (see `warnSmallEigvals`).
 */
export function allPositive(): Criterion {
  return aboveThreshold(0);
}

/** Constant damping δ_k = δ (ViViT's ConstantDamping; default 1). */
export function constantDamping(delta = 1): Damping {
  if (!Number.isFinite(delta)) throw new Error(`constantDamping: delta must be a finite number, got ${delta}.`);
  return () => delta;
}

/** Anything with the model's parameters in flat order (an ExtendedModel). */
export interface HasParams {
  readonly params: readonly ParamInfo[];
}

type GroupExtras = Omit<VivitGroup, 'params'>;

/** One group with every parameter: the full GGN as one block. */
export function groupsFull(model: HasParams, extras: GroupExtras = {}): VivitGroup[] {
  return [{ ...extras, params: model.params.map((p) => p.name) }];
}

/** One group per layer with parameters (kernel and bias together): the layer-wise block-diagonal GGN. */
export function groupsPerLayer(model: HasParams, extras: GroupExtras = {}): VivitGroup[] {
  const byLayer = new Map<number, string[]>();
  for (const p of model.params) {
    const list = byLayer.get(p.layerIndex) ?? [];
    list.push(p.name);
    byLayer.set(p.layerIndex, list);
  }
  return [...byLayer.values()].map((params) => ({ ...extras, params }));
}

/** One group per parameter: the parameter-wise block-diagonal GGN. */
export function groupsPerParam(model: HasParams, extras: GroupExtras = {}): VivitGroup[] {
  return model.params.map((p) => ({ ...extras, params: [p.name] }));
}

/**
 * Check the shape of user groups (what can be checked without the model; the
 * engine resolves the parameters and rejects unknown or repeated ones) and
 * copy them, so that later changes to the user's arrays have no effect.
 */
export function copyGroups(hook: string, groups: readonly VivitGroup[] | undefined): readonly VivitGroup[] {
  if (!Array.isArray(groups) || groups.length === 0) {
    throw new Error(
      `${hook}: option 'groups' must list at least one parameter group [{ params: [...] }] (helpers: groupsFull(ext), groupsPerLayer(ext), groupsPerParam(ext)).`,
    );
  }
  return Object.freeze(
    groups.map((g, i) => {
      if (g === null || typeof g !== 'object' || !Array.isArray(g.params) || g.params.length === 0) {
        throw new Error(`${hook}: parameter group ${i} has no parameters; give { params: [...] } with at least one.`);
      }
      if (g.criterion !== undefined && typeof g.criterion !== 'function') {
        throw new Error(`${hook}: group ${i}'s 'criterion' must be a function (evals) => indices, e.g. topK(5).`);
      }
      if (g.damping !== undefined && typeof g.damping !== 'function') {
        throw new Error(`${hook}: group ${i}'s 'damping' must be a function (evals, gramEvecs, gammas, lambdas) => δ, e.g. constantDamping(1).`);
      }
      const copy: VivitGroup = { params: Object.freeze([...g.params]) };
      return Object.freeze({
        ...copy,
        ...(g.criterion ? { criterion: g.criterion } : {}),
        ...(g.damping ? { damping: g.damping } : {}),
      });
    }),
  );
}

/** Validate a criterion's answer: integer indices into evals, no repeats. */
export function checkSelection(hook: string, group: number, selected: unknown, count: number): number[] {
  if (!Array.isArray(selected) && !ArrayBuffer.isView(selected)) {
    throw new Error(`${hook}: group ${group}'s criterion must return an array of indices into evals, got ${typeof selected}.`);
  }
  const out = Array.from(selected as ArrayLike<number>);
  const seen = new Set<number>();
  for (const i of out) {
    if (!Number.isInteger(i) || i < 0 || i >= count) {
      throw new Error(
        `${hook}: group ${group}'s criterion returned index ${String(i)}, not an index into its ${count} eigenvalues (valid: 0..${count - 1}).`,
      );
    }
    if (seen.has(i)) throw new Error(`${hook}: group ${group}'s criterion returned index ${i} twice; each direction may be selected once.`);
    seen.add(i);
  }
  return out;
}
