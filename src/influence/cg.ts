/**
 * CG influence (Koh & Liang 2017, pyDVL's CgInfluence): the factors solve
 * (M_b + λ_b I) f = g_b per block by conjugate gradients (all test points
 * stacked: one operator product per iteration over the training data), or
 * by breakdown-free block CG (`solver: 'blockCg'`, one shared Krylov space),
 * optionally preconditioned (Jacobi from a Hutchinson diagonal estimate, or
 * Nyström of rank ℓ — Frangella, Tropp & Udell 2023).
 *
 * CG needs M + λI positive definite. With the Hessian it may be indefinite:
 * with `normalEquations: 'auto'` (default) a CG breakdown (pᵀAp ≤ 0) is
 * answered by CG on the normal equations (M+λI)² f = (M+λI) g (SPD whenever
 * M + λI is non-singular; condition number squared, no preconditioner).
 *
 * Cost per iteration: one product of M with a `[K, D_b]` stack, i.e. about
 * 2 (GGN) or 3 (Hessian) forward+backward passes over the training data with
 * K-wide stacks. Fit: only the preconditioner (16 Hutchinson probes, or ℓ
 * products in one stack).
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../engine/extend';
import { CurvatureOperator } from '../operators/curvature';
import { DiagonalOperator, LinearOperator, LowRankOperator } from '../operators/linearOperator';
import { blockCg, blockCgAsync } from '../solvers/blockCg';
import { cg, cgAsync } from '../solvers/cg';
import type { SolveResult } from '../solvers/common';
import { checkInteger } from '../utils/options';
import {
  jacobiPreconditioner,
  jacobiPreconditionerAsync,
  nystromPreconditioner,
  nystromPreconditionerAsync,
} from '../solvers/preconditioners';
import type { FitContext, FittedInverse, MethodState } from './base';
import { InfluenceModel } from './base';
import type { InfluenceBlock } from './blocks';
import { call, type Co } from './coroutine';
import type { DataSource } from './data';
import { blockOperator, checkCurvature, product, SquaredOperator } from './operators';
import type { CurvatureInfluenceOptions, CurvatureMode } from './types';

export interface CgInfluenceOptions extends CurvatureInfluenceOptions {
  /** `cg` (default: independent recurrences, stacked products) or `blockCg`. */
  solver?: 'cg' | 'blockCg';
  /** Relative residual tolerance (default 1e-6). */
  rtol?: number;
  /** Absolute residual tolerance (default 0). */
  atol?: number;
  /** Iterations per solve (default min(max(10·D_b, 100), 1000)). */
  maxIter?: number;
  /** `none` (default), `jacobi` (Hutchinson diagonal) or `nystrom` (rank `preconditionerRank`). */
  preconditioner?: 'none' | 'jacobi' | 'nystrom';
  /** Nyström preconditioner rank ℓ (default min(50, D_b)). */
  preconditionerRank?: number;
  /** Jacobi: Hutchinson probes (default 16). */
  hutchinsonSamples?: number;
  /** Seed of the preconditioner's random vectors (default 0). */
  seed?: number;
  /** On a CG breakdown (indefinite M + λI): `auto` (default) solves the normal equations, `never` throws, `always` uses them from the start. */
  normalEquations?: 'auto' | 'always' | 'never';
}

interface CgBlock {
  op: CurvatureOperator;
  preconditioner: LinearOperator | undefined;
}

class CgInverse implements FittedInverse {
  constructor(
    private readonly owner: CgInfluence,
    readonly parts: readonly CgBlock[],
  ) {}
  solve(G: tf.Tensor2D): Co<tf.Tensor2D> {
    return this.owner.solveWith(this.parts, G);
  }
  dispose(): void {
    for (const p of this.parts) p.preconditioner?.dispose();
  }
}

export class CgInfluence extends InfluenceModel<CgInfluenceOptions> {
  readonly curvature: CurvatureMode;
  /** Iterations, convergence and residual of every block's last solve. */
  lastSolves: { block: string; iterations: number; converged: boolean; relativeResidual: number; normalEquations: boolean }[] = [];

