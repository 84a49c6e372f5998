/**
 * EKFAC influence (Grosse et al. 2023, kronfluence): M is the EKFAC
 * approximation of the GGN — block diagonal with one block per parameter,
 * kernel `Q diag(lambda) Qᵀ` with Q = UA ⊗ UG the eigenbases of the KFLR
 * (or KFAC) factors and lambda the corrected eigenvalues, bias likewise with
 * UG only (src/operators/kronecker.ts, two passes over the training data) —
 * and the factors are
 *
 *   (Q diag(lambda) Qᵀ + λ I)⁻¹ g = Q diag(1/(lambda + λ)) Qᵀ g   per parameter,
 *
 * λ > 0 (the factors are typically rank-deficient). `blocks` groups the
 * per-parameter blocks for per-block influences and per-block λ (default
 * 'param'); the approximation itself never couples parameters. Fit cost: two
 * forward/backward passes over the data plus float64 eigendecompositions of
 * A (I×I) and G (O×O) per layer; solve: four small matMuls per parameter.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { ParamInfo } from '../engine/params';
import type { EkfacResult } from '../../extensions/secondorder/ekfac';
import { EkfacBlock, ekfacOperator, ekfacOperatorAsync, ParamBlockOperator, type EkfacOperator } from '../operators/kronecker';
import { BlockDiagonalOperator, type LinearOperator } from '../operators/linearOperator';
import type { FitContext, FittedInverse, MethodState } from './base';
import { InfluenceModel } from './base';
import { call, type Co } from './coroutine';
import { isDataset } from './data';
import type { InfluenceOptions } from './types';

export interface EkfacInfluenceOptions extends InfluenceOptions {
  /** Eigenbasis from `kflr` factors (exact GGN square root, default) or `kfac` (Monte-Carlo). */
  factors?: 'kflr' | 'kfac';
  /** Corrected eigenvalues from the GGN (`ggn`, default) or the per-sample gradients (`empiricalFisher`). */
  correction?: 'ggn' | 'empiricalFisher';
  /** kfac: MC samples per data point (default 1). */
  mcSamples?: number;
  /** kfac: seed. */
  seed?: number;
}

class EkfacInverse implements FittedInverse {
  constructor(
    readonly op: EkfacOperator,
    readonly inverse: LinearOperator,
  ) {}
  *solve(G: tf.Tensor2D): Co<tf.Tensor2D> {
    return this.inverse.matmat(G);
  }
  dispose(): void {
    this.inverse.dispose();
    this.op.dispose();
  }
}

const KEYS = ['UA', 'UG', 'lambda', 'evalsA', 'evalsG'] as const;

export class EkfacInfluence extends InfluenceModel<EkfacInfluenceOptions> {
  constructor(model: ExtendedModel, options: EkfacInfluenceOptions) {
    super(model, options, { method: 'ekfac', positiveRegularization: true, defaultBlocks: 'param' });
    const c = (options as { curvature?: unknown }).curvature;
    if (c !== undefined && c !== 'ggn') {
      throw new Error(`${this.where}: EKFAC approximates the GGN (or, with correction: 'empiricalFisher', the empirical Fisher); option 'curvature: ${String(c)}' is not available — use DirectInfluence / CgInfluence for the Hessian.`);
    }
  }

  /** The fitted EKFAC operator (owned by the model). */
  get operator(): EkfacOperator {
    return (this.requireFit('operator') as EkfacInverse).op;
  }

  /** λ of each selected parameter (its block's). */
  private regularizationOf(p: ParamInfo): number {
    const b = this.blocks.find((x) => x.params.some((q) => q.index === p.index));
    return b?.regularization as number;
  }

  private invert(op: EkfacOperator): EkfacInverse {
    const invs: LinearOperator[] = [];
    try {
      for (const p of this.params) invs.push(op.block(p).inverse(this.regularizationOf(p)));
      return new EkfacInverse(op, new BlockDiagonalOperator(invs, { owns: true }));
    } catch (e) {
      for (const i of invs) i.dispose();
      op.dispose();
      throw e;
    }
  }

  protected *fitInverse(ctx: FitContext): Co<FittedInverse> {
    const o = this.options;
    const opts = {
      params: this.params,
      ...(o.factors !== undefined ? { factors: o.factors } : {}),
      ...(o.correction !== undefined ? { correction: o.correction } : {}),
      ...(o.mcSamples !== undefined ? { mcSamples: o.mcSamples } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
    };
    const data = ctx.data;
    const op = yield* call(`${ctx.where}: EKFAC factors`, isDataset(data) ? undefined : () => ekfacOperator(this.model, data, opts), () =>
      ekfacOperatorAsync(this.model, data, opts),
    );
    for (let i = 0; i < this.blocks.length; i++) ctx.blockDone();
    return this.invert(op);
  }

  protected override exportState(): MethodState {
    const op = this.operator;
    const arrays: MethodState['arrays'] = {};
    for (const p of this.params) {
      const r = op.block(p).result as Record<string, tf.Tensor | undefined>;
      for (const k of KEYS) {
        const t = r[k];
        if (t !== undefined) arrays[`${p.shortName}.${k}`] = { data: Float32Array.from(t.dataSync()), shape: t.shape };
      }
    }
    return { meta: { factors: this.options.factors ?? 'kflr', correction: this.options.correction ?? 'ggn' }, arrays };
  }

  protected override importState(state: MethodState): FittedInverse {
    const blocks: EkfacBlock[] = [];
    try {
      for (const p of this.params) {
        const get = (k: (typeof KEYS)[number]) => {
          const a = state.arrays[`${p.shortName}.${k}`];
          return a === undefined ? undefined : tf.tensor(Float32Array.from(a.data), a.shape as number[]);
        };
        const t = Object.fromEntries(KEYS.map((k) => [k, get(k)])) as Record<(typeof KEYS)[number], tf.Tensor | undefined>;
        const kernel = p.role === 'kernel';
        const [I, O] = kernel ? [p.size / (p.shape[p.shape.length - 1] as number), p.shape[p.shape.length - 1] as number] : [1, p.size];
        const ok =
          t.UG?.shape[0] === O &&
          t.evalsG?.size === O &&
          t.lambda?.size === I * O &&
          (!kernel || (t.UA?.shape[0] === I && t.evalsA?.size === I));
        if (!ok) {
          tf.dispose(Object.values(t).filter((x): x is tf.Tensor => x !== undefined));
          throw new Error(`${this.where}: the saved EKFAC factors of '${p.shortName}' are missing or do not fit the parameter of shape [${p.shape.join(', ')}].`);
        }
        const result: EkfacResult = kernel
          ? { UA: t.UA as tf.Tensor2D, UG: t.UG as tf.Tensor2D, lambda: tf.reshape(t.lambda as tf.Tensor, [I, O]) as tf.Tensor2D, evalsA: t.evalsA as tf.Tensor1D, evalsG: t.evalsG as tf.Tensor1D }
          : { UG: t.UG as tf.Tensor2D, lambda: tf.reshape(t.lambda as tf.Tensor, [O]) as tf.Tensor1D, evalsG: t.evalsG as tf.Tensor1D };
        if (t.lambda !== undefined && t.lambda !== result.lambda) t.lambda.dispose();
        if (!kernel) tf.dispose([t.UA, t.evalsA].filter((x): x is tf.Tensor => x !== undefined));
        blocks.push(new EkfacBlock(p, result));
      }
    } catch (e) {
      for (const b of blocks) b.dispose();
      throw e;
    }
    return this.invert(new ParamBlockOperator(blocks));
  }
}
