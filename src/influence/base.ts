/**
 * Influence-function models (Koh & Liang 2017; pyDVL / kronfluence style),
 * a staged pipeline with persisted intermediate results:
 *
 *   fit(train)               the curvature M of the mean training loss and
 *                            what the method needs to apply (M + λI)⁻¹
 *                            (explicit inverse, factors, low-rank basis, …)
 *   influenceFactors(x, y)   F = (M + λI)⁻¹ g_test          `[nTest, D]`
 *   influencesFromFactors    up:           F g_trainᵀ        `[nTest, nTrain]`
 *                            perturbation: ∇_{x_j} ⟨F_i, ∇_θ ℓ_j⟩
 *                                                        `[nTest, nTrain, ...inputShape]`
 *
 * with (FORMAT.md §6.5) influence[i][j] = g_test_iᵀ (M + λI)⁻¹ g_train_j —
 * no minus sign —, g the gradient of the single-sample loss
 * ℓ = loss({(x, y)}) (the model's loss and reduction with N = 1, no
 * 1/nTrain) and M the Hessian / GGN / empirical Fisher of the mean training
 * loss (1/nTrain) Σ_j ℓ_j, optionally block-diagonal (per layer, per
 * parameter, custom groups) with one λ per block. Per-block influences sum
 * to the total.
 *
 * Training data are streamed in chunks (in-memory arrays or a
 * tf.data.Dataset); scores are computed chunk by chunk as plain 2-D matMuls
 * `G_chunk [n, D] × Fᵀ [D, nTest]`. Every method has a synchronous form
 * (in-memory data) and an `…Async` form (any data, required for datasets).
 * Models emit `progress`, `stageEnd` and `warning` events and draw a
 * progress line on a terminal.
 */
import * as tf from '@tensorflow/tfjs';
import { EventEmitter } from 'eventemitter3';
import type { ExtendedModel } from '../engine/extend';
import type { ParamInfo } from '../engine/params';
import type { Selection } from '../operators/curvature';
import { extractColumns, embedColumns } from '../operators/indices';
import { ProgressLine, resolveProgress } from '../train/progress';
import { checkInteger } from '../utils/options';
import { coversAll, resolveBlocks, solveBlockwise, type InfluenceBlock } from './blocks';
import { runAsync, runSync, type Co } from './coroutine';
import { checkBatch, checkSource, countRows, eachChunk, isDataSource, withChunks, type Batch, type DataSource } from './data';
import { checkSecondDerivatives, isAllFinite, mixedInputGradients, perSampleGradients } from './gradients';
import { readFactors, savedParams, writeFactors, writeModel } from './persist';
import type {
  BlockSpec,
  InfluenceEvents,
  InfluenceMode,
  InfluenceOptions,
  InfluenceStage,
  TopKOptions,
  TopKResult,
} from './types';

/** What a fitted method applies: (M + λI)⁻¹ on stacks `[K, Dsel]`. */
export interface FittedInverse {
  /** `(M + λI)⁻¹ G` for G `[K, Dsel]` over the selection (new tensor; G is not disposed). */
  solve(G: tf.Tensor2D): Co<tf.Tensor2D>;
  dispose(): void;
}

/** Arrays of a saved fit (float32 or float64) with their shapes. */
export interface StateArray {
  readonly data: Float32Array | Float64Array;
  readonly shape: readonly number[];
}

/** A method's fitted state for `save`: JSON metadata and named arrays. */
export interface MethodState {
  readonly meta: Record<string, unknown>;
  readonly arrays: Record<string, StateArray>;
}

export interface FitContext {
  readonly where: string;
  readonly data: DataSource;
  /** Report one more block fitted. */
  blockDone(): void;
  warn(message: string): void;
}

/** Where a progress stage reports to. */
class Stage {
  private readonly t0 = Date.now();
  constructor(
    private readonly owner: InfluenceModel,
    readonly stage: InfluenceStage,
    private readonly total: number | undefined,
    private readonly unit: 'points' | 'blocks',
  ) {}
  update(done: number): void {
    this.owner.reportProgress({ stage: this.stage, done, total: this.total, unit: this.unit, elapsedMs: Date.now() - this.t0 });
  }
  end(points: number | undefined): void {
    this.owner.reportEnd({ stage: this.stage, elapsedMs: Date.now() - this.t0, points });
  }
}

