/**
 * Gram-space algebra of one parameter, without per-sample parameter tensors
 * where avoidable. Notation (FORMAT.md §6.4, weightProducts.ts): the
 * unfolded input `X [n, T, I]` and an output stack folded to patches
 * `D [V, n, T, O]`; the per-sample parameter product of entry (v, n) is
 *
 *   kernel  P_vn = Σ_t X[n,t]ᵀ ⊗ D[v,n,t]   ([I, O] = the kernel, row-major)
 *   bias    b_vn = Σ_t D[v,n,t]             ([O])
 *
 * Rows and columns of every Gram matrix are indexed v-major: `(v, n) ↦ v·n_total + n`
 * (ViViT's `[C, N]` flattening).
 *
 * Kernel rules (wasm): only plain 2-D `matMul` with explicit transposes on the
 * hot paths; per-sample loops only around large matMuls.
 */
import * as tf from '@tensorflow/tfjs';
import { perSampleKernelProduct } from '../src/derivatives/weightProducts';

/** Which contraction `kernelCrossGram` uses. */
export type KernelGramRoute = 'dense' | 'patches' | 'explicit';

/** `a · bᵀ` for 2-D a `[p, k]`, b `[q, k]` with an explicit transpose (wasm rule). */
function abT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(a, tf.transpose(b));
}

/** Flop estimates of the routes (multiply-adds), used to pick the cheapest. */
export function kernelGramCosts(
  Va: number,
  na: number,
  Vb: number,
  nb: number,
  T: number,
  I: number,
  O: number,
): Record<KernelGramRoute, number> {
  const patches = na * T * nb * T * I + Va * na * T * Vb * nb * T * O + 2 * Va * na * Vb * nb * T * T;
  const explicit = (Va * na + Vb * nb) * T * I * O + Va * na * Vb * nb * I * O;
  return { dense: T === 1 ? na * nb * I + Va * na * Vb * nb * O : Infinity, patches, explicit };
}

/** The cheapest route for a kernel Gram (T = 1: always 'dense'). */
export function chooseKernelGramRoute(Va: number, na: number, Vb: number, nb: number, T: number, I: number, O: number): KernelGramRoute {
  if (T === 1) return 'dense';
  const c = kernelGramCosts(Va, na, Vb, nb, T, I, O);
  // The patch route holds a [Va·na·T, Vb·nb·T] matrix; prefer the explicit one beyond 2^26 entries.
  const patchEntries = Va * na * T * Vb * nb * T;
  if (patchEntries > 2 ** 26) return 'explicit';
  return c.patches <= c.explicit ? 'patches' : 'explicit';
}

/**
 * Kernel cross-Gram `K[(v,m), (w,n)] = ⟨P^a_vm, P^b_wn⟩` → `[Va·na, Vb·nb]`.
 *
 * - dense (T = 1): `(X_a X_bᵀ)[m,n] · (D_a D_bᵀ)[(v,m),(w,n)]`, two 2-D matMuls;
 * - patches: `Σ_{t,t'} (X_a X_bᵀ)[(m,t),(n,t')] (D_a D_bᵀ)[(v,m,t),(w,n,t')]`;
 * - explicit: per-sample products `P [V·n, I·O]`, then `P_a P_bᵀ`.
 * `route` defaults to the cheapest (`chooseKernelGramRoute`). Pass the same
 * tensors for a and b to get the Gram matrix (the explicit route then forms P once).
 */
export function kernelCrossGram(
  Xa: tf.Tensor3D,
  Da: tf.Tensor4D,
  Xb: tf.Tensor3D,
  Db: tf.Tensor4D,
  route?: KernelGramRoute,
): tf.Tensor2D {
  const [na, T, I] = Xa.shape;
  const [Va, , , O] = Da.shape;
  const [nb] = Xb.shape;
  const Vb = Db.shape[0];
  if (Xb.shape[1] !== T || Xb.shape[2] !== I || Db.shape[2] !== T || Db.shape[3] !== O || Da.shape[1] !== na || Db.shape[1] !== nb) {
    throw new Error(
      `kernelCrossGram: shapes do not match: X_a [${Xa.shape}], D_a [${Da.shape}], X_b [${Xb.shape}], D_b [${Db.shape}] (need X [n, T, I], D [V, n, T, O]).`,
    );
  }
  const r = route ?? chooseKernelGramRoute(Va, na, Vb, nb, T, I, O);
  if (r === 'dense' && T !== 1) throw new Error(`kernelCrossGram: route 'dense' needs T = 1 patch per sample, got T = ${T}.`);
  return tf.tidy(() => {
    if (r === 'dense') {
      const kx = abT(tf.reshape(Xa, [na, I]), tf.reshape(Xb, [nb, I])); // [na, nb]
      const kd = abT(tf.reshape(Da, [Va * na, O]), tf.reshape(Db, [Vb * nb, O])); // [Va·na, Vb·nb]
      const prod = tf.mul(tf.reshape(kd, [Va, na, Vb, nb]), tf.reshape(kx, [1, na, 1, nb]));
      return tf.reshape(prod, [Va * na, Vb * nb]);
    }
    if (r === 'patches') {
      const kx = abT(tf.reshape(Xa, [na * T, I]), tf.reshape(Xb, [nb * T, I])); // [(m,t), (n,t')]
      const kd = abT(tf.reshape(Da, [Va * na * T, O]), tf.reshape(Db, [Vb * nb * T, O])); // [(v,m,t), (w,n,t')]
      const prod = tf.mul(tf.reshape(kd, [Va, na * T, Vb, nb * T]), tf.reshape(kx, [1, na * T, 1, nb * T]));
      const summed = tf.sum(tf.reshape(prod, [Va * na, T, Vb * nb, T]), [1, 3]);
      return summed as tf.Tensor2D;
    }
    const Pa = tf.reshape(perSampleKernelProduct(Xa, Da), [Va * na, I * O]) as tf.Tensor2D;
    const Pb = Xa === Xb && Da === Db ? Pa : (tf.reshape(perSampleKernelProduct(Xb, Db), [Vb * nb, I * O]) as tf.Tensor2D);
    return abT(Pa, Pb);
  });
}

