/**
 * Inverse harmonic mean (DataInf, Kwon et al. 2024): a closed-form
 * approximation of the damped inverse empirical Fisher, block by block
 * (layer-wise by default). For block b with damping λ_b > 0 and the
 * per-sample gradients g_j (of the single-sample loss ℓ_j, restricted to b),
 *
 *   (G_b + λ_b I)⁻¹ ≈ (1/P) Σ_j (g_j g_jᵀ + λ_b I)⁻¹
 *                   = (1/(λ_b P)) Σ_j (I − g_j g_jᵀ / (λ_b + ‖g_j‖²))   (Sherman–Morrison)
 *
 * where G_b = (1/P) Σ_j g_j g_jᵀ. The operator applies this without forming
 * any matrix: per batch, ⟨g_j, v⟩ and ‖g_j‖² from the per-sample gradient
 * factors (curvature.ts), then Σ_j w_j g_j as one weighted gradient. Cost per
 * product: one forward and backward pass per batch (like the empirical Fisher).
 * Data and conventions as for the curvature operators (mean over the P points).
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import type { ParamGroupSpec } from '../engine/hook';
import type { ParamInfo, ParamRef } from '../engine/params';
import { perSampleSquaredNorm } from '../derivatives/weightProducts';
import { paramBlocks, type BlockMode } from '../operators/blocks';
import { gradientFactors, perSampleDot, selectParams, splitStack, weightedGradientSum, type GradientFactors, type Selection } from '../operators/curvature';
import { BatchStream, sumOverBatches, type Batch, type DataSource } from '../operators/data';
import { LinearOperator } from '../operators/linearOperator';

export interface InverseHarmonicMeanOptions {
  /** λ > 0: one number, or one per block. */
  damping: number | readonly number[];
  /** Blocks (default 'layer', as DataInf); they must cover every parameter of the operator. */
  blocks?: BlockMode | readonly ParamGroupSpec[];
  /** Restrict to these parameters (default: all trainable ones). */
  params?: readonly ParamRef[];
}

/** ‖g_n‖² of one parameter `[N]`. */
function perSampleSquared(g: GradientFactors): tf.Tensor1D {
  return tf.tidy(() => {
    if (g.X === undefined) return tf.sum(tf.square(tf.sum(g.D, 1)), 1) as tf.Tensor1D;
    return tf.reshape(perSampleSquaredNorm(g.X, tf.expandDims(g.D, 0) as tf.Tensor4D), [-1]) as tf.Tensor1D;
  });
}

export class InverseHarmonicMeanOperator extends LinearOperator {
  readonly name: string;
  readonly size: number;
  readonly selection: Selection;
  private readonly stream: BatchStream;
  /** Block of each selected parameter, and λ per block. */
  private readonly blockOf: Map<number, number>;
  private readonly dampings: readonly number[];
  private readonly invDamping: tf.Tensor1D; // 1/λ_b per coordinate
  private disposed = false;

  constructor(
    readonly model: ExtendedModel,
    data: DataSource,
    options: InverseHarmonicMeanOptions,
  ) {
    super();
    const where = 'inverseHarmonicMean';
    if (options === undefined || options.damping === undefined) throw new Error(`${where}: option 'damping' (λ > 0) is required.`);
    this.selection = selectParams(model, options.params, where);
    this.size = this.selection.size;
    const blocks = paramBlocks(model, options.blocks ?? 'layer', this.selection.params);
    const damp = typeof options.damping === 'number' ? blocks.map(() => options.damping as number) : [...options.damping];
    if (damp.length !== blocks.length) {
      throw new Error(`${where}: ${damp.length} damping values for ${blocks.length} blocks; give one number or one per block.`);
    }
    damp.forEach((l, i) => {
      if (typeof l !== 'number' || !Number.isFinite(l) || !(l > 0)) {
        throw new Error(`${where}: damping of block ${i} must be a finite number > 0 (the inverse harmonic mean needs λ > 0), got ${l}.`);
      }
    });
    this.blockOf = new Map();
    blocks.forEach((b, i) => b.params.forEach((p: ParamInfo) => this.blockOf.set(p.index, i)));
    const missing = this.selection.params.filter((p) => !this.blockOf.has(p.index));
    if (missing.length > 0) {
      throw new Error(`${where}: the blocks do not cover parameters ${missing.map((p) => p.name).join(', ')}; every parameter must belong to a block.`);
    }
    this.dampings = damp;
    this.stream = new BatchStream(data, where);
    const inv = new Float32Array(this.size);
    let off = 0;
    for (const p of this.selection.params) {
      inv.fill(1 / (damp[this.blockOf.get(p.index) as number] as number), off, off + p.size);
      off += p.size;
    }
    this.invDamping = tf.keep(tf.tensor1d(inv));
    this.name = `InverseHarmonicMean(D=${this.size})`;
  }