export interface InfluenceModelInfo {
  /** The method's name (`direct`, `cg`, …). */
  readonly method: string;
  /** Whether λ must be > 0. */
  readonly positiveRegularization: boolean;
  /** Default blocks. */
  readonly defaultBlocks: BlockSpec;
}

export abstract class InfluenceModel<O extends InfluenceOptions = InfluenceOptions> extends EventEmitter<InfluenceEvents> {
  readonly method: string;
  readonly options: Readonly<O>;
  /** The parameters the influence uses, in flat order (the factors' columns). */
  readonly selection: Selection;
  readonly blocks: readonly InfluenceBlock[];
  readonly chunkSize: number;
  /** Training data given to `fit` (kept by reference; the caller owns its tensors). */
  protected trainData: DataSource | undefined;
  /** Training points seen by `fit` (undefined until known for datasets). */
  nTrain: number | undefined;
  protected fitted: FittedInverse | undefined;
  private readonly line: ProgressLine;
  private lineStage: InfluenceStage | undefined;

  protected constructor(
    readonly model: ExtendedModel,
    options: O,
    info: InfluenceModelInfo,
  ) {
    super();
    const where = `${info.method}Influence`;
    if (model === undefined || model === null || typeof (model as ExtendedModel).layout !== 'object') {
      throw new Error(`${where}: pass an extended model (extend(model, { loss })) as the first argument.`);
    }
    if (options === undefined || options === null) {
      throw new Error(`${where}: options are required ({ regularization, … }).`);
    }
    this.method = info.method;
    this.options = Object.freeze({ ...options });
    this.chunkSize = checkInteger(where, 'chunkSize', options.chunkSize ?? 256, 1);
    const r = resolveBlocks(model, options.blocks ?? info.defaultBlocks, options.regularization, where, info.positiveRegularization);
    this.selection = r.selection;
    this.blocks = r.blocks;
    this.line = new ProgressLine(resolveProgress(options.progress));
  }

  /** Name used in messages. */
  protected get where(): string {
    return `${this.method}Influence`;
  }

  /** Length of the factors' rows (the selected parameters). */
  get size(): number {
    return this.selection.size;
  }

  /** The selected parameters in flat order. */
  get params(): readonly ParamInfo[] {
    return this.selection.params;
  }

  get isFitted(): boolean {
    return this.fitted !== undefined;
  }

  /** @internal */
  reportProgress(e: Parameters<InfluenceEvents['progress']>[0]): void {
    this.emit('progress', e);
    if (this.line.enabled) {
      this.lineStage = e.stage;
      const of = e.total !== undefined ? `/${e.total}` : '';
      this.line.update(`${this.where} ${e.stage}: ${e.done}${of} ${e.unit} (${(e.elapsedMs / 1000).toFixed(1)} s)`);
    }
  }

  /** @internal */
  reportEnd(e: Parameters<InfluenceEvents['stageEnd']>[0]): void {
    this.emit('stageEnd', e);
    if (this.line.enabled && this.lineStage === e.stage) {
      this.line.end(`${this.where} ${e.stage}: ${e.points ?? ''}${e.points !== undefined ? ' points, ' : ''}${(e.elapsedMs / 1000).toFixed(1)} s`);
      this.lineStage = undefined;
    }
  }

  protected warn(stage: InfluenceStage, message: string): void {
    this.emit('warning', { stage, message });
  }

  // -------------------------------------------------------------------------
  // Method hooks.

  /** Build what applies (M + λI)⁻¹ from the training data. */
  protected abstract fitInverse(ctx: FitContext): Co<FittedInverse>;

  /** The fitted state to save (arrays may be empty for methods that keep only the data). */
  protected abstract exportState(): MethodState;

  /** Restore from a saved state (the inverse of `exportState`); `data`: the training data, if given to `load`. */
  protected abstract importState(state: MethodState, data: DataSource | undefined): FittedInverse;

  /** Whether `load` needs the training data to rebuild the fit (operator-based methods). */
  get needsDataToLoad(): boolean {
    return false;
  }

  /** Per-block solve helper for methods that fit each block separately. */
  protected blockwise(solveBlock: (b: InfluenceBlock, Gb: tf.Tensor2D) => Co<tf.Tensor2D>): (G: tf.Tensor2D) => Co<tf.Tensor2D> {
    return (G) => solveBlockwise(this.blocks, this.size, G, solveBlock);
  }

