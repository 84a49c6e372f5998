/**
 * Direct influence: the explicit matrix of every block of M (built column by
 * column from the curvature operator, D_b products), its float64 symmetric
 * eigendecomposition M_b = Q diag(w) Qᵀ (src/linalg), and the exact solve
 *
 *   (M_b + λ_b I)⁻¹ g = Q diag(1/(w + λ_b)) Qᵀ g      (float64 on the CPU)
 *
 * For small models: memory D_b² float64 per block, fit cost D_b/32 passes
 * over the data plus ≈ 9 D_b³ flops (eigh), solve 4·K·D_b² flops. M may be
 * indefinite (Hessian): only M + λI must be non-singular, so λ = 0 is
 * allowed when M is.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import { eigh } from '../linalg/eigh';
import type { FitContext, FittedInverse, MethodState } from './base';
import { InfluenceModel } from './base';
import type { InfluenceBlock } from './blocks';
import { call, type Co } from './coroutine';
import { blockOperator, checkCurvature } from './operators';
import type { CurvatureInfluenceOptions, CurvatureMode } from './types';

/** Largest block for the explicit matrix (eigh of D_b = 2048 takes about a minute). */
export const MAX_DIRECT_BLOCK = 2048;

export type DirectInfluenceOptions = CurvatureInfluenceOptions;

interface BlockEigen {
  values: Float64Array;
  /** Row-major D_b×D_b, column j = eigenvector j. */
  vectors: Float64Array;
}

/** `1/(w + λ)` for every eigenvalue; throws when M + λI is singular. */
function inverseEigenvalues(e: BlockEigen, lambda: number, where: string): Float64Array {
  const n = e.values.length;
  const s = new Float64Array(n);
  let maxAbs = 0;
  for (const w of e.values) maxAbs = Math.max(maxAbs, Math.abs(w));
  for (let j = 0; j < n; j++) {
    const t = (e.values[j] as number) + lambda;
    if (!(Math.abs(t) > 1e-12 * Math.max(maxAbs, lambda))) {
      throw new Error(`${where}: M + λI is singular (eigenvalue ${e.values[j]} + λ = ${lambda} ≈ 0); increase the regularization.`);
    }
    s[j] = 1 / t;
  }
  return s;
}

/** `G Q diag(s) Qᵀ` in float64 for G `[K, n]` (row-major data). */
function solveEigen(g: ArrayLike<number>, K: number, n: number, e: BlockEigen, lambda: number, where: string): Float32Array {
  const s = inverseEigenvalues(e, lambda, where);
  const Q = e.vectors;
  const out = new Float32Array(K * n);
  const c = new Float64Array(n);
  for (let k = 0; k < K; k++) {
    // c = diag(s) Qᵀ g_k
    c.fill(0);
    for (let i = 0; i < n; i++) {
      const gi = g[k * n + i] as number;
      if (gi === 0) continue;
      const row = i * n;
      for (let j = 0; j < n; j++) c[j] = (c[j] as number) + gi * (Q[row + j] as number);
    }
    for (let j = 0; j < n; j++) c[j] = (c[j] as number) * (s[j] as number);
    // out_k = Q c
    for (let i = 0; i < n; i++) {
      const row = i * n;
      let acc = 0;
      for (let j = 0; j < n; j++) acc += (Q[row + j] as number) * (c[j] as number);
      out[k * n + i] = acc;
    }
  }
  return out;
}

class DirectInverse implements FittedInverse {
  constructor(
    private readonly owner: DirectInfluence,
    readonly eigens: readonly BlockEigen[],
  ) {}
  solve(G: tf.Tensor2D): Co<tf.Tensor2D> {
    const o = this.owner;
    return o.solveBlocks(G, (b: InfluenceBlock, Gb: tf.Tensor2D) => {
      const [K, n] = Gb.shape;
      const y = solveEigen(Gb.dataSync(), K, n, this.eigens[b.index] as BlockEigen, b.regularization, `${o.method}Influence`);
      return tf.tensor2d(y, [K, n]);
    });
  }
  dispose(): void {}
}

