/**
 * CurvatureMonitor: per-step curvature statistics while training, as a
 * listener of the Trainer (`stepEnd`) or the TrainingPlugin (`step`).
 *
 * Per recorded step (one JSON object, optionally one line of a JSONL file):
 * - `loss`;
 * - per GGN block (the whole net, each layer, or each parameter): the top-k
 *   eigenvalues (largest first), the block's trace (the sum of all its
 *   nonzero eigenvalues = trace of the block) and rank (number of
 *   eigenvalues above 1e-6·max, the float32 noise floor), from the ViViT
 *   hooks (Eigvalsh; DirectionalDerivatives when `snr` is on);
 * - with `snr`: along each top eigenvector e_k the gradient projection
 *   `⟨e_k, g⟩ = mean_n γ_nk` and the signal-to-noise ratio
 *   `SNR_k = mean_n(γ_nk)² / var_n(γ_nk)` (sample variance, n − 1) of
 *   ViViT's per-sample directional derivatives γ_nk = N ⟨e_k, g_n⟩ — large
 *   SNR: the samples agree on the slope along e_k;
 * - with `diagonal`: per parameter the sum (its trace), mean, max and min of
 *   the GGN diagonal (DiagGGNMC/DiagGGNExact), and their total.
 *
 * The curvature is the Monte-Carlo GGN with `mcSamples` (default 1, cheap)
 * or the exact one (`mcSamples: 0`); eigenvalues optionally from the
 * curvature samples `subsampling` (rescaled by N/n, ViViT's convention).
 * Give `monitor.hooks` / `monitor.extensions` to the Trainer or plugin (with
 * `every` to record every few steps) and attach the monitor:
 *
 * ```ts
 * const monitor = new CurvatureMonitor(ext, { topK: 5, jsonl: 'out/monitor.jsonl' });
 * const trainer = new Trainer(ext, { optimizer, hooks: monitor.hooks, extensions: monitor.extensions, every: 10 });
 * monitor.attach(trainer);
 * ```
 */
import * as tf from '@tensorflow/tfjs';
import type { ExtendedModel } from '../../engine/extend';
import type { Extension } from '../../engine/extension';
import type { GroupHook } from '../../engine/hook';
import type { BackwardResult } from '../../engine/results';
import { DiagGGNExact, DiagGGNMC } from '../../../extensions/secondorder/diagGgn';
import { Eigvalsh, type EigvalshResult } from '../../../hooks/eigvalsh';
import { DirectionalDerivatives, type DirectionalDerivativesResult } from '../../../hooks/directionalDerivatives';
import { groupsFull, groupsPerLayer, groupsPerParam, topK, type Criterion, type VivitGroup } from '../../../hooks/groups';
import type { StepEvent } from '../events';
import { Trainer } from '../trainer';
import { TrainingPlugin } from '../plugin';
import { checkExtendedModel, checkOptionNames, checkPositiveInt } from '../optimizers/common';
import { JsonlWriter, type JsonlSink } from './jsonl';

export type MonitorBlocks = 'full' | 'perLayer' | 'perParam';

export interface CurvatureMonitorOptions {
  /** Which GGN blocks to decompose (default ['full', 'perLayer']). */
  blocks?: readonly MonitorBlocks[];
  /** Top eigenvalues recorded per block (default 5). */
  topK?: number;
  /** Monte-Carlo samples of the GGN square root (default 1); 0 = exact GGN. */
  mcSamples?: number;
  /** Curvature samples (batch indices) for the eigenvalues (default: the whole batch). */
  subsampling?: readonly number[];
  /** Gradient SNR and projections along the top eigenvectors (default true; costs the eigenvectors in Gram space). */
  snr?: boolean;
  /** GGN-diagonal summaries per parameter (default true; DiagGGNMC with `mcSamples`, DiagGGNExact for 0). */
  diagonal?: boolean;
  /** Write every record as one JSON line: a file path (Node; truncated first) or a sink (line) => void. */
  jsonl?: string | JsonlSink;
  /** Append to the JSONL file instead of truncating it (default false). */
  append?: boolean;
  /** Extra fields of every record (e.g. { model: 'mlp' }). */
  context?: Readonly<Record<string, unknown>>;
  /** Keep the records in `monitor.records` (default true). */
  keep?: boolean;
  /** Prefix of the hook / extension names (default 'Monitor'). */
  name?: string;
}