  // -------------------------------------------------------------------------
  // fit

  private *fitGen(data: DataSource): Co<this> {
    const where = `${this.where}.fit`;
    checkSource(this.model, data, where);
    const chunked = withChunks(data, this.chunkSize);
    // A dataset is read once upfront (no computation): an empty one fails here, and nTrain is known.
    const nTrain = countRows(data) ?? (yield* eachChunk(this.model, chunked, this.chunkSize, `${where} (training data)`, function* () {}));
    const stage = new Stage(this, 'fit', this.blocks.length, 'blocks');
    let done = 0;
    stage.update(0);
    const fitted = yield* this.fitInverse({
      where,
      data: chunked,
      blockDone: () => stage.update(++done),
      warn: (m) => this.warn('fit', m),
    });
    this.fitted?.dispose();
    this.fitted = fitted;
    this.trainData = chunked;
    this.nTrain = nTrain;
    stage.end(nTrain);
    return this;
  }

  /** Fit on in-memory training data `{ x, y, batchSize? }` or a list of batches. */
  fit(data: DataSource): this {
    return runSync(this.fitGen(data), `${this.where}.fit`, 'fitAsync');
  }

  /** Fit on any training data, including a tf.data.Dataset. */
  fitAsync(data: DataSource): Promise<this> {
    return runAsync(this.fitGen(data));
  }

  /** Use a restored fit (from `load`). @internal */
  restore(state: MethodState, trainData: DataSource | undefined, nTrain: number | undefined): void {
    if (trainData !== undefined) checkSource(this.model, trainData, `${this.where}.load`);
    const data = trainData === undefined ? undefined : withChunks(trainData, this.chunkSize);
    const fitted = this.importState(state, data);
    this.fitted?.dispose();
    this.fitted = fitted;
    this.trainData = data;
    this.nTrain = nTrain;
  }

  /** @internal the state to save. */
  stateForSave(): MethodState {
    this.requireFit('save');
    return this.exportState();
  }

  protected requireFit(what: string): FittedInverse {
    if (this.fitted === undefined) throw new Error(`${this.where}.${what}: the model is not fitted; call fit(trainData) (or fitAsync) first.`);
    return this.fitted;
  }

  // -------------------------------------------------------------------------
  // Gradients and factors

  /** Per-sample gradients of in-memory test points `[N, Dsel]`, in chunks. */
  private testGradients(x: tf.Tensor, y: tf.Tensor, what: string): tf.Tensor2D {
    checkBatch(this.model, x, y, what);
    const N = x.shape[0] as number;
    const parts: tf.Tensor2D[] = [];
    try {
      for (let s = 0; s < N; s += this.chunkSize) {
        const n = Math.min(this.chunkSize, N - s);
        parts.push(
          tf.tidy(() => perSampleGradients(this.model, this.selection, n === N ? { x, y } : { x: tf.slice(x, s, n), y: tf.slice(y, s, n) })),
        );
      }
      const G = parts.length === 1 ? (parts[0] as tf.Tensor2D) : (tf.concat(parts, 0) as tf.Tensor2D);
      if (parts.length > 1) tf.dispose(parts);
      parts.length = 0;
      if (!isAllFinite(G)) {
        G.dispose();
        throw new Error(`${what}: the gradients of the test points contain NaN/Inf; check the inputs, targets and model weights.`);
      }
      return G;
    } catch (e) {
      tf.dispose(parts);
      throw e;
    }
  }

  /** `(M + λI)⁻¹ G`, checked finite; `what` names the calling method. */
  private *solveChecked(G: tf.Tensor2D, what: string): Co<tf.Tensor2D> {
    const F = yield* this.requireFit(what).solve(G);
    if (!isAllFinite(F)) {
      F.dispose();
      throw new Error(
        `${this.where}.${what}: (M + λI)⁻¹ g is not finite (NaN/Inf): the curvature or its inverse returned non-finite values — check the model weights, the data and the regularization.`,
      );
    }
    return F;
  }

  private *factorsGen(x: tf.Tensor, y: tf.Tensor): Co<tf.Tensor2D> {
    const what = 'influenceFactors';
    this.requireFit(what);
    const G = this.testGradients(x, y, `${this.where}.${what}`);
    const stage = new Stage(this, 'factors', G.shape[0], 'points');
    try {
      stage.update(0);
      const F = yield* this.solveChecked(G, what);
      stage.update(G.shape[0]);
      stage.end(G.shape[0]);
      return F;
    } finally {
      G.dispose();
    }
  }

