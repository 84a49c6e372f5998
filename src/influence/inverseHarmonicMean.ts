/**
 * Inverse-harmonic-mean influence (DataInf, Kwon et al. 2024): the damped
 * inverse empirical Fisher of each block approximated in closed form by the
 * mean of the per-sample inverses (src/solvers/inverseHarmonicMean.ts),
 *
 *   (G_b + λ_b I)⁻¹ ≈ (1/(λ_b P)) Σ_j (I − g_j g_jᵀ / (λ_b + ‖g_j‖²)),   G_b = (1/P) Σ_j g_j g_jᵀ,
 *
 * g_j the single-sample gradients restricted to block b, λ_b > 0. Blocks
 * default to 'layer' (DataInf's choice). No fit work: every solve streams
 * the training data once (one forward/backward pass per chunk).
 */
import type * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import { inverseHarmonicMean, type InverseHarmonicMeanOperator } from '../solvers/inverseHarmonicMean';
import type { FitContext, FittedInverse, MethodState } from './base';
import { InfluenceModel } from './base';
import type { Co } from './coroutine';
import type { DataSource } from './data';
import { product } from './operators';
import type { InfluenceOptions } from './types';

export type InverseHarmonicMeanInfluenceOptions = InfluenceOptions;

class IhmInverse implements FittedInverse {
  constructor(readonly op: InverseHarmonicMeanOperator) {}
  solve(G: tf.Tensor2D): Co<tf.Tensor2D> {
    return product(this.op, G, 'inverseHarmonicMeanInfluence: the inverse harmonic mean');
  }
  dispose(): void {
    this.op.dispose();
  }
}

export class InverseHarmonicMeanInfluence extends InfluenceModel<InverseHarmonicMeanInfluenceOptions> {
  constructor(model: ExtendedModel, options: InverseHarmonicMeanInfluenceOptions) {
    super(model, options, { method: 'inverseHarmonicMean', positiveRegularization: true, defaultBlocks: 'layer' });
    const c = (options as { curvature?: unknown }).curvature;
    if (c !== undefined && c !== 'empiricalFisher') {
      throw new Error(`${this.where}: the inverse harmonic mean approximates the inverse empirical Fisher; option 'curvature: ${String(c)}' is not available.`);
    }
  }

  override get needsDataToLoad(): boolean {
    return true;
  }

  private build(data: DataSource): IhmInverse {
    return new IhmInverse(
      inverseHarmonicMean(this.model, data, {
        damping: this.blocks.map((b) => b.regularization),
        blocks: this.blocks.map((b) => ({ params: b.params })),
        params: this.params,
      }),
    );
  }

  // eslint-disable-next-line require-yield
  protected *fitInverse(ctx: FitContext): Co<FittedInverse> {
    const inv = this.build(ctx.data);
    for (let i = 0; i < this.blocks.length; i++) ctx.blockDone();
    return inv;
  }

  protected override exportState(): MethodState {
    return { meta: {}, arrays: {} };
  }

  protected override importState(_state: MethodState, data: DataSource | undefined): FittedInverse {
    if (data === undefined) throw new Error(`${this.where}: loading needs the training data (the inverse harmonic mean streams it on every solve); pass { trainData }.`);
    return this.build(data);
  }
}
