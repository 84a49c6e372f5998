/**
 * Kronecker factors shared by KFAC, KFLR, KFRA and EKFAC, and the algebra to
 * use them.
 *
 * Kernel of a module linear in its weights (Dense, Conv2D), unfolded input
 * `X [N, T, I]` (T positions, I = kernel rows: Dense `in`, Conv2D
 * `kh·kw·inC`), O = output features. With the kernel flattened row-major in
 * its TF.js layout (`[I, O]`), its GGN block is approximated by `kron(A, G)`:
 *
 *   A = (1/N) Σ_n Σ_t x_nt x_ntᵀ              `[I, I]` (input side)
 *   G = Σ_v Σ_n b_vn b_vnᵀ, b_vn = Σ_t s_vnt `[O, O]` (output side)
 *
 * where `s [V, N, T, O]` is a backpropagated square-root stack at the module
 * output (exact: KFLR, sampled: KFAC), summed over positions (BackPACK's
 * convention for Conv2D). The bias gets `{ G }` (for KFLR, G is exactly the
 * bias's GGN block). A and G are memoised per module (`ctx.memo`) so that
 * kernel and bias, and several extensions of one step, share them.
 *
 * Row-major vec: `kron(A, G) vec(V) = vec(A V Gᵀ) = vec(A V G)` for `V [I, O]`.
 */
import * as tf from '@tensorflow/tfjs';
import type { ParamContext } from '../../src/engine/extension';
import type { LinearModuleDerivatives } from '../../src/derivatives/types';
import { gram, sumPositions } from '../../src/derivatives/weightProducts';
import { eigh } from '../../src/linalg/index';

/** Kernel factors `{ A [I, I], G [O, O] }`. */
export type KernelFactors = { A: tf.Tensor2D; G: tf.Tensor2D };
/** Bias factor `{ G [O, O] }` (the bias block is approximated by G itself). */
export type BiasFactors = { G: tf.Tensor2D };
/** What KFAC, KFLR and KFRA return per parameter. */
export type KroneckerFactors = KernelFactors | BiasFactors;

/**
 * Eigendecomposition of Kronecker factors: `A = UA diag(evalsA) UAᵀ`,
 * `G = UG diag(evalsG) UGᵀ` (eigenvalues ascending, eigenvectors in columns).
 * Bias: only the G part.
 */
export type KroneckerEigen = {
  UA?: tf.Tensor2D;
  evalsA?: tf.Tensor1D;
  UG: tf.Tensor2D;
  evalsG: tf.Tensor1D;
};

/** Memo key prefix (shared by every Kronecker-type extension of one module). */
const MEMO = 'kronecker';

/** `A = (1/N) XᵀX` with X the unfolded input folded to `[N·T, I]` (memoised; `gram`: plain 2-D matMuls in row blocks). */
export function inputFactor(ctx: ParamContext): tf.Tensor2D {
  return ctx.memo(`${MEMO}:A`, () =>
    tf.tidy(() => {
      const X = ctx.unfoldedInput();
      const [N, T, I] = X.shape;
      return tf.div(gram(tf.reshape(X, [N * T, I]) as tf.Tensor2D), ctx.batchSize) as tf.Tensor2D;
    }),
  );
}

/**
 * `G = Σ_{v,n} b_vn b_vnᵀ` from an output stack `[V, N, ...out]`, with
 * `b_vn` summed over positions (memoised under `key`, the stack's quantity key).
 */
export function outputFactor(ctx: ParamContext, key: string, stack: () => tf.Tensor): tf.Tensor2D {
  return ctx.memo(`${MEMO}:G:${key}`, () =>
    tf.tidy(() => {
      const B = positionSums(ctx.module, stack()); // [V·N, O]
      return tf.matMul(tf.transpose(B), B) as tf.Tensor2D;
    }),
  );
}

/** `[V, N, ...out] → [V·N, O]`: each stack row summed over positions (one average pool, see `sumPositions`). */
export function positionSums(module: LinearModuleDerivatives, stack: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const D = module.foldOutput(stack); // [V, N, T, O]
    const [V, N, T, O] = D.shape;
    return sumPositions(tf.reshape(D, [V * N, T, O]) as tf.Tensor3D);
  });
}

/** The parameter's result from its module's factors (new tensors: memo values die with the module). */
export function factorsResult(ctx: ParamContext, G: tf.Tensor2D): KroneckerFactors {
  if (ctx.param.role === 'bias') return { G: tf.clone(G) };
  return { A: tf.clone(inputFactor(ctx)), G: tf.clone(G) };
}