  /** Influence factors `(M + λI)⁻¹ g_test` `[nTest, D]` (D = `size`, the selected parameters in flat order). */
  influenceFactors(x: tf.Tensor, y: tf.Tensor): tf.Tensor2D {
    return runSync(this.factorsGen(x, y), `${this.where}.influenceFactors`, 'influenceFactorsAsync');
  }

  influenceFactorsAsync(x: tf.Tensor, y: tf.Tensor): Promise<tf.Tensor2D> {
    return runAsync(this.factorsGen(x, y));
  }

  // -------------------------------------------------------------------------
  // Scores

  /** The training data to score against: tensors x, y, a data source, or the data given to fit. */
  private trainSource(x: tf.Tensor | DataSource | undefined, y: tf.Tensor | undefined, what: string): DataSource {
    if (x === undefined) {
      if (y !== undefined) throw new Error(`${what}: targets given without inputs; pass both x and y (or neither, to use the training data).`);
      if (this.trainData === undefined) {
        throw new Error(`${what}: no training data: pass x and y (or a data source), or fit the model (or load it with { trainData }) first.`);
      }
      return this.trainData;
    }
    if (x instanceof tf.Tensor) {
      if (!(y instanceof tf.Tensor)) throw new Error(`${what}: training inputs given without targets; pass both x and y.`);
      checkBatch(this.model, x, y, `${what} (training data)`);
      return { x, y, batchSize: this.chunkSize };
    }
    if (y !== undefined) throw new Error(`${what}: pass either training tensors x and y, or one data source (and no y).`);
    if (!isDataSource(x)) throw new Error(`${what}: the training data must be tensors x, y or a data source ({ x, y }, batches, tf.data.Dataset).`);
    checkSource(this.model, x, `${what} (training data)`);
    return withChunks(x, this.chunkSize);
  }

  private checkFactors(F: tf.Tensor, what: string): asserts F is tf.Tensor2D {
    if (!(F instanceof tf.Tensor) || F.isDisposed) throw new Error(`${what}: factors must be a live tensor [nTest, ${this.size}].`);
    if (F.rank !== 2 || F.shape[1] !== this.size || (F.shape[0] as number) < 1) {
      throw new Error(
        `${what}: factors of shape [${F.shape.join(', ')}] do not fit this model; expected [nTest, ${this.size}] (influenceFactors of the same influence model).`,
      );
    }
  }

  private *scoresGen(F: tf.Tensor2D, train: DataSource, mode: InfluenceMode, byBlock: boolean, what: string): Co<tf.Tensor> {
    if (mode !== 'up' && mode !== 'perturbation') throw new Error(`${what}: mode must be 'up' or 'perturbation', got '${String(mode)}'.`);
    if (mode === 'perturbation') checkSecondDerivatives(this.model, what);
    const D = this.size;
    const blocks = byBlock ? this.blocks : [];
    const total = countRows(train);
    const stage = new Stage(this, 'influences', total, 'points');
    // Up-weighting: Fᵀ per block (explicit transposes: plain matMuls on the hot path).
    const Ft: tf.Tensor2D[] = [];
    // Perturbation per block: the factors embedded with zeros outside the block.
    const Fb: tf.Tensor2D[] = [];
    const chunks: tf.Tensor[][] = [];
    const nOut = byBlock ? blocks.length : 1;
    for (let b = 0; b < nOut; b++) chunks.push([]);
    try {
      if (mode === 'up') {
        if (!byBlock) Ft.push(tf.transpose(F));
        else for (const b of blocks) Ft.push(tf.tidy(() => tf.transpose(coversAll(b, D) ? F : extractColumns(F, b.indices))));
      } else if (byBlock) {
        for (const b of blocks) Fb.push(coversAll(b, D) ? tf.clone(F) : tf.tidy(() => embedColumns(extractColumns(F, b.indices), b.indices, D)));
      }
      stage.update(0);
      const model = this.model;
      const sel = this.selection;
      const rows = yield* eachChunk(model, train, this.chunkSize, `${what} (training data)`, function* (batch: Batch, offset: number) {
        const n = batch.x.shape[0] as number;
        if (mode === 'up') {
          const G = perSampleGradients(model, sel, batch);
          try {
            if (!byBlock) chunks[0]?.push(tf.matMul(G, Ft[0] as tf.Tensor2D));
            else
              blocks.forEach((b, i) =>
                chunks[i]?.push(tf.tidy(() => tf.matMul(coversAll(b, D) ? G : extractColumns(G, b.indices), Ft[i] as tf.Tensor2D))),
              );
          } finally {
            G.dispose();
          }
        } else if (!byBlock) chunks[0]?.push(mixedInputGradients(model, sel, batch, F));
        else Fb.forEach((f, i) => chunks[i]?.push(mixedInputGradients(model, sel, batch, f)));
        for (const c of chunks) {
          const last = c[c.length - 1] as tf.Tensor;
          if (!isAllFinite(last)) {
            throw new Error(`${what}: the influences of training points ${offset}..${offset + n - 1} are not finite (NaN/Inf); check those inputs and targets and the model weights.`);
          }
        }
        stage.update(offset + n);
      });
      const out = tf.tidy(() => {
        const per = chunks.map((c) => {
          if (mode === 'up') {
            const S = c.length === 1 ? (c[0] as tf.Tensor) : tf.concat(c, 0); // [nTrain, K]
            return tf.transpose(S); // [K, nTrain]
          }
          return c.length === 1 ? tf.clone(c[0] as tf.Tensor) : tf.concat(c, 1); // [K, nTrain, ...in]
        });
        return byBlock ? tf.stack(per) : (per[0] as tf.Tensor);
      });
      stage.end(rows);
      return out;
    } finally {
      tf.dispose([...Ft, ...Fb, ...chunks.flat()]);
    }
  }

