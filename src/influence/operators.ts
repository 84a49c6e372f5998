/**
 * Glue between influence models and the operators/solvers: the curvature
 * operator of one block, products as coroutine steps (sync for in-memory
 * data, async for datasets), and the squared operator for CG on the normal
 * equations of an indefinite system.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import { CurvatureOperator } from '../operators/curvature';
import type { DataSource } from '../operators/data';
import { LinearOperator } from '../operators/linearOperator';
import type { InfluenceBlock } from './blocks';
import { call, type Co } from './coroutine';
import type { CurvatureMode } from './types';

export function checkCurvature(where: string, c: unknown): CurvatureMode {
  if (c !== 'hessian' && c !== 'ggn' && c !== 'empiricalFisher') {
    throw new Error(`${where}: option 'curvature' must be 'hessian', 'ggn' or 'empiricalFisher', got '${String(c)}'.`);
  }
  return c;
}

/** M restricted to a block's parameters, averaged over the training data. */
export function blockOperator(model: ExtendedModel, kind: CurvatureMode, data: DataSource, block: InfluenceBlock): CurvatureOperator {
  return new CurvatureOperator(model, kind, data, { params: block.params });
}

/** `op · V` as a step (sync unless the operator streams a dataset). */
export function* product(op: LinearOperator, V: tf.Tensor2D, what: string): Co<tf.Tensor2D> {
  return yield* call(what, op.isAsync ? undefined : () => op.matmat(V), () => op.matmatAsync(V));
}

/** `A²`: products `A(A v)` (a view; for CG on the normal equations A² x = A b). */
export class SquaredOperator extends LinearOperator {
  readonly name: string;
  constructor(readonly op: LinearOperator) {
    super();
    this.name = `(${op.name})²`;
  }
  get size(): number {
    return this.op.size;
  }
  override get isAsync(): boolean {
    return this.op.isAsync;
  }
  matmat(V: tf.Tensor2D): tf.Tensor2D {
    const T = this.op.matmat(V);
    try {
      return this.op.matmat(T);
    } finally {
      T.dispose();
    }
  }
  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    const T = await this.op.matmatAsync(V);
    try {
      return await this.op.matmatAsync(T);
    } finally {
      T.dispose();
    }
  }
}

/** Check a rank option (one number or one per block) against the block sizes. */
export function checkRanks(where: string, rank: unknown, blocks: readonly InfluenceBlock[]): number[] {
  if (rank === undefined) throw new Error(`${where}: option 'rank' is required (one integer, or one per block).`);
  const list = typeof rank === 'number' ? blocks.map(() => rank) : Array.isArray(rank) ? [...(rank as number[])] : undefined;
  if (list === undefined || list.length !== blocks.length) {
    throw new Error(`${where}: option 'rank' must be an integer or one integer per block (${blocks.length} blocks), got ${JSON.stringify(rank)}.`);
  }
  return list.map((r, i) => {
    const b = blocks[i] as InfluenceBlock;
    if (typeof r !== 'number' || !Number.isInteger(r) || r < 1) throw new Error(`${where}: rank must be an integer ≥ 1, got ${String(r)}.`);
    if (r > b.size) {
      throw new Error(
        `${where}: rank ${r} is larger than the number of parameters ${blocks.length > 1 ? `in block '${b.name}' ` : ''}(${b.size}); use rank ≤ ${b.size}.`,
      );
    }
    return r;
  });
}
