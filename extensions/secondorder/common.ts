/**
 * Shared by the second-order extensions (part A): options, validation of
 * the model and of the options, the common frame of the extensions that
 * read one backpropagated stack per parameter (StackExtension and its
 * exact / Monte-Carlo GGN square-root kinds), and the memory guard for
 * stacks that grow with `V · n · paramSize`.
 */
import * as tf from '@tensorflow/tfjs';
import type { Extension, ModelInfo, ModuleInfo, ParamContext } from '../../src/engine/extension';
import { SqrtGgnExactQuantity, SqrtGgnMcQuantity, type Quantity } from '../../src/engine/quantity';
import { isLinearModule } from '../../src/derivatives/types';
import { checkInteger } from '../../src/utils/options';
import type { LossDerivatives } from '../../src/derivatives/losses/types';

export interface SecondOrderOptions {
  /** Indices into the batch: compute only for these samples (in this order). */
  subsampling?: readonly number[];
  /** Result name (default: the class name); needed to run two instances at once. */
  name?: string;
}

export interface MonteCarloOptions extends SecondOrderOptions {
  /** Number M of Monte-Carlo samples of the loss Hessian's square root (integer ≥ 1, default 1). */
  mcSamples?: number;
  /**
   * Seed of the sampling. Extensions with equal `mcSamples`, `seed` and
   * `subsampling` share one backpropagated quantity (the same samples).
   * Without it, the step's seed (`backward(…, { seed })`) is used.
   */
  seed?: number;
}

/** Copy the subsampling option (a user's array is never kept or mutated). */
export function copySubsampling(extension: string, options: SecondOrderOptions | undefined): readonly number[] | undefined {
  const s = options?.subsampling;
  if (s === undefined) return undefined;
  if (!Array.isArray(s)) {
    throw new Error(`${extension}: option 'subsampling' must be an array of batch indices, got ${typeof s}.`);
  }
  if (s.length === 0) throw new Error(`${extension}: option 'subsampling' is empty; pass at least one index.`);
  for (const i of s) {
    if (!Number.isInteger(i) || i < 0) {
      throw new Error(`${extension}: option 'subsampling' has entry ${String(i)}; indices must be integers ≥ 0.`);
    }
  }
  return Object.freeze([...s]);
}

/** Validate `mcSamples` (integer ≥ 1) and `seed` (finite number, if given). */
export function checkMonteCarlo(extension: string, options: MonteCarloOptions): { mcSamples: number; seed: number | undefined } {
  const mcSamples = checkInteger(extension, 'mcSamples', options.mcSamples ?? 1, 1);
  const seed = options.seed;
  if (seed !== undefined && (typeof seed !== 'number' || !Number.isFinite(seed))) {
    throw new Error(`${extension}: option 'seed' must be a finite number, got ${String(seed)}.`);
  }
  return { mcSamples, seed };
}

function layerOf(m: ModuleInfo): string {
  return `layer '${m.layerName}' (${m.derivatives.kind})`;
}

/** The modules a backpropagated stack passes through: every module after the first one with parameters. */
function backpropModules(model: ModelInfo): readonly ModuleInfo[] {
  const modules = model.modules ?? [];
  const first = model.params.reduce((m, p) => Math.min(m, p.moduleIndex), Infinity);
  return modules.filter((_m, i) => i > first);
}

/**
 * Checks shared by every extension that backpropagates a stack: the loss
 * provides the factor it needs, and every module the stack passes through
 * can backpropagate a stack (`jacTMatProd`).
 */
export function validateBackprop(
  extension: string,
  model: ModelInfo,
  lossMethod: 'sqrtHessian' | 'sqrtHessianSampled' | undefined,
): void {
  if (lossMethod !== undefined) {
    const loss = model.loss as Partial<LossDerivatives>;
    if (typeof loss[lossMethod] !== 'function') {
      throw new Error(
        `${extension}: the loss '${String(loss.name)}' has no ${lossMethod}(); ${extension} needs the ${
          lossMethod === 'sqrtHessian' ? 'exact' : 'Monte-Carlo sampled'
        } square root of the loss Hessian (use mse, softmaxCrossEntropy or sigmoidCrossEntropy, or implement it).`,
      );
    }
  }
  for (const m of backpropModules(model)) {
    if (typeof m.derivatives.jacTMatProd !== 'function') {
      throw new Error(`${extension}: ${layerOf(m)} cannot backpropagate a stack of matrices (no jacTMatProd).`);
    }
  }
}