  private *influencesGen(
    xTest: tf.Tensor,
    yTest: tf.Tensor,
    x: tf.Tensor | DataSource | undefined,
    y: tf.Tensor | undefined,
    mode: InfluenceMode,
    byBlock: boolean,
    what: string,
  ): Co<tf.Tensor> {
    const train = this.trainSource(x, y, what);
    const F = yield* this.factorsGen(xTest, yTest);
    try {
      return yield* this.scoresGen(F, train, mode, byBlock, what);
    } finally {
      F.dispose();
    }
  }

  /**
   * Influences of training points on test points: `up` `[nTest, nTrain]`
   * (g_testᵀ (M+λI)⁻¹ g_train), `perturbation` `[nTest, nTrain, ...inputShape]`
   * (the gradient of that w.r.t. the training input). Training data: tensors
   * x, y, a data source, or (omitted) the data given to `fit`.
   */
  influences(xTest: tf.Tensor, yTest: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): tf.Tensor {
    const what = `${this.where}.influences`;
    return runSync(this.influencesGen(xTest, yTest, x, y, mode, false, what), what, 'influencesAsync');
  }

  influencesAsync(xTest: tf.Tensor, yTest: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): Promise<tf.Tensor> {
    return runAsync(this.influencesGen(xTest, yTest, x, y, mode, false, `${this.where}.influencesAsync`));
  }

  /** Influences from precomputed factors (`influenceFactors`, or `loadFactors`). */
  influencesFromFactors(factors: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): tf.Tensor {
    const what = `${this.where}.influencesFromFactors`;
    this.checkFactors(factors, what);
    return runSync(this.scoresGen(factors, this.trainSource(x, y, what), mode, false, what), what, 'influencesFromFactorsAsync');
  }

  influencesFromFactorsAsync(factors: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): Promise<tf.Tensor> {
    const what = `${this.where}.influencesFromFactorsAsync`;
    this.checkFactors(factors, what);
    return runAsync(this.scoresGen(factors, this.trainSource(x, y, what), mode, false, what));
  }

  /** Per-block influences `[B, nTest, nTrain(, ...inputShape)]` (block order = `blocks`); they sum to `influences`. */
  influencesByBlock(xTest: tf.Tensor, yTest: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): tf.Tensor {
    const what = `${this.where}.influencesByBlock`;
    return runSync(this.influencesGen(xTest, yTest, x, y, mode, true, what), what, 'influencesByBlockAsync');
  }

  influencesByBlockAsync(xTest: tf.Tensor, yTest: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): Promise<tf.Tensor> {
    return runAsync(this.influencesGen(xTest, yTest, x, y, mode, true, `${this.where}.influencesByBlockAsync`));
  }