export interface MonitorBlock {
  /** 'full', 'layer' or 'param'. */
  readonly kind: 'full' | 'layer' | 'param';
  /** 'full', the layer name, or the variable name. */
  readonly name: string;
  /** Variable names of the block's parameters. */
  readonly params: readonly string[];
  /** The k largest eigenvalues, largest first (fewer if the block has fewer nonzero ones). */
  readonly topEvals: number[];
  /** Sum of the block's nonzero eigenvalues (= its trace). */
  readonly trace: number;
  /** Number of nonzero eigenvalues (|λ| > 1e-6·max: below, float32 Gram noise). */
  readonly rank: number;
  /** ⟨e_k, g⟩ along the top eigenvectors (order of topEvals; `snr` only). */
  readonly gradProjection?: number[];
  /** mean² / variance of γ_nk along the top eigenvectors (order of topEvals; `snr` only; null if n < 2). */
  readonly snr?: number[];
}

export interface DiagonalSummary {
  /** Σ of the diagonal entries (the parameter's GGN trace). */
  readonly trace: number;
  readonly mean: number;
  readonly max: number;
  readonly min: number;
  readonly size: number;
}

export interface MonitorRecord {
  readonly step: number;
  readonly epoch: number;
  readonly batch: number;
  readonly batchSize: number;
  readonly loss: number;
  readonly blocks: MonitorBlock[];
  /** Diagonal summaries per parameter and their total trace (`diagonal` only). */
  readonly diagonal?: { readonly trace: number; readonly params: Record<string, DiagonalSummary> };
  readonly [context: string]: unknown;
}

/** What `record` needs of a step event. */
export type MonitorStep = Pick<StepEvent, 'step' | 'epoch' | 'batch' | 'batchSize' | 'loss' | 'result'> & { readonly computed?: boolean };

const KNOWN = ['blocks', 'topK', 'mcSamples', 'subsampling', 'snr', 'diagonal', 'jsonl', 'append', 'context', 'keep', 'name'];

interface BlockPlan {
  readonly hook: Eigvalsh | DirectionalDerivatives;
  readonly kind: MonitorBlock['kind'];
  readonly names: string[];
  readonly params: string[][];
}

/** Eigenvalues below this fraction of the largest are float32 noise of the Gram matrix (~1e-7·max): not counted. */
const RANK_CUTOFF = 1e-6;

/** The k largest positive eigenvalues (ascending, as topK). */
function topPositive(k: number): Criterion {
  const top = topK(k);
  return (evals) => top(evals).filter((i) => (evals[i] as number) > 0);
}

export class CurvatureMonitor {
  readonly ext: ExtendedModel;
  /** Hooks to compute on the recorded steps (pass to the Trainer / plugin). */
  readonly hooks: readonly GroupHook[];
  /** Extensions to compute on the recorded steps (pass to the Trainer / plugin). */
  readonly extensions: readonly Extension<tf.TensorContainer>[];
  readonly topK: number;
  readonly snr: boolean;
  /** The records so far (with `keep`, default). */
  readonly records: MonitorRecord[] = [];
  private readonly plans: BlockPlan[];
  private readonly diag: DiagGGNMC | DiagGGNExact | undefined;
  private readonly writer: JsonlWriter | undefined;
  private readonly context: Readonly<Record<string, unknown>>;
  private readonly keep: boolean;