/**
 * The frame of the extensions that read one backpropagated stack quantity
 * per parameter, for the samples `subsampling`: the name, the copied
 * subsampling, the quantity built for it, and the model checks (the loss
 * provides `lossMethod`, every module can backpropagate a stack).
 */
export abstract class StackExtension<Q extends Quantity<tf.TensorContainer>> implements Extension<tf.Tensor> {
  readonly subsampling: readonly number[] | undefined;
  readonly quantity: Q;
  readonly quantities: readonly Q[];

  protected constructor(
    readonly name: string,
    options: SecondOrderOptions,
    quantity: (subsampling: readonly number[] | undefined) => Q,
    private readonly lossMethod: 'sqrtHessian' | 'sqrtHessianSampled' | undefined,
  ) {
    this.subsampling = copySubsampling(name, options);
    this.quantity = quantity(this.subsampling);
    this.quantities = [this.quantity];
  }

  validate(model: ModelInfo): void {
    validateBackprop(this.name, model, this.lossMethod);
  }

  abstract computeParam(ctx: ParamContext): tf.Tensor;
}

/** A StackExtension on the exact GGN square root `[C, n, ...]` (shared by every such extension with the same subsampling). */
export abstract class SqrtGgnExactExtension extends StackExtension<SqrtGgnExactQuantity> {
  protected constructor(defaultName: string, options: SecondOrderOptions) {
    super(options.name ?? defaultName, options, (s) => new SqrtGgnExactQuantity(s), 'sqrtHessian');
  }
}

/** A StackExtension on the Monte-Carlo GGN square root `[M, n, ...]` (options `mcSamples`, `seed`). */
export abstract class SqrtGgnMcExtension extends StackExtension<SqrtGgnMcQuantity> {
  readonly mcSamples: number;
  readonly seed: number | undefined;

  protected constructor(defaultName: string, options: MonteCarloOptions) {
    const name = options.name ?? defaultName;
    const { mcSamples, seed } = checkMonteCarlo(name, options);
    super(name, options, (s) => new SqrtGgnMcQuantity(mcSamples, seed, s), 'sqrtHessianSampled');
    this.mcSamples = mcSamples;
    this.seed = seed;
  }
}

/**
 * Module kinds (the part before `(`) that are linear or piecewise linear in
 * their input although they are not elementwise: zero second derivative
 * almost everywhere, so DiagHessian adds no residual term for them.
 */
const PIECEWISE_LINEAR_KINDS: ReadonlySet<string> = new Set([
  'Dense',
  'Conv2D',
  'Flatten',
  'Reshape',
  'ZeroPadding2D',
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'GlobalMaxPooling2D',
  'Dropout',
]);

/**
 * DiagHessian needs the second-derivative residual of every module the
 * stacks pass through: modules linear in their input, elementwise modules
 * (which provide `residualDiag` unless they are piecewise linear, per the
 * derivative interface), and the known piecewise-linear kinds are fine;
 * anything else (a non-elementwise nonlinear module) is refused.
 */
export function validateResiduals(extension: string, model: ModelInfo): void {
  for (const m of backpropModules(model)) {
    const d = m.derivatives;
    if (typeof d.residualDiag === 'function' || isLinearModule(d) || d.elementwise === true) continue;
    const base = d.kind.split('(')[0] as string;
    if (PIECEWISE_LINEAR_KINDS.has(base)) continue;
    throw new Error(
      `${extension}: ${layerOf(m)} is not elementwise and provides no second-derivative residual (residualDiag), so its Hessian contribution is unknown; ${extension} supports layers that are linear or piecewise linear in their input and elementwise activations. Use DiagGGNExact (which ignores residual terms) for this model.`,
    );
  }
}