  constructor(model: ExtendedModel, options: CgInfluenceOptions) {
    super(model, options, { method: 'cg', positiveRegularization: false, defaultBlocks: 'full' });
    const w = this.where;
    this.curvature = checkCurvature(w, options.curvature ?? 'ggn');
    if (!['cg', 'blockCg'].includes(options.solver ?? 'cg')) throw new Error(`${w}: option 'solver' must be 'cg' or 'blockCg', got '${String(options.solver)}'.`);
    if (!['none', 'jacobi', 'nystrom'].includes(options.preconditioner ?? 'none')) {
      throw new Error(`${w}: option 'preconditioner' must be 'none', 'jacobi' or 'nystrom', got '${String(options.preconditioner)}'.`);
    }
    if (!['auto', 'always', 'never'].includes(options.normalEquations ?? 'auto')) {
      throw new Error(`${w}: option 'normalEquations' must be 'auto', 'always' or 'never', got '${String(options.normalEquations)}'.`);
    }
    if (options.preconditioner === 'nystrom') {
      if (this.blocks.some((b) => !(b.regularization > 0))) throw new Error(`${w}: the Nyström preconditioner needs regularization > 0.`);
      const r = options.preconditionerRank;
      if (r !== undefined) {
        checkInteger(w, 'preconditionerRank', r, 1);
        const small = this.blocks.find((b) => r > b.size);
        if (small) throw new Error(`${w}: preconditionerRank ${r} is larger than the number of parameters of block '${small.name}' (${small.size}).`);
      }
    }
  }

  override get needsDataToLoad(): boolean {
    return true;
  }

  private *preconditionerFor(op: CurvatureOperator, b: InfluenceBlock, where: string): Co<LinearOperator | undefined> {
    const o = this.options;
    const kind = o.preconditioner ?? 'none';
    if (kind === 'none') return undefined;
    if (kind === 'jacobi') {
      const opts = { damping: b.regularization, samples: o.hutchinsonSamples ?? 16, seed: o.seed ?? 0 };
      return yield* call(`${where}: the Jacobi preconditioner`, op.isAsync ? undefined : () => jacobiPreconditioner(op, opts), () => jacobiPreconditionerAsync(op, opts));
    }
    const rank = o.preconditionerRank ?? Math.min(50, b.size);
    const opts = { damping: b.regularization, seed: o.seed ?? 0 };
    return yield* call(`${where}: the Nyström preconditioner`, op.isAsync ? undefined : () => nystromPreconditioner(op, rank, opts), () => nystromPreconditionerAsync(op, rank, opts));
  }

  protected *fitInverse(ctx: FitContext): Co<FittedInverse> {
    const parts: CgBlock[] = [];
    try {
      for (const b of this.blocks) {
        const op = blockOperator(this.model, this.curvature, ctx.data, b);
        parts.push({ op, preconditioner: yield* this.preconditionerFor(op, b, ctx.where) });
        ctx.blockDone();
      }
    } catch (e) {
      for (const p of parts) p.preconditioner?.dispose();
      throw e;
    }
    return new CgInverse(this, parts);
  }

  private *runSolver(A: LinearOperator, B: tf.Tensor2D, M: LinearOperator | undefined): Co<SolveResult> {
    const o = this.options;
    const opts = {
      ...(o.rtol !== undefined ? { rtol: o.rtol } : {}),
      ...(o.atol !== undefined ? { atol: o.atol } : {}),
      ...(o.maxIter !== undefined ? { maxIter: o.maxIter } : {}),
      ...(M !== undefined ? { preconditioner: M } : {}),
    };
    const block = (o.solver ?? 'cg') === 'blockCg';
    const what = `${this.where}: ${block ? 'block CG' : 'CG'}`;
    if (block) return yield* call(what, A.isAsync ? undefined : () => blockCg(A, B, opts), () => blockCgAsync(A, B, opts));
    return yield* call(what, A.isAsync ? undefined : () => cg(A, B, opts), () => cgAsync(A, B, opts));
  }

