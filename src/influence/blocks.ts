/**
 * Blocks of the curvature for influence models, with their regularization.
 * Every block's coordinates are given within the *selection* vector: the
 * parameters the blocks cover, in flat order (all trainable parameters
 * unless custom groups leave some out).
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { ParamInfo } from '../engine/params';
import { paramBlocks } from '../operators/blocks';
import { selectParams, type Selection } from '../operators/curvature';
import { embedColumns, extractColumns, type IndexSet } from '../operators/indices';
import type { Co } from './coroutine';
import type { BlockSpec } from './types';

export interface InfluenceBlock {
  readonly index: number;
  /** `all`, the layer name, the parameter name, or `group <i>`. */
  readonly name: string;
  /** The block's parameters in flat order. */
  readonly params: readonly ParamInfo[];
  /** Coordinates in the selection vector. */
  readonly indices: IndexSet;
  readonly size: number;
  /** λ of this block. */
  readonly regularization: number;
}

export interface ResolvedBlocks {
  readonly selection: Selection;
  readonly blocks: readonly InfluenceBlock[];
}

/** Check λ (one number or one per block); `positive`: the method needs λ > 0. */
export function checkRegularization(where: string, reg: unknown, nBlocks: number, positive: boolean): number[] {
  if (reg === undefined) {
    throw new Error(`${where}: option 'regularization' (λ in (M + λI)⁻¹) is required; give a number${positive ? ' > 0' : ' ≥ 0'} or one per block.`);
  }
  const list = typeof reg === 'number' ? new Array<number>(nBlocks).fill(reg) : Array.isArray(reg) ? [...(reg as number[])] : undefined;
  if (list === undefined) throw new Error(`${where}: option 'regularization' must be a number or an array of numbers (one per block), got ${typeof reg}.`);
  if (list.length !== nBlocks) {
    throw new Error(`${where}: ${list.length} regularization values for ${nBlocks} blocks; give one number or exactly one per block.`);
  }
  list.forEach((l, i) => {
    const bad = typeof l !== 'number' || !Number.isFinite(l) || (positive ? !(l > 0) : !(l >= 0));
    if (bad) {
      const need = positive
        ? `> 0 (this method inverts a singular approximation: (M̂ + λI)⁻¹ needs λ > 0)`
        : `≥ 0`;
      throw new Error(`${where}: regularization${nBlocks > 1 ? ` of block ${i}` : ''} must be a finite number ${need}, got ${String(l)}.`);
    }
  });
  return list;
}

export function resolveBlocks(model: ExtendedModel, spec: BlockSpec, regularization: unknown, where: string, positive: boolean): ResolvedBlocks {
  if (spec !== 'full' && spec !== 'layer' && spec !== 'param' && !Array.isArray(spec)) {
    throw new Error(`${where}: option 'blocks' must be 'full', 'layer', 'param' or a list of groups [{ params: [...] }], got ${String(spec)}.`);
  }
  // Parameters covered by the blocks, then the blocks within that selection.
  const all = paramBlocks(model, spec);
  const covered = all.flatMap((b) => [...b.params]);
  const selection = selectParams(model, covered, where);
  const pb = paramBlocks(model, spec, selection.params);
  const regs = checkRegularization(where, regularization, pb.length, positive);
  const blocks = pb.map((b, i) => {
    const first = b.params[0] as ParamInfo;
    const name =
      spec === 'full' ? 'all' : spec === 'layer' ? first.layerName : spec === 'param' ? first.name : `group ${i}`;
    return {
      index: i,
      name,
      params: b.params,
      indices: b.indices,
      size: b.params.reduce((s, p) => s + p.size, 0),
      regularization: regs[i] as number,
    };
  });
  return { selection, blocks };
}

/** Whether a block is the whole selection (no column extraction needed). */
export function coversAll(block: InfluenceBlock, D: number): boolean {
  return block.indices.length === 1 && (block.indices[0] as readonly number[])[0] === 0 && block.size === D;
}

/** Columns of a block: `[K, D] → [K, D_b]` (new tensor). */
export function blockColumns(G: tf.Tensor2D, block: InfluenceBlock): tf.Tensor2D {
  return extractColumns(G, block.indices);
}

/**
 * A solve over the selection from per-block solves: extract each block's
 * columns, solve, embed (zeros between blocks). Owns nothing.
 */
export function* solveBlockwise(
  blocks: readonly InfluenceBlock[],
  D: number,
  G: tf.Tensor2D,
  solveBlock: (b: InfluenceBlock, Gb: tf.Tensor2D) => Co<tf.Tensor2D>,
): Co<tf.Tensor2D> {
  const only = blocks.length === 1 ? (blocks[0] as InfluenceBlock) : undefined;
  if (only !== undefined && coversAll(only, D)) return yield* solveBlock(only, G);
  let acc: tf.Tensor2D | undefined;
  try {
    for (const b of blocks) {
      const Gb = blockColumns(G, b);
      let Fb: tf.Tensor2D;
      try {
        Fb = yield* solveBlock(b, Gb);
      } finally {
        Gb.dispose();
      }
      const E = embedColumns(Fb, b.indices, D);
      Fb.dispose();
      if (acc === undefined) acc = E;
      else {
        const next = tf.add(acc, E) as tf.Tensor2D;
        tf.dispose([acc, E]);
        acc = next;
      }
    }
  } catch (e) {
    acc?.dispose();
    throw e;
  }
  return acc as tf.Tensor2D;
}
