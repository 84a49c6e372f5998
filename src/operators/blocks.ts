/**
 * Parameter blocks as index sets of a flat parameter vector: the whole
 * vector, one block per layer (kernel and bias together, FORMAT.md's
 * `per_layer`), one per parameter, or custom groups `[{ params: [...] }]`.
 * Use them with `op.restrict(indices)` and `op.blockDiagonal(groups)`.
 */
import type { ExtendedModel } from '../engine/extend';
import type { ParamGroupSpec } from '../engine/hook';
import type { ParamInfo } from '../engine/params';
import type { IndexSet } from './indices';

export type BlockMode = 'full' | 'layer' | 'param';

export interface ParamBlock {
  /** The block's parameters in flat order. */
  readonly params: readonly ParamInfo[];
  /** Their coordinates in the vector over `params` (default: the model's flat vector). */
  readonly indices: IndexSet;
}

/**
 * Blocks of parameters and their coordinates in the vector over `within`
 * (default: all trainable parameters; pass `op.params` for an operator
 * restricted to some parameters).
 */
export function paramBlocks(
  model: ExtendedModel,
  blocks: BlockMode | readonly ParamGroupSpec[],
  within: readonly ParamInfo[] = model.params,
): ParamBlock[] {
  const offsets = new Map<number, number>();
  let off = 0;
  for (const p of within) {
    offsets.set(p.index, off);
    off += p.size;
  }
  let groups: ParamInfo[][];
  if (blocks === 'full') groups = [[...within]];
  else if (blocks === 'param') groups = within.map((p) => [p]);
  else if (blocks === 'layer') {
    const byLayer = new Map<number, ParamInfo[]>();
    for (const p of within) {
      const g = byLayer.get(p.layerIndex);
      if (g) g.push(p);
      else byLayer.set(p.layerIndex, [p]);
    }
    groups = [...byLayer.values()];
  } else if (Array.isArray(blocks)) {
    groups = model.resolveGroups('paramBlocks', blocks).map((g) => [...g.params]);
  } else {
    throw new Error(`paramBlocks: blocks must be 'full', 'layer', 'param' or a list of groups [{ params: [...] }], got ${String(blocks)}.`);
  }
  return groups.map((ps) => {
    const ranges: [number, number][] = [];
    for (const p of ps) {
      const o = offsets.get(p.index);
      if (o === undefined) {
        throw new Error(`paramBlocks: parameter '${p.name}' is not among the operator's parameters (${within.map((q) => q.name).join(', ')}).`);
      }
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last[1] === o) last[1] = o + p.size;
      else ranges.push([o, o + p.size]);
    }
    return { params: ps, indices: ranges };
  });
}

/** The index sets of `paramBlocks` (for `op.blockDiagonal(paramGroups(model, 'layer'))`). */
export function paramGroups(
  model: ExtendedModel,
  blocks: BlockMode | readonly ParamGroupSpec[],
  within: readonly ParamInfo[] = model.params,
): IndexSet[] {
  return paramBlocks(model, blocks, within).map((b) => b.indices);
}