/** Bias cross-Gram `⟨b^a_vm, b^b_wn⟩` → `[Va·na, Vb·nb]` (b = Σ_t D). */
export function biasCrossGram(Da: tf.Tensor4D, Db: tf.Tensor4D): tf.Tensor2D {
  const [Va, na, , O] = Da.shape;
  const [Vb, nb] = Db.shape;
  if (Db.shape[3] !== O) throw new Error(`biasCrossGram: D_a [${Da.shape}] and D_b [${Db.shape}] differ in the output axis.`);
  return tf.tidy(() => {
    const Ba = tf.reshape(tf.sum(Da, 2), [Va * na, O]) as tf.Tensor2D;
    const Bb = Da === Db ? Ba : (tf.reshape(tf.sum(Db, 2), [Vb * nb, O]) as tf.Tensor2D);
    return abT(Ba, Bb);
  });
}

/**
 * Parameter-space vectors from Gram-space weights: `E_k = Σ_{v,n} W[k, (v,n)] P_vn`
 * for all k at once → `[K, ...paramShape]` (paramShape row-major = `[I, O]` for a
 * kernel, `[O]` for a bias). `W [K, V·n]`.
 *
 * The stack is re-weighted first, `D'[k, n] = Σ_v W[k,(v,n)] D[v,n]` (one
 * batched matMul over n, `[n, K, V] × [n, V, T·O]`), then contracted with the
 * input by one 2-D matMul `[I, n·T] × [n·T, K·O]` (kernel) — never `[V, n, ...p]`.
 * A bias needs only `W · B` with `B = Σ_t D [V·n, O]`.
 */
export function weightedParamProduct(
  role: 'kernel' | 'bias',
  paramShape: readonly number[],
  X: tf.Tensor3D | undefined,
  D: tf.Tensor4D,
  W: tf.Tensor2D,
): tf.Tensor {
  const [V, n, T, O] = D.shape;
  const K = W.shape[0];
  if (W.shape[1] !== V * n) {
    throw new Error(`weightedParamProduct: weights [${W.shape}] do not fit the stack [${D.shape}] (need [K, ${V * n}]).`);
  }
  return tf.tidy(() => {
    if (role === 'bias') {
      const B = tf.reshape(tf.sum(D, 2), [V * n, O]);
      return tf.reshape(tf.matMul(W, B), [K, ...paramShape]);
    }
    if (X === undefined) throw new Error('weightedParamProduct: a kernel needs the unfolded input X.');
    const I = X.shape[2];
    // D'[n, K, T·O]
    let Dp: tf.Tensor;
    if (V === 1) {
      // W [K, n] · D [n, T·O] per sample: a broadcast product.
      Dp = tf.mul(tf.reshape(tf.transpose(W), [n, K, 1]), tf.reshape(D, [n, 1, T * O]));
    } else {
      const Wn = tf.transpose(tf.reshape(W, [K, V, n]), [2, 0, 1]); // [n, K, V]
      const Dn = tf.transpose(tf.reshape(D, [V, n, T * O]), [1, 0, 2]); // [n, V, T·O]
      Dp = tf.matMul(Wn as tf.Tensor3D, Dn as tf.Tensor3D); // [n, K, T·O]
    }
    // [n, K, T, O] → [n·T, K·O]
    const rhs = T === 1 ? tf.reshape(Dp, [n, K * O]) : tf.reshape(tf.transpose(tf.reshape(Dp, [n, K, T, O]), [0, 2, 1, 3]), [n * T, K * O]);
    const Xt = tf.transpose(tf.reshape(X, [n * T, I])); // [I, n·T]
    const P = tf.matMul(Xt, rhs as tf.Tensor2D); // [I, K·O]
    const out = K === 1 ? tf.reshape(P, [1, I, O]) : tf.transpose(tf.reshape(P, [I, K, O]), [1, 0, 2]);
    return tf.reshape(out, [K, ...paramShape]);
  });
}