/** Bytes the wasm heap can address (wasm32: 4 GiB). */
const WASM_HEAP_LIMIT = 4 * 1024 ** 3;
/** Headroom kept free on wasm for the step's other tensors and allocator slack. */
const WASM_HEADROOM = 256 * 1024 ** 2;
/** Largest tensor size (in entries) the JS backends can address. */
const MAX_ENTRIES = 2 ** 31 - 1;

function formatBytes(b: number): string {
  if (b >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(2)} GiB`;
  return `${(b / 1024 ** 2).toFixed(1)} MiB`;
}

interface WasmHeap {
  _malloc(bytes: number): number;
  _free(ptr: number): void;
}

/** The wasm module of the active backend, when it exposes its allocator. */
function wasmHeap(): WasmHeap | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const w = (tf.backend() as unknown as { wasm?: Partial<WasmHeap> }).wasm;
  return w && typeof w._malloc === 'function' && typeof w._free === 'function' ? (w as WasmHeap) : undefined;
}

/**
 * Throw a clear error before allocating float32 buffers that cannot fit: on
 * wasm an allocation beyond the 4 GiB heap is not reported by TF.js (the
 * failed malloc leads to out-of-bounds writes, and the module aborts for
 * good). `peakEntries` is the number of float32 entries alive at the peak
 * of the computation, `blockEntries` the largest single buffer among them;
 * on wasm that block is also probed with the allocator itself (malloc and
 * free), which accounts for fragmentation.
 */
export function ensureFits(extension: string, what: string, peakEntries: number, hint: string, blockEntries = peakEntries): void {
  const bytes = peakEntries * 4;
  let limit = MAX_ENTRIES * 4;
  let where = `the ${tf.getBackend()} backend's largest tensor`;
  const heap = wasmHeap();
  if (tf.getBackend() === 'wasm') {
    const used = tf.memory().numBytes;
    const free = WASM_HEAP_LIMIT - used - WASM_HEADROOM;
    if (free < limit) {
      limit = free;
      where = `the free wasm heap (4 GiB in all, ${formatBytes(used)} in use)`;
    }
  }
  let fits = bytes <= limit;
  if (fits && heap !== undefined && blockEntries * 4 >= WASM_HEADROOM) {
    const ptr = heap._malloc(blockEntries * 4);
    if (ptr === 0) {
      fits = false;
      where = `the largest block the wasm heap can still allocate (${formatBytes(tf.memory().numBytes)} in use, 4 GiB in all)`;
    } else heap._free(ptr);
  }
  if (!fits) {
    throw new Error(
      `${extension}: ${what} needs ${formatBytes(bytes)} (${peakEntries} float32 entries), more than ${where}${
        bytes <= limit ? '' : ` (${formatBytes(Math.max(0, limit))})`
      }. ${hint}`,
    );
  }
}

export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Peak float32 entries of `ctx.perSample(stack)` for one parameter: the
 * result `[V, n, ...paramShape]`, times 3 for kernels with several patches
 * per sample (per-sample products, their stack and the final transpose).
 */
export function perSamplePeak(ctx: ParamContext, V: number, samples: readonly number[] | undefined): number {
  const n = samples?.length ?? ctx.batchSize;
  const result = V * n * ctx.param.size;
  if (ctx.param.role === 'bias') return result;
  const T = ctx.unfoldedInput(samples).shape[1];
  return T === 1 ? result : 3 * result;
}

/**
 * `ctx.perSample(stack)` → `[V, n, ...paramShape]` after checking that it
 * fits in memory; `alternative` completes the hint of the error.
 */
export function perSampleFactor(
  extension: string,
  ctx: ParamContext,
  stack: tf.Tensor,
  samples: readonly number[] | undefined,
  alternative: string,
  extraCopies = 0,
): tf.Tensor {
  const V = stack.shape[0] as number;
  const n = samples?.length ?? ctx.batchSize;
  const result = V * n * ctx.param.size;
  const peak = perSamplePeak(ctx, V, samples) + extraCopies * result;
  ensureFits(
    extension,
    `parameter '${ctx.param.name}' (shape [${ctx.param.shape.join(', ')}]) with V = ${V} and n = ${n} samples`,
    peak,
    `Pass fewer samples (option 'subsampling')${alternative ? ` ${alternative}` : ''}.`,
    result,
  );
  return ctx.perSample(stack, samples);
}
