/**
 * LiSSA influence (Agarwal et al. 2017; pyDVL's LissaInfluence): the factors
 * of each block by the stochastic Neumann iteration of src/solvers/lissa.ts,
 *
 *   h_0 = g,  h_t = g + (1 − dampen) h_{t−1} − (M_t h_{t−1} + λ h_{t−1}) / scale,  f = h_t / scale,
 *
 * with M_t = M (full products over the training data) or, with `minibatch`,
 * the curvature of a random minibatch. With full products the error after t
 * iterations is (M + λ)⁻¹ T^{t+1} g with T = I − (M + λI)/scale (dampen = 0),
 * i.e. at most ρ^{t+1} relative in the eigenbasis, ρ = max_i |1 − (μ_i + λ)/scale|.
 * `scale: 'auto'` (default) takes max |μ_i| + λ from a short Lanczos run at
 * fit, so ρ = 1 − (μ_min + λ)/(|μ|_max + λ) < 1 when M + λI is positive definite.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { CurvatureOperator } from '../operators/curvature';
import { lissa, lissaAsync } from '../solvers/lissa';
import { eigsh, eigshAsync } from '../solvers/lowRank';
import type { FitContext, FittedInverse, MethodState } from './base';
import { InfluenceModel } from './base';
import type { InfluenceBlock } from './blocks';
import { call, type Co } from './coroutine';
import type { DataSource } from './data';
import { blockOperator, checkCurvature } from './operators';
import type { CurvatureInfluenceOptions, CurvatureMode } from './types';

export interface LissaInfluenceOptions extends CurvatureInfluenceOptions {
  /** Divides the operator; must exceed (μ_max + λ)/2. `auto` (default): max|μ| + λ from Lanczos at fit. */
  scale?: number | 'auto';
  /** Shrinks the iterate each step (default 0). */
  dampen?: number;
  /** Iterations (default 1000). */
  maxIter?: number;
  /** Stop when the relative change of the iterate is below this (default 1e-4; 0: run maxIter iterations). */
  rtol?: number;
  /** Minibatch size for stochastic products (default: full products over the training data). */
  minibatch?: number;
  /** Seed of the minibatch sampling and of the Lanczos start vector (default 0). */
  seed?: number;
}

interface LissaBlock {
  op: CurvatureOperator;
  scale: number;
}

class LissaInverse implements FittedInverse {
  constructor(
    private readonly owner: LissaInfluence,
    readonly parts: readonly LissaBlock[],
  ) {}
  solve(G: tf.Tensor2D): Co<tf.Tensor2D> {
    return this.owner.solveWith(this.parts, G);
  }
  dispose(): void {}
}

export class LissaInfluence extends InfluenceModel<LissaInfluenceOptions> {
  readonly curvature: CurvatureMode;
  /** Iterations and convergence of every block's last solve. */
  lastSolves: { block: string; iterations: number; converged: boolean; relativeChange: number }[] = [];

  constructor(model: ExtendedModel, options: LissaInfluenceOptions) {
    super(model, options, { method: 'lissa', positiveRegularization: false, defaultBlocks: 'full' });
    this.curvature = checkCurvature(this.where, options.curvature ?? 'ggn');
    const s = options.scale ?? 'auto';
    if (s !== 'auto' && (typeof s !== 'number' || !Number.isFinite(s) || !(s > 0))) {
      throw new Error(`${this.where}: option 'scale' must be 'auto' or a finite number > 0, got ${String(s)}.`);
    }
  }

  override get needsDataToLoad(): boolean {
    return true;
  }

  /** The scale of each block (after fit). */
  get scales(): number[] {
    return (this.requireFit('scales') as LissaInverse).parts.map((p) => p.scale);
  }

  private *scaleFor(op: CurvatureOperator, b: InfluenceBlock, where: string): Co<number> {
    const s = this.options.scale ?? 'auto';
    if (s !== 'auto') return s;
    const opts = { which: 'magnitude' as const, maxIter: Math.min(b.size, 30), tol: 1e-3, seed: this.options.seed ?? 0 };
    const r = yield* call(`${where}: the largest eigenvalue (scale: 'auto')`, op.isAsync ? undefined : () => eigsh(op, 1, opts), () => eigshAsync(op, 1, opts));
    r.vectors.dispose();
    const top = Math.abs(r.values[0] as number);
    return top + b.regularization > 0 ? top + b.regularization : 1;
  }

  protected *fitInverse(ctx: FitContext): Co<FittedInverse> {
    const parts: LissaBlock[] = [];
    for (const b of this.blocks) {
      const op = blockOperator(this.model, this.curvature, ctx.data, b);
      parts.push({ op, scale: yield* this.scaleFor(op, b, ctx.where) });
      ctx.blockDone();
    }
    return new LissaInverse(this, parts);
  }

  /** @internal */
  *solveWith(parts: readonly LissaBlock[], G: tf.Tensor2D): Co<tf.Tensor2D> {
    const self = this;
    const o = this.options;
    this.lastSolves = [];
    return yield* this.blockwise(function* (b: InfluenceBlock, Gb: tf.Tensor2D) {
      const part = parts[b.index] as LissaBlock;
      const opts = {
        scale: part.scale,
        damping: b.regularization,
        ...(o.dampen !== undefined ? { dampen: o.dampen } : {}),
        ...(o.maxIter !== undefined ? { maxIter: o.maxIter } : {}),
        ...(o.rtol !== undefined ? { rtol: o.rtol } : {}),
        ...(o.minibatch !== undefined ? { batchSize: o.minibatch } : {}),
        seed: o.seed ?? 0,
      };
      const op = part.op;
      const r = yield* call(`${self.where}: LiSSA`, op.isAsync ? undefined : () => lissa(op, Gb, opts), () => lissaAsync(op, Gb, opts));
      self.lastSolves.push({ block: b.name, iterations: r.iterations, converged: r.converged, relativeChange: r.relativeResidual });
      if (!r.converged && (o.rtol ?? 1e-4) > 0) {
        self.warn('factors', `block '${b.name}': LiSSA did not reach rtol in ${r.iterations} iterations (relative change ${r.relativeResidual.toExponential(2)}); raise maxIter or lower the scale.`);
      }
      return r.x as tf.Tensor2D;
    })(G);
  }

  protected override exportState(): MethodState {
    const inv = this.requireFit('save') as LissaInverse;
    return { meta: { curvature: this.curvature, scales: inv.parts.map((p) => p.scale) }, arrays: {} };
  }

  protected override importState(state: MethodState, data: DataSource | undefined): FittedInverse {
    if (data === undefined) throw new Error(`${this.where}: loading needs the training data (LiSSA multiplies with the curvature operator); pass { trainData }.`);
    const scales = state.meta.scales as number[] | undefined;
    if (!Array.isArray(scales) || scales.length !== this.blocks.length) throw new Error(`${this.where}: the saved scales do not fit the ${this.blocks.length} blocks.`);
    return new LissaInverse(
      this,
      this.blocks.map((b, i) => ({ op: blockOperator(this.model, this.curvature, data, b), scale: scales[i] as number })),
    );
  }
}
