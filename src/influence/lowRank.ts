/**
 * Low-rank influence models: per block a rank-r approximation
 * M_b ≈ Uᵀ diag(d) U (U `[r, D_b]` orthonormal rows), inverted in closed form.
 *
 * - ArnoldiInfluence (pyDVL's ArnoldiInfluence): the r eigenpairs of largest
 *   magnitude by Lanczos with full reorthogonalisation (src/solvers/lowRank.ts).
 *   Default `projected: true` is pyDVL's formula Uᵀ diag(1/(d + λ)) U (the
 *   inverse on the span of U, zero on its complement; λ = 0 allowed when no
 *   kept eigenvalue is 0); `projected: false` adds the complement,
 *   Uᵀ diag(1/(d+λ) − 1/λ) U + I/λ = (Uᵀ diag(d) U + λI)⁻¹ (needs λ > 0).
 *   Fit: about max(2r + 20, 3r) products with single vectors per block.
 * - NystromInfluence (sketch-and-solve, Frangella, Tropp & Udell 2023):
 *   the randomized Nyström approximation from one product with r random
 *   vectors (M must be positive semi-definite: GGN, empirical Fisher),
 *   inverted as (Â + λI)⁻¹ = Uᵀ diag(1/(d+λ) − 1/λ) U + I/λ (needs λ > 0).
 *
 * With r = D_b (or r ≥ rank(M_b)) both reproduce (M_b + λI)⁻¹ exactly.
 * Solve cost: two `[K, D_b] × [D_b, r]`-sized matMuls per block.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import { LowRankOperator } from '../operators/linearOperator';
import { arnoldi, arnoldiAsync } from '../solvers/lowRank';
import { nystromSketch, nystromSketchAsync } from '../solvers/nystrom';
import type { FitContext, FittedInverse, MethodState } from './base';
import { InfluenceModel } from './base';
import type { InfluenceBlock } from './blocks';
import { call, type Co } from './coroutine';
import { blockOperator, checkCurvature, checkRanks } from './operators';
import type { CurvatureInfluenceOptions, CurvatureMode } from './types';

export interface LowRankInfluenceOptions extends CurvatureInfluenceOptions {
  /** Rank r (one integer, or one per block); at most the block's parameter count. */
  rank: number | readonly number[];
  /** Seed of the random start vector / test matrix (default 0). */
  seed?: number;
}

export interface ArnoldiInfluenceOptions extends LowRankInfluenceOptions {
  /** pyDVL's projected inverse (default true), or the full inverse of the low-rank matrix + λI (false, λ > 0). */
  projected?: boolean;
  /** Ritz residual tolerance relative to the largest |eigenvalue| (default 1e-6). */
  tol?: number;
  /** Maximum Krylov dimension (default min(D_b, max(2r + 20, 3r))). */
  maxIter?: number;
}

export type NystromInfluenceOptions = LowRankInfluenceOptions;

interface LowRankBlock {
  approx: LowRankOperator;
  inverse: LowRankOperator;
}

class LowRankInverse implements FittedInverse {
  constructor(
    private readonly owner: LowRankInfluence<LowRankInfluenceOptions>,
    readonly parts: readonly LowRankBlock[],
  ) {}
  solve(G: tf.Tensor2D): Co<tf.Tensor2D> {
    const parts = this.parts;
    return this.owner.solveLowRank(function* (b: InfluenceBlock, Gb: tf.Tensor2D) {
      return (parts[b.index] as LowRankBlock).inverse.matmat(Gb);
    }, G);
  }
  dispose(): void {
    for (const p of this.parts) {
      p.inverse.dispose();
      p.approx.dispose();
    }
  }
}

abstract class LowRankInfluence<O extends LowRankInfluenceOptions> extends InfluenceModel<O> {
  readonly curvature: CurvatureMode;
  readonly ranks: readonly number[];

  protected constructor(model: ExtendedModel, options: O, method: string, positive: boolean) {
    super(model, options, { method, positiveRegularization: positive, defaultBlocks: 'full' });
    this.curvature = checkCurvature(this.where, options.curvature ?? 'ggn');
    this.ranks = checkRanks(this.where, options.rank, this.blocks);
  }

  protected abstract invert(approx: LowRankOperator, b: InfluenceBlock): LowRankOperator;
  protected abstract approximate(op: ReturnType<typeof blockOperator>, rank: number, where: string): Co<LowRankOperator>;

  /** @internal */
  solveLowRank(f: (b: InfluenceBlock, Gb: tf.Tensor2D) => Co<tf.Tensor2D>, G: tf.Tensor2D): Co<tf.Tensor2D> {
    return this.blockwise(f)(G);
  }