  constructor(ext: ExtendedModel, options: CurvatureMonitorOptions = {}) {
    const owner = 'CurvatureMonitor';
    checkExtendedModel(owner, ext);
    if (options === null || typeof options !== 'object') throw new Error(`${owner}: options must be an object.`);
    checkOptionNames(owner, options, KNOWN);
    this.ext = ext;
    const k = checkPositiveInt(owner, 'topK', options.topK, 5);
    this.topK = k;
    const mc = options.mcSamples ?? 1;
    if (!Number.isInteger(mc) || mc < 0) throw new Error(`${owner}: option 'mcSamples' must be 0 (exact GGN) or an integer ≥ 1, got ${String(options.mcSamples)}.`);
    this.snr = options.snr ?? true;
    const blocks = options.blocks ?? ['full', 'perLayer'];
    if (!Array.isArray(blocks) || blocks.length === 0) throw new Error(`${owner}: option 'blocks' must list at least one of 'full', 'perLayer', 'perParam'.`);
    const prefix = options.name ?? 'Monitor';
    const criterion = topPositive(k);
    this.plans = [...new Set(blocks)].map((b) => {
      let groups: VivitGroup[];
      let kind: MonitorBlock['kind'];
      let names: string[];
      if (b === 'full') {
        groups = groupsFull(ext, { criterion });
        kind = 'full';
        names = ['full'];
      } else if (b === 'perLayer') {
        groups = groupsPerLayer(ext, { criterion });
        kind = 'layer';
        names = groups.map((g) => ext.params.find((p) => p.name === g.params[0])?.layerName ?? '?');
      } else if (b === 'perParam') {
        groups = groupsPerParam(ext, { criterion });
        kind = 'param';
        names = groups.map((g) => String(g.params[0]));
      } else {
        throw new Error(`${owner}: option 'blocks' has '${String(b)}'; use 'full', 'perLayer' or 'perParam'.`);
      }
      const name = `${prefix}:${b}`;
      const sub = options.subsampling ? { subsampling: options.subsampling } : {};
      const hook = this.snr
        ? new DirectionalDerivatives({
            name,
            groups,
            mcSamplesGgn: mc,
            warnSmallEigvals: 0,
            relativeCutoff: RANK_CUTOFF,
            ...(options.subsampling ? { subsamplingGgn: options.subsampling } : {}),
          })
        : new Eigvalsh({ name, groups, mcSamples: mc, relativeCutoff: RANK_CUTOFF, ...sub });
      return { hook, kind, names, params: groups.map((g) => g.params.map(String)) };
    });
    this.hooks = this.plans.map((p) => p.hook);
    const wantDiag = options.diagonal ?? true;
    this.diag = wantDiag ? (mc === 0 ? new DiagGGNExact({ name: `${prefix}:DiagGGNExact` }) : new DiagGGNMC({ name: `${prefix}:DiagGGNMC`, mcSamples: mc })) : undefined;
    this.extensions = this.diag ? [this.diag] : [];
    for (const p of this.plans) ext.resolveGroups(p.hook.name, p.hook.groups);
    this.context = { ...(options.context ?? {}) };
    for (const key of Object.keys(this.context)) {
      if (['step', 'epoch', 'batch', 'batchSize', 'loss', 'blocks', 'diagonal'].includes(key)) {
        throw new Error(`${owner}: option 'context' may not use the record field '${key}'; rename it.`);
      }
    }
    this.keep = options.keep ?? true;
    this.writer = options.jsonl === undefined ? undefined : new JsonlWriter(options.jsonl, { append: options.append ?? false });
  }

  /** The listener: records steps whose results hold the monitor's hooks (`computed` steps). */
  readonly onStep = (event: MonitorStep): void => {
    this.record(event);
  };

  /** Subscribe to a Trainer's `stepEnd` or a plugin's `step` events; returns the unsubscribe function. */
  attach(source: Trainer | TrainingPlugin): () => void {
    if (source instanceof Trainer) {
      this.checkRequested(source.hooks, source.extensions, 'Trainer');
      source.on('stepEnd', this.onStep);
      return () => void source.off('stepEnd', this.onStep);
    }
    if (source instanceof TrainingPlugin) {
      this.checkRequested(source.hooks, source.extensions, 'TrainingPlugin');
      source.on('step', this.onStep);
      return () => void source.off('step', this.onStep);
    }
    throw new Error('CurvatureMonitor.attach: pass a Trainer or a TrainingPlugin (or use monitor.onStep as a listener).');
  }