// ---------------------------------------------------------------------------
// Float64 eigendecomposition of a small symmetric factor (CPU).

/** `M = U diag(evals) Uᵀ` of a symmetric `[n, n]` tensor (eigh symmetrises; float64 on the CPU). */
export function symmetricEigen(M: tf.Tensor2D, what = 'factor'): { U: tf.Tensor2D; evals: tf.Tensor1D } {
  const [n, m] = M.shape;
  if (n !== m) throw new Error(`${what}: expected a square matrix, got [${M.shape.join(', ')}].`);
  const { values, vectors } = eigh(M.dataSync(), n, { vectors: true });
  if (vectors === undefined) throw new Error(`${what}: eigh returned no eigenvectors.`);
  return { U: tf.tensor2d(Float32Array.from(vectors), [n, n]), evals: tf.tensor1d(Float32Array.from(values)) };
}

/** Eigendecompositions of Kronecker factors (new tensors, caller disposes). */
export function kroneckerEigen(factors: KroneckerFactors): KroneckerEigen {
  checkFactors('kroneckerEigen', factors);
  const g = symmetricEigen(factors.G, 'kroneckerEigen: G');
  if (!('A' in factors) || factors.A === undefined) return { UG: g.U, evalsG: g.evals };
  let a: ReturnType<typeof symmetricEigen>;
  try {
    a = symmetricEigen(factors.A, 'kroneckerEigen: A');
  } catch (e) {
    tf.dispose([g.U, g.evals]);
    throw e;
  }
  return { UA: a.U, evalsA: a.evals, UG: g.U, evalsG: g.evals };
}

// ---------------------------------------------------------------------------
// Applying factors to vectors in the parameter's layout.

function checkFactors(fn: string, f: { A?: tf.Tensor; G?: tf.Tensor } | undefined): void {
  if (f === undefined || f === null || f.G === undefined) {
    const got = f === undefined || f === null ? String(f) : `an object with keys {${Object.keys(f).join(', ')}}`;
    throw new Error(`${fn}: expected Kronecker factors { A, G } (kernel) or { G } (bias), got ${got}.`);
  }
  for (const [k, t] of Object.entries(f)) {
    if (t === undefined) continue;
    if (t.rank !== 2 || t.shape[0] !== t.shape[1]) {
      throw new Error(`${fn}: factor ${k} must be a square matrix, got shape [${t.shape.join(', ')}].`);
    }
  }
}

export function checkDamping(fn: string, damping: number): void {
  if (typeof damping !== 'number' || !Number.isFinite(damping) || !(damping > 0)) {
    throw new Error(
      `${fn}: damping must be a finite number > 0 (the undamped inverse does not exist for rank-deficient factors), got ${damping}.`,
    );
  }
}

/**
 * View `v` as `[K, I, O]` (bias: I = 1). Accepted: the parameter's shape or
 * its `[I, O]` view (one vector), or either with a leading axis K; the last
 * axis must be O. Throws naming both shapes otherwise.
 */
export function asStack(fn: string, v: tf.Tensor, I: number, O: number): tf.Tensor3D {
  return tf.reshape(v, [stackCount(fn, v, I, O), I, O]);
}

/** K for `asStack` (throws for shapes that do not fit). */
export function stackCount(fn: string, v: tf.Tensor, I: number, O: number): number {
  const size = I * O;
  const single = v.size === size;
  const batched = v.rank >= 2 && (v.shape[0] as number) * size === v.size;
  if (v.size === 0 || v.shape[v.rank - 1] !== O || !(single || batched)) {
    throw new Error(
      `${fn}: v of shape [${v.shape.join(', ')}] does not fit the parameter (as [I, O] = [${I === 1 ? O : `${I}, ${O}`}], ${size} entries, last axis ${O}); pass the parameter's shape or [K, ...paramShape].`,
    );
  }
  return single ? 1 : (v.shape[0] as number);
}

/** `L · V_k · R` for every `V_k [I, O]` of a stack `[K, I, O]` (L absent: identity). Plain 2-D matMuls only. */
export function twoSided(L: tf.Tensor2D | undefined, V: tf.Tensor3D, R: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => {
    const [K, I, O] = V.shape;
    const VR = tf.reshape(tf.matMul(tf.reshape(V, [K * I, O]), R), [K, I, O]);
    if (L === undefined) return VR as tf.Tensor3D;
    const cols = K === 1 ? tf.reshape(VR, [I, O]) : tf.reshape(tf.transpose(VR, [1, 0, 2]), [I, K * O]);
    const LVR = tf.matMul(L, cols);
    return (K === 1 ? tf.reshape(LVR, [1, I, O]) : tf.transpose(tf.reshape(LVR, [I, K, O]), [1, 0, 2])) as tf.Tensor3D;
  });
}