/** Influence with the explicit (block) matrix of M and an exact float64 solve. */
export class DirectInfluence extends InfluenceModel<DirectInfluenceOptions> {
  readonly curvature: CurvatureMode;

  constructor(model: ExtendedModel, options: DirectInfluenceOptions) {
    super(model, options, { method: 'direct', positiveRegularization: false, defaultBlocks: 'full' });
    this.curvature = checkCurvature(this.where, options.curvature ?? 'ggn');
    for (const b of this.blocks) {
      if (b.size > MAX_DIRECT_BLOCK) {
        throw new Error(
          `${this.where}: block '${b.name}' has ${b.size} parameters; the explicit matrix is limited to ${MAX_DIRECT_BLOCK} (eigendecomposition ≈ 9·D³ flops). Use blocks: 'layer' / 'param', or CgInfluence, ArnoldiInfluence or EkfacInfluence.`,
        );
      }
    }
  }

  /** @internal */
  *solveBlocks(G: tf.Tensor2D, f: (b: InfluenceBlock, Gb: tf.Tensor2D) => tf.Tensor2D): Co<tf.Tensor2D> {
    return yield* this.blockwise(function* (b, Gb) {
      return f(b, Gb);
    })(G);
  }

  protected *fitInverse(ctx: FitContext): Co<FittedInverse> {
    const eigens: BlockEigen[] = [];
    for (const b of this.blocks) {
      const op = blockOperator(this.model, this.curvature, ctx.data, b);
      const M = yield* call(`${ctx.where}: the explicit matrix`, op.isAsync ? undefined : () => op.toDense(), () => op.toDenseAsync());
      const e = eigh(M, b.size);
      eigens.push({ values: e.values, vectors: e.vectors as Float64Array });
      // Every block must be invertible: say so now rather than at the first solve.
      inverseEigenvalues(eigens[eigens.length - 1] as BlockEigen, b.regularization, ctx.where);
      ctx.blockDone();
    }
    return new DirectInverse(this, eigens);
  }

  /** The explicit matrix M_b of a block (row-major float64, rebuilt from its eigendecomposition). */
  blockMatrix(block: number): Float64Array {
    const inv = this.requireFit('blockMatrix') as DirectInverse;
    const e = inv.eigens[block];
    if (e === undefined) throw new Error(`${this.where}.blockMatrix: no block ${block}; the model has ${this.blocks.length} blocks.`);
    const n = e.values.length;
    const M = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += (e.vectors[i * n + k] as number) * (e.values[k] as number) * (e.vectors[j * n + k] as number);
        M[i * n + j] = s;
        M[j * n + i] = s;
      }
    return M;
  }

  protected override exportState(): MethodState {
    const inv = this.requireFit('save') as DirectInverse;
    const arrays: MethodState['arrays'] = {};
    inv.eigens.forEach((e, i) => {
      const n = e.values.length;
      arrays[`block${i}.values`] = { data: e.values, shape: [n] };
      arrays[`block${i}.vectors`] = { data: e.vectors, shape: [n, n] };
    });
    return { meta: { curvature: this.curvature }, arrays };
  }

  protected override importState(state: MethodState): FittedInverse {
    const eigens = this.blocks.map((b, i) => {
      const values = state.arrays[`block${i}.values`];
      const vectors = state.arrays[`block${i}.vectors`];
      if (values === undefined || vectors === undefined || values.data.length !== b.size || vectors.data.length !== b.size * b.size) {
        throw new Error(`${this.where}: the saved eigendecomposition of block ${i} is missing or does not fit the block (${b.size} parameters).`);
      }
      return { values: Float64Array.from(values.data), vectors: Float64Array.from(vectors.data) };
    });
    for (const [i, e] of eigens.entries()) {
      const b = this.blocks[i] as InfluenceBlock;
      inverseEigenvalues(e, b.regularization, this.where);
    }
    return new DirectInverse(this, eigens);
  }
}