  influencesByBlockFromFactors(factors: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): tf.Tensor {
    const what = `${this.where}.influencesByBlockFromFactors`;
    this.checkFactors(factors, what);
    return runSync(this.scoresGen(factors, this.trainSource(x, y, what), mode, true, what), what, 'influencesByBlockFromFactorsAsync');
  }

  influencesByBlockFromFactorsAsync(factors: tf.Tensor, x?: tf.Tensor | DataSource, y?: tf.Tensor, mode: InfluenceMode = 'up'): Promise<tf.Tensor> {
    const what = `${this.where}.influencesByBlockFromFactorsAsync`;
    this.checkFactors(factors, what);
    return runAsync(this.scoresGen(factors, this.trainSource(x, y, what), mode, true, what));
  }

  // -------------------------------------------------------------------------
  // Self-influence and top-k

  /**
   * One pass over training chunks: scores against test factors (for top-k)
   * and/or self-influences g_jᵀ (M+λI)⁻¹ g_j (one solve per chunk).
   */
  private *rankGen(
    Ft: tf.Tensor2D | undefined,
    train: DataSource,
    self: boolean,
    stageName: InfluenceStage,
    what: string,
    onScores: (S: Float32Array, n: number, offset: number) => void,
  ): Co<{ rows: number; selfInfluence: Float32Array | undefined }> {
    const selfParts: Float32Array[] = [];
    const stage = new Stage(this, stageName, countRows(train), 'points');
    stage.update(0);
    const solve = (G: tf.Tensor2D) => this.solveChecked(G, stageName);
    const model = this.model;
    const sel = this.selection;
    const rows = yield* eachChunk(model, train, this.chunkSize, `${what} (training data)`, function* (batch: Batch, offset: number) {
      const n = batch.x.shape[0] as number;
      const G = perSampleGradients(model, sel, batch);
      try {
        if (!isAllFinite(G)) throw new Error(`${what}: the gradients of training points ${offset}..${offset + n - 1} are not finite (NaN/Inf); check those inputs and targets.`);
        if (Ft !== undefined) {
          const S = tf.matMul(G, Ft); // [n, K]
          const s = S.dataSync() as Float32Array;
          S.dispose();
          onScores(s, n, offset);
        }
        if (self) {
          const Fc = yield* solve(G);
          const d = tf.tidy(() => tf.sum(tf.mul(G, Fc), 1));
          Fc.dispose();
          selfParts.push(Float32Array.from(d.dataSync()));
          d.dispose();
        }
      } finally {
        G.dispose();
      }
      stage.update(offset + n);
    });
    stage.end(rows);
    let selfInfluence: Float32Array | undefined;
    if (self) {
      selfInfluence = new Float32Array(rows);
      let o = 0;
      for (const p of selfParts) {
        selfInfluence.set(p, o);
        o += p.length;
      }
    }
    return { rows, selfInfluence };
  }

  private *selfGen(x: tf.Tensor | DataSource | undefined, y: tf.Tensor | undefined, what: string): Co<tf.Tensor1D> {
    this.requireFit('selfInfluence');
    const train = this.trainSource(x, y, what);
    const r = yield* this.rankGen(undefined, train, true, 'selfInfluence', what, () => undefined);
    return tf.tensor1d(r.selfInfluence as Float32Array);
  }

  /** Self-influence g_jᵀ (M+λI)⁻¹ g_j of every training point `[nTrain]` (default: the data given to fit). */
  selfInfluence(x?: tf.Tensor | DataSource, y?: tf.Tensor): tf.Tensor1D {
    const what = `${this.where}.selfInfluence`;
    return runSync(this.selfGen(x, y, what), what, 'selfInfluenceAsync');
  }

  selfInfluenceAsync(x?: tf.Tensor | DataSource, y?: tf.Tensor): Promise<tf.Tensor1D> {
    return runAsync(this.selfGen(x, y, `${this.where}.selfInfluenceAsync`));
  }