  override get isAsync(): boolean {
    return this.stream.isAsync;
  }

  /** Σ_{j∈batch} g_j w_j with w_j = ⟨g_j, v⟩_b / (λ_b + ‖g_j‖²_b), blockwise. */
  private batchSum(batch: Batch, V: tf.Tensor2D): tf.Tensor2D {
    const sel = this.selection;
    return tf.tidy(() => {
      const K = V.shape[0];
      const vOf = splitStack(sel, V);
      const { factors, scale } = gradientFactors(this.model, sel, batch);
      const c2 = scale * scale;
      const S: (tf.Tensor2D | undefined)[] = this.dampings.map(() => undefined);
      const Q: (tf.Tensor1D | undefined)[] = this.dampings.map(() => undefined);
      for (const g of factors) {
        const b = this.blockOf.get(g.param.index) as number;
        const s = perSampleDot(g, vOf.get(g.param.index) as tf.Tensor);
        const q = perSampleSquared(g);
        S[b] = S[b] === undefined ? s : (tf.add(S[b] as tf.Tensor2D, s) as tf.Tensor2D);
        Q[b] = Q[b] === undefined ? q : (tf.add(Q[b] as tf.Tensor1D, q) as tf.Tensor1D);
      }
      // W_b [K, N] = c²·⟨ĝ, v⟩ / (λ_b + c²‖ĝ‖²): the single-sample gradient is g = c·ĝ.
      const W = S.map((s, b) =>
        s === undefined ? undefined : (tf.div(tf.mul(tf.transpose(s), c2), tf.add(tf.mul(Q[b] as tf.Tensor1D, c2), this.dampings[b] as number)) as tf.Tensor2D),
      );
      const out = factors.map((g) => tf.reshape(weightedGradientSum(g, W[this.blockOf.get(g.param.index) as number] as tf.Tensor2D), [K, g.param.size]));
      return (out.length === 1 ? out[0] : tf.concat(out, 1)) as tf.Tensor2D;
    });
  }

  private finish(acc: tf.Tensor2D | undefined, rows: number, V: tf.Tensor2D): tf.Tensor2D {
    if (acc === undefined || rows === 0) {
      acc?.dispose();
      throw new Error(`${this.name}: the data is empty; the inverse harmonic mean needs at least one data point.`);
    }
    const out = tf.tidy(() => tf.mul(tf.sub(V, tf.div(acc, rows)), this.invDamping) as tf.Tensor2D);
    acc.dispose();
    return out;
  }

  matmat(V: tf.Tensor2D): tf.Tensor2D {
    if (this.disposed) throw new Error(`${this.name}: used after dispose().`);
    if (this.stream.isAsync) throw new Error(`${this.name} streams a tf.data.Dataset: use applyAsync.`);
    const { sum, rows } = this.stream.run(sumOverBatches((b) => this.batchSum(b, V)));
    return this.finish(sum, rows, V);
  }

  override async matmatAsync(V: tf.Tensor2D): Promise<tf.Tensor2D> {
    if (this.disposed) throw new Error(`${this.name}: used after dispose().`);
    const { sum, rows } = await this.stream.runAsync(sumOverBatches((b) => this.batchSum(b, V)));
    return this.finish(sum, rows, V);
  }

  override dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.invDamping.dispose();
  }
}

/** The DataInf approximation of `(EmpiricalFisher + λI)⁻¹` as an operator (owns a small tensor: dispose it). */
export function inverseHarmonicMean(model: ExtendedModel, data: DataSource, options: InverseHarmonicMeanOptions): InverseHarmonicMeanOperator {
  return new InverseHarmonicMeanOperator(model, data, options);
}