  /** @internal */
  *solveWith(parts: readonly CgBlock[], G: tf.Tensor2D): Co<tf.Tensor2D> {
    const mode = this.options.normalEquations ?? 'auto';
    this.lastSolves = [];
    const self = this;
    return yield* this.blockwise(function* (b: InfluenceBlock, Gb: tf.Tensor2D) {
      const part = parts[b.index] as CgBlock;
      const A = part.op.damp(b.regularization);
      let normal = mode === 'always';
      let r: SolveResult | undefined;
      if (!normal) {
        try {
          r = yield* self.runSolver(A, Gb, part.preconditioner);
        } catch (e) {
          const indefinite = /not positive definite/.test((e as Error).message);
          if (!indefinite || mode === 'never') throw e;
          self.warn('factors', `block '${b.name}': M + λI is not positive definite (${(e as Error).message.split(':').slice(-2).join(':').trim()}); solving the normal equations (M+λI)² f = (M+λI) g instead.`);
          normal = true;
        }
      }
      if (normal) {
        const rhs = yield* product(A, Gb, `${self.where}: (M + λI) g`);
        try {
          r = yield* self.runSolver(new SquaredOperator(A), rhs, undefined);
        } finally {
          rhs.dispose();
        }
      }
      const res = r as SolveResult;
      self.lastSolves.push({ block: b.name, iterations: res.iterations, converged: res.converged, relativeResidual: res.relativeResidual, normalEquations: normal });
      if (!res.converged) {
        self.warn(
          'factors',
          `block '${b.name}': ${self.options.solver ?? 'cg'} did not converge in ${res.iterations} iterations (relative residual ${res.relativeResidual.toExponential(2)}); raise maxIter or the regularization, or use a preconditioner.`,
        );
      }
      return res.x as tf.Tensor2D;
    })(G);
  }

  protected override exportState(): MethodState {
    const inv = this.requireFit('save') as CgInverse;
    const arrays: MethodState['arrays'] = {};
    const kinds: string[] = [];
    inv.parts.forEach((p, i) => {
      const M = p.preconditioner;
      if (M instanceof DiagonalOperator) {
        kinds.push('diagonal');
        arrays[`block${i}.diagonal`] = { data: Float32Array.from(M.diagonal.dataSync()), shape: [M.size] };
      } else if (M instanceof LowRankOperator) {
        kinds.push('lowRank');
        arrays[`block${i}.U`] = { data: Float32Array.from(M.vectors.dataSync()), shape: M.vectors.shape };
        arrays[`block${i}.values`] = { data: Float64Array.from(M.values), shape: [M.rank] };
        arrays[`block${i}.shift`] = { data: Float64Array.of(M.shift), shape: [1] };
      } else kinds.push('none');
    });
    return { meta: { curvature: this.curvature, preconditioners: kinds }, arrays };
  }

  protected override importState(state: MethodState, data: DataSource | undefined): FittedInverse {
    if (data === undefined) throw new Error(`${this.where}: loading needs the training data (CG solves with the curvature operator); pass { trainData }.`);
    const kinds = (state.meta.preconditioners as string[] | undefined) ?? [];
    const parts: CgBlock[] = this.blocks.map((b, i) => {
      const op = blockOperator(this.model, this.curvature, data, b);
      const kind = kinds[i] ?? 'none';
      let preconditioner: LinearOperator | undefined;
      if (kind === 'diagonal') {
        preconditioner = new DiagonalOperator((state.arrays[`block${i}.diagonal`] as { data: Float32Array }).data);
      } else if (kind === 'lowRank') {
        const U = state.arrays[`block${i}.U`];
        const values = state.arrays[`block${i}.values`];
        const shift = state.arrays[`block${i}.shift`];
        if (U === undefined || values === undefined || shift === undefined || U.shape[1] !== b.size) {
          throw new Error(`${this.where}: the saved Nyström preconditioner of block ${i} is missing or does not fit the block (${b.size} parameters).`);
        }
        const Ut = tf.tensor2d(Float32Array.from(U.data), U.shape as [number, number]);
        try {
          preconditioner = new LowRankOperator(Ut, values.data, shift.data[0] as number);
        } finally {
          Ut.dispose();
        }
      }
      return { op, preconditioner };
    });
    return new CgInverse(this, parts);
  }
}