  /** The low-rank approximation of each block: eigenvalue estimates d (float64) and orthonormal rows U (owned by the model). */
  approximations(): { values: Float64Array; vectors: tf.Tensor2D }[] {
    return (this.requireFit('approximations') as LowRankInverse).parts.map((p) => ({ values: p.approx.values, vectors: p.approx.vectors }));
  }

  private build(approx: LowRankOperator, b: InfluenceBlock): LowRankBlock {
    try {
      return { approx, inverse: this.invert(approx, b) };
    } catch (e) {
      approx.dispose();
      throw e;
    }
  }

  protected *fitInverse(ctx: FitContext): Co<FittedInverse> {
    const parts: LowRankBlock[] = [];
    try {
      for (const b of this.blocks) {
        const op = blockOperator(this.model, this.curvature, ctx.data, b);
        const approx = yield* this.approximate(op, this.ranks[b.index] as number, ctx.where);
        parts.push(this.build(approx, b));
        ctx.blockDone();
      }
    } catch (e) {
      new LowRankInverse(this, parts).dispose();
      throw e;
    }
    return new LowRankInverse(this, parts);
  }

  protected override exportState(): MethodState {
    const inv = this.requireFit('save') as LowRankInverse;
    const arrays: MethodState['arrays'] = {};
    inv.parts.forEach((p, i) => {
      arrays[`block${i}.U`] = { data: Float32Array.from(p.approx.vectors.dataSync()), shape: p.approx.vectors.shape };
      arrays[`block${i}.values`] = { data: Float64Array.from(p.approx.values), shape: [p.approx.rank] };
    });
    return { meta: { curvature: this.curvature, ranks: [...this.ranks] }, arrays };
  }

  protected override importState(state: MethodState): FittedInverse {
    const parts: LowRankBlock[] = [];
    try {
      this.blocks.forEach((b, i) => {
        const U = state.arrays[`block${i}.U`];
        const values = state.arrays[`block${i}.values`];
        if (U === undefined || values === undefined || U.shape.length !== 2 || U.shape[1] !== b.size || U.shape[0] !== values.data.length) {
          throw new Error(`${this.where}: the saved low-rank basis of block ${i} is missing or does not fit the block (${b.size} parameters).`);
        }
        const Ut = tf.tensor2d(Float32Array.from(U.data), U.shape as [number, number]);
        let approx: LowRankOperator;
        try {
          approx = new LowRankOperator(Ut, values.data);
        } finally {
          Ut.dispose();
        }
        parts.push(this.build(approx, b));
      });
    } catch (e) {
      new LowRankInverse(this, parts).dispose();
      throw e;
    }
    return new LowRankInverse(this, parts);
  }
}

/** Influence with the rank-r Lanczos/Arnoldi eigen-approximation of each block (pyDVL's ArnoldiInfluence). */
export class ArnoldiInfluence extends LowRankInfluence<ArnoldiInfluenceOptions> {
  constructor(model: ExtendedModel, options: ArnoldiInfluenceOptions) {
    super(model, options, 'arnoldi', options?.projected === false);
  }

  protected *approximate(op: ReturnType<typeof blockOperator>, rank: number, where: string): Co<LowRankOperator> {
    const o = this.options;
    const opts = {
      seed: o.seed ?? 0,
      ...(o.tol !== undefined ? { tol: o.tol } : {}),
      ...(o.maxIter !== undefined ? { maxIter: o.maxIter } : {}),
    };
    return yield* call(`${where}: Lanczos`, op.isAsync ? undefined : () => arnoldi(op, rank, opts), () => arnoldiAsync(op, rank, opts));
  }

  protected invert(approx: LowRankOperator, b: InfluenceBlock): LowRankOperator {
    return (this.options.projected ?? true) ? approx.projectedInverse(b.regularization) : (approx.inverse(b.regularization) as LowRankOperator);
  }
}

/** Influence with the randomized Nyström approximation of each block, inverted by sketch-and-solve. */
export class NystromInfluence extends LowRankInfluence<NystromInfluenceOptions> {
  constructor(model: ExtendedModel, options: NystromInfluenceOptions) {
    super(model, options, 'nystrom', true);
  }

  protected *approximate(op: ReturnType<typeof blockOperator>, rank: number, where: string): Co<LowRankOperator> {
    const opts = { seed: this.options.seed ?? 0 };
    return yield* call(`${where}: the Nyström sketch`, op.isAsync ? undefined : () => nystromSketch(op, rank, opts), () => nystromSketchAsync(op, rank, opts));
  }

  protected invert(approx: LowRankOperator, b: InfluenceBlock): LowRankOperator {
    return approx.inverse(b.regularization) as LowRankOperator;
  }
}