/**
 * `U (scale ⊙ (Uᵀ V W)) Wᵀ` with U = UA (or identity), W = UG: apply a matrix
 * that is diagonal (entries `scale [I, O]`) in the basis `UA ⊗ UG`.
 */
export function applyInBasis(
  UA: tf.Tensor2D | undefined,
  UG: tf.Tensor2D,
  scale: tf.Tensor,
  V: tf.Tensor3D,
): tf.Tensor3D {
  return tf.tidy(() => {
    const rotated = twoSided(UA ? tf.transpose(UA) : undefined, V, UG);
    const scaled = tf.mul(rotated, scale) as tf.Tensor3D;
    return twoSided(UA, scaled, tf.transpose(UG));
  });
}

function dims(f: { A?: tf.Tensor2D; G: tf.Tensor2D }): [number, number] {
  return [f.A ? (f.A.shape[0] as number) : 1, f.G.shape[0] as number];
}

/**
 * `kron(A, G) · vec(V)` in the parameter's layout: `A V G` for each
 * `V [I, O]` (kernel), `V G` for the bias. `v`: the parameter's shape or
 * `[K, ...paramShape]`; the result has v's shape.
 */
export function kroneckerApply(factors: KroneckerFactors, v: tf.Tensor): tf.Tensor {
  checkFactors('kroneckerApply', factors);
  const f = factors as { A?: tf.Tensor2D; G: tf.Tensor2D };
  const [I, O] = dims(f);
  return tf.tidy(() => tf.reshape(twoSided(f.A, asStack('kroneckerApply', v, I, O), f.G), v.shape));
}

function isEigen(x: KroneckerFactors | KroneckerEigen): x is KroneckerEigen {
  return (x as KroneckerEigen).UG !== undefined;
}

/**
 * The exact damped inverse `(kron(A, G) + damping·I)⁻¹ · vec(V)` (bias:
 * `(G + damping·I)⁻¹ v`), through the eigendecompositions of A and G:
 * `UA [(UAᵀ V UG) / (evalsA evalsGᵀ + damping)] UGᵀ`. Not the π-split
 * `(A + √δ I)⁻¹ ⊗ (G + √δ I)⁻¹` of Martens & Grosse: this is the inverse of
 * the explicit damped matrix. Eigenvalues below 0 (float32 rounding of PSD
 * factors) are clamped to 0. Pass `kroneckerEigen(factors)` instead of the
 * factors to reuse the decomposition across calls (float64 `eigh` on the
 * CPU, O(I³ + O³)).
 */
export function kroneckerInverseApply(
  factors: KroneckerFactors | KroneckerEigen,
  v: tf.Tensor,
  damping: number,
): tf.Tensor {
  const fn = 'kroneckerInverseApply';
  checkDamping(fn, damping);
  if (isEigen(factors)) {
    if (factors.evalsG === undefined || (factors.UA !== undefined && factors.evalsA === undefined)) {
      throw new Error(`${fn}: an eigendecomposition needs { UG, evalsG } (bias) or { UA, evalsA, UG, evalsG } (kernel); use kroneckerEigen(factors).`);
    }
    stackCount(fn, v, factors.UA ? (factors.UA.shape[0] as number) : 1, factors.UG.shape[0] as number);
  } else {
    checkFactors(fn, factors);
    stackCount(fn, v, ...dims(factors as { A?: tf.Tensor2D; G: tf.Tensor2D }));
  }
  let eig: KroneckerEigen;
  let owned = false;
  if (isEigen(factors)) eig = factors;
  else {
    eig = kroneckerEigen(factors);
    owned = true;
  }
  try {
    const I = eig.UA ? (eig.UA.shape[0] as number) : 1;
    const O = eig.UG.shape[0] as number;
    return tf.tidy(() => {
      const V = asStack(fn, v, I, O);
      const eg = tf.relu(eig.evalsG);
      const prod = eig.evalsA ? tf.mul(tf.reshape(tf.relu(eig.evalsA), [I, 1]), tf.reshape(eg, [1, O])) : tf.reshape(eg, [1, O]);
      const scale = tf.reciprocal(tf.add(prod, damping));
      return tf.reshape(applyInBasis(eig.UA, eig.UG, scale, V), v.shape);
    });
  } finally {
    if (owned) tf.dispose(eig as unknown as tf.TensorContainer);
  }
}