  private *topKGen(test: Batch, train: DataSource | undefined, k: number, options: TopKOptions, what: string): Co<TopKResult> {
    if (!Number.isInteger(k) || k < 1) throw new Error(`${what}: k must be an integer ≥ 1, got ${String(k)}.`);
    if (test === undefined || test === null) throw new Error(`${what}: pass the test points as { x, y }.`);
    const source = this.trainSource(train, undefined, what);
    const F = yield* this.factorsGen(test.x, test.y);
    const K = F.shape[0];
    const Ft = tf.transpose(F);
    F.dispose();
    // Per test point: candidates (index, value) kept sorted, at most k each side.
    const most: { i: number; v: number }[][] = Array.from({ length: K }, () => []);
    const least: { i: number; v: number }[][] = Array.from({ length: K }, () => []);
    const merge = (list: { i: number; v: number }[], add: { i: number; v: number }[], desc: boolean) => {
      const all = list.concat(add);
      all.sort((a, b) => (desc ? b.v - a.v : a.v - b.v) || a.i - b.i);
      return all.slice(0, k);
    };
    try {
      const r = yield* this.rankGen(Ft, source, options.selfInfluence ?? true, 'topK', what, (S, n, offset) => {
        for (let t = 0; t < K; t++) {
          const col: { i: number; v: number }[] = [];
          for (let j = 0; j < n; j++) col.push({ i: offset + j, v: S[j * K + t] as number });
          most[t] = merge(most[t] as { i: number; v: number }[], col, true);
          least[t] = merge(least[t] as { i: number; v: number }[], col, false);
        }
      });
      const entries = (lists: { i: number; v: number }[][]) => ({
        indices: lists.map((l) => l.map((e) => e.i)),
        influences: lists.map((l) => l.map((e) => e.v)),
      });
      return {
        k: Math.min(k, r.rows),
        nTrain: r.rows,
        most: entries(most),
        least: entries(least),
        ...(r.selfInfluence !== undefined ? { selfInfluence: r.selfInfluence } : {}),
      };
    } finally {
      Ft.dispose();
    }
  }

  /**
   * The k most and least influential training points of every test point
   * (`test = { x, y }`), and (unless `selfInfluence: false`) every training
   * point's self-influence, in one streamed pass over the training data
   * (`train`: a data source, or undefined for the data given to `fit`).
   */
  topK(test: Batch, train: DataSource | undefined, k: number, options: TopKOptions = {}): TopKResult {
    const what = `${this.where}.topK`;
    return runSync(this.topKGen(test, train, k, options, what), what, 'topKAsync');
  }

  topKAsync(test: Batch, train: DataSource | undefined, k: number, options: TopKOptions = {}): Promise<TopKResult> {
    return runAsync(this.topKGen(test, train, k, options, `${this.where}.topKAsync`));
  }

  // -------------------------------------------------------------------------
  // Persistence

  /** Options as JSON (custom blocks by parameter short names; no progress stream). */
  private serializableOptions(): Record<string, unknown> {
    const { progress: _p, blocks, ...rest } = this.options as InfluenceOptions & Record<string, unknown>;
    void _p;
    const out: Record<string, unknown> = { ...rest };
    if (blocks !== undefined) out.blocks = Array.isArray(blocks) ? this.blocks.map((b) => ({ params: b.params.map((p) => p.shortName) })) : blocks;
    return JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
  }

  /**
   * Save the fitted model to a directory (JSON + binary arrays): the fitted
   * state (explicit eigendecompositions, low-rank bases, EKFAC factors,
   * preconditioners) and the options. Load with `loadInfluenceModel(dir,
   * model, { trainData })` (methods that multiply with the curvature of the
   * data — CG, LiSSA, inverse harmonic mean — need the training data again).
   */
  async save(dir: string): Promise<void> {
    const state = this.stateForSave();
    await writeModel(
      dir,
      {
        method: this.method,
        options: this.serializableOptions(),
        params: savedParams(this.params),
        blocks: this.blocks.map((b) => ({ name: b.name, params: b.params.map((p) => p.shortName), regularization: b.regularization })),
        nTrain: this.nTrain ?? null,
      },
      state,
    );
  }

  /** Save influence factors `[nTest, D]` (from `influenceFactors`) to a directory. */
  async saveFactors(dir: string, factors: tf.Tensor): Promise<void> {
    this.checkFactors(factors, `${this.where}.saveFactors`);
    await writeFactors(dir, this.method, this.params, factors);
  }

  /** Load factors saved by `saveFactors` (checks that they belong to this model's parameters). */
  loadFactors(dir: string): Promise<tf.Tensor2D> {
    return readFactors(dir, this.params);
  }

  /** Free the fitted state. Idempotent; the model can be fitted again. */
  dispose(): void {
    this.fitted?.dispose();
    this.fitted = undefined;
  }
}