  private checkRequested(hooks: readonly GroupHook[], extensions: readonly Extension<tf.TensorContainer>[], who: string): void {
    const missing = [...this.hooks.filter((h) => !hooks.includes(h)), ...this.extensions.filter((e) => !extensions.includes(e))];
    if (missing.length > 0) {
      throw new Error(
        `CurvatureMonitor.attach: the ${who} does not compute ${missing.map((m) => `'${m.name}'`).join(', ')}; create it with { hooks: [...monitor.hooks, ...], extensions: [...monitor.extensions, ...] }.`,
      );
    }
  }

  /** Record one step (skipped, returning undefined, when `computed` is false). */
  record(event: MonitorStep): MonitorRecord | undefined {
    if (event.computed === false) return undefined;
    const result = event.result;
    const blocks: MonitorBlock[] = [];
    for (const plan of this.plans) {
      let groups: (EigvalshResult | DirectionalDerivativesResult)[];
      try {
        groups = result.groups(plan.hook) as (EigvalshResult | DirectionalDerivativesResult)[];
      } catch {
        throw new Error(
          `CurvatureMonitor: step ${event.step} has no results of '${plan.hook.name}'; give monitor.hooks and monitor.extensions to the Trainer / plugin (they are computed on the steps the monitor records).`,
        );
      }
      groups.forEach((g, i) => blocks.push(this.block(plan, i, g)));
    }
    const rec: MonitorRecord = {
      ...this.context,
      step: event.step,
      epoch: event.epoch,
      batch: event.batch,
      batchSize: event.batchSize,
      loss: event.loss,
      blocks,
      ...(this.diag ? { diagonal: this.diagonal(result) } : {}),
    };
    if (this.keep) this.records.push(rec);
    this.writer?.write(rec);
    return rec;
  }

  private block(plan: BlockPlan, i: number, g: EigvalshResult | DirectionalDerivativesResult): MonitorBlock {
    const evals = g.evals;
    let trace = 0;
    for (const v of evals) trace += v;
    const top = evals.slice(-this.topK).reverse();
    const base = { kind: plan.kind, name: plan.names[i] as string, params: plan.params[i] as string[], topEvals: top, trace, rank: evals.length };
    if (!('gammas' in g)) return base;
    // γ [n, K] for the selected (ascending) directions: statistics per column, reversed to largest first.
    const [n, K] = g.gammas.shape;
    const data = g.gammas.dataSync();
    const proj: number[] = [];
    const snr: number[] = [];
    for (let k = K - 1; k >= 0; k--) {
      let mean = 0;
      for (let r = 0; r < n; r++) mean += data[r * K + k] as number;
      mean /= n;
      let v = 0;
      for (let r = 0; r < n; r++) v += ((data[r * K + k] as number) - mean) ** 2;
      const variance = n > 1 ? v / (n - 1) : Number.NaN;
      proj.push(mean);
      snr.push((mean * mean) / variance);
    }
    return { ...base, topEvals: g.selected.map((j) => evals[j] as number).reverse(), gradProjection: proj, snr };
  }

  private diagonal(result: BackwardResult): { trace: number; params: Record<string, DiagonalSummary> } {
    const params: Record<string, DiagonalSummary> = {};
    let total = 0;
    const diag = this.diag as DiagGGNMC | DiagGGNExact;
    for (const p of this.ext.params) {
      const d = result.get(diag, p).dataSync();
      let sum = 0;
      let max = -Infinity;
      let min = Infinity;
      for (const v of d) {
        sum += v;
        if (v > max) max = v;
        if (v < min) min = v;
      }
      params[p.name] = { trace: sum, mean: sum / d.length, max, min, size: d.length };
      total += sum;
    }
    return { trace: total, params };
  }
}
