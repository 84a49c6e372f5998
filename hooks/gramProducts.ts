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
import { sumPositions, unstackRows } from '../src/derivatives/weightProducts';

/** Which contraction `kernelCrossGram` uses. */
export type KernelGramRoute = 'dense' | 'patches' | 'explicit';

/** `a · bᵀ` for 2-D a `[p, k]`, b `[q, k]` with an explicit transpose (wasm rule). */
function abT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(a, tf.transpose(b));
}

/** Sample blocks of the symmetric explicit route: only the h(h+1)/2 lower blocks of `P Pᵀ` are multiplied. */
const SYMMETRIC_BLOCKS = 4;

/** Largest contraction length of one explicit-route matMul (longer ones lose half the speed on wasm: no K-blocking in XNNPACK). */
const EXPLICIT_CHUNK = 8192;

/** Flop estimates of the routes (multiply-adds), used to pick the cheapest. */
export function kernelGramCosts(
  Va: number,
  na: number,
  Vb: number,
  nb: number,
  T: number,
  I: number,
  O: number,
  symmetric = false,
): Record<KernelGramRoute, number> {
  const patches = na * T * nb * T * I + Va * na * T * Vb * nb * T * O + 2 * Va * na * Vb * nb * T * T;
  const h = symmetric ? Math.min(SYMMETRIC_BLOCKS, na) : 1;
  const products = symmetric ? Va * na * T * I * O : (Va * na + Vb * nb) * T * I * O;
  const explicit = products + ((h + 1) / (2 * h)) * Va * na * Vb * nb * I * O;
  return { dense: T === 1 ? na * nb * I + Va * na * Vb * nb * O : Infinity, patches, explicit };
}

/** The cheapest route for a kernel Gram (T = 1: always 'dense'). */
export function chooseKernelGramRoute(Va: number, na: number, Vb: number, nb: number, T: number, I: number, O: number, symmetric = false): KernelGramRoute {
  if (T === 1) return 'dense';
  const c = kernelGramCosts(Va, na, Vb, nb, T, I, O, symmetric);
  // The patch route holds a [Va·na·T, Vb·nb·T] matrix; prefer the explicit one beyond 2^26 entries.
  const patchEntries = Va * na * T * Vb * nb * T;
  if (patchEntries > 2 ** 26) return 'explicit';
  // The patch route's elementwise passes over that matrix run far below matMul speed: weigh them 4×.
  const patches = c.patches + 3 * 2 * patchEntries;
  return patches <= c.explicit ? 'patches' : 'explicit';
}

/**
 * Kernel cross-Gram `K[(v,m), (w,n)] = ⟨P^a_vm, P^b_wn⟩` → `[Va·na, Vb·nb]`.
 *
 * - dense (T = 1): `(X_a X_bᵀ)[m,n] · (D_a D_bᵀ)[(v,m),(w,n)]`, two 2-D matMuls
 *   (`withBias`: `(X_a X_bᵀ + 1) ⊙ (D_a D_bᵀ)`, kernel and bias Gram at once);
 * - patches: `Σ_{t,t'} (X_a X_bᵀ)[(m,t),(n,t')] (D_a D_bᵀ)[(v,m,t),(w,n,t')]`;
 * - explicit: per-sample products `P [V·n, I·O]` in chunks, then `P_a P_bᵀ`
 *   (`explicitGram`).
 * `route` defaults to the cheapest (`chooseKernelGramRoute`). Pass the same
 * tensors for a and b to get the Gram matrix (the explicit route then forms P
 * once and multiplies only the lower sample blocks).
 */
export function kernelCrossGram(
  Xa: tf.Tensor3D,
  Da: tf.Tensor4D,
  Xb: tf.Tensor3D,
  Db: tf.Tensor4D,
  route?: KernelGramRoute,
  withBias = false,
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
  const same = Xa === Xb && Da === Db;
  const r = route ?? chooseKernelGramRoute(Va, na, Vb, nb, T, I, O, same);
  if (r === 'dense' && T !== 1) throw new Error(`kernelCrossGram: route 'dense' needs T = 1 patch per sample, got T = ${T}.`);
  if (withBias && r !== 'dense') throw new Error(`kernelCrossGram: 'withBias' is for the dense route (T = 1) only.`);
  return tf.tidy(() => {
    if (r === 'dense') {
      let kx = abT(tf.reshape(Xa, [na, I]), tf.reshape(Xb, [nb, I])); // [na, nb]
      if (withBias) kx = tf.add(kx, 1);
      const Dfa = tf.reshape(Da, [Va * na, O]) as tf.Tensor2D;
      const kd = same ? abT(Dfa, Dfa) : abT(Dfa, tf.reshape(Db, [Vb * nb, O])); // [Va·na, Vb·nb]
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
    return same ? explicitGram(Xa, Da) : explicitGram(Xa, Da, Xb, Db);
  });
}

/** The largest divisor of `O` not above `max` (≥ 1). */
function largestDivisor(O: number, max: number): number {
  let best = 1;
  for (let d = 1; d <= Math.min(O, max); d++) if (O % d === 0) best = d;
  return best;
}

/**
 * Per-sample operands of the explicit route, chunked over the output
 * channels (`oc` per chunk, `nc = O / oc` chunks): `xs[m] = X_m [T, I]` and
 * `ds[m·nc + c] = D_m restricted to chunk c`, transposed to `[(v, o'), T]`.
 * Then `ds[m·nc + c] · xs[m]` is `[(v, o'), I]`, i.e. rows v of the
 * per-sample products restricted to the chunk's `oc·I` entries.
 */
function chunkOperands(X: tf.Tensor3D, D: tf.Tensor4D, oc: number): { xs: tf.Tensor2D[]; ds: tf.Tensor2D[] } {
  const [n, T] = X.shape;
  const [V, , , O] = D.shape;
  const nc = O / oc;
  // [v, m, t, o] → [v, m, o, t] → [(m, c), v, (o', t)]: two 3-D transposes (wasm's 5-D transpose is ~10× slower).
  const Dt = tf.tidy(() => {
    const Dot = tf.transpose(tf.reshape(D, [V * n, T, O]), [0, 2, 1]);
    return tf.reshape(tf.transpose(tf.reshape(Dot, [V, n * nc, oc * T]), [1, 0, 2]), [n * nc, V * oc, T]);
  });
  try {
    return { xs: unstackRows(X) as tf.Tensor2D[], ds: unstackRows(Dt) as tf.Tensor2D[] };
  } finally {
    Dt.dispose();
  }
}

/**
 * Explicit route of `kernelCrossGram`: `G = P_a P_bᵀ` with the per-sample
 * products `P [(v,n), (i,o)]` (up to a common column order), without ever
 * holding P at once or transposing it whole:
 *
 * - the contraction over `I·O` is cut into chunks of `oc` output channels
 *   (`oc·I ≤ 8192`: longer 2-D matMuls run at half speed on wasm);
 * - per sample and chunk one 2-D matMul `D_mᵀ [(v,o'), T] × X_m [T, I]` gives
 *   the chunk's rows of P; the rows of a block of samples are concatenated
 *   (sample-major rows `(m, v)`), transposed (2-D, chunk-sized) and multiplied;
 * - symmetric case (b absent): samples in `h = 4` blocks, only the
 *   h(h+1)/2 lower blocks of `P Pᵀ` are multiplied (0.625× the flops).
 *
 * Cost: `V·n·T·I·O` (products) + `(5/8)(V·n)²·I·O` multiply-adds (symmetric).
 * Returns `[Va·na, Vb·nb]` with v-major rows and columns. `tuning` (for
 * benchmarks): the chunk length (default 8192) and the sample blocks (4).
 */
export function explicitGram(
  Xa: tf.Tensor3D,
  Da: tf.Tensor4D,
  Xb?: tf.Tensor3D,
  Db?: tf.Tensor4D,
  tuning: { chunk?: number; blocks?: number } = {},
): tf.Tensor2D {
  const [na, , I] = Xa.shape;
  const [Va, , , O] = Da.shape;
  const symmetric = Xb === undefined || Db === undefined;
  const nb = symmetric ? na : Xb.shape[0];
  const Vb = symmetric ? Va : Db.shape[0];
  const oc = largestDivisor(O, Math.max(1, Math.floor((tuning.chunk ?? EXPLICIT_CHUNK) / I)));
  const nc = O / oc;
  const K = oc * I;
  const a = chunkOperands(Xa, Da, oc);
  const b = symmetric ? a : chunkOperands(Xb, Db, oc);
  // Sample blocks: [start, end) per block (one block per side when not symmetric).
  const blocks = (n: number, h: number): number[] => Array.from({ length: h + 1 }, (_, i) => Math.round((i * n) / h));
  const ba = blocks(na, symmetric ? Math.min(tuning.blocks ?? SYMMETRIC_BLOCKS, na) : 1);
  const bb = symmetric ? ba : blocks(nb, 1);
  const ha = ba.length - 1;
  const hb = bb.length - 1;
  // acc[i][j]: Σ_chunks P_a(block i) P_b(block j)ᵀ (symmetric: j ≤ i only).
  const acc: (tf.Tensor2D | undefined)[][] = Array.from({ length: ha }, () => new Array<tf.Tensor2D | undefined>(hb).fill(undefined));
  const rowsOf = (ops: { xs: tf.Tensor2D[]; ds: tf.Tensor2D[] }, V: number, c: number, start: number, end: number): tf.Tensor2D =>
    tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      for (let m = start; m < end; m++) parts.push(tf.reshape(tf.matMul(ops.ds[m * nc + c] as tf.Tensor2D, ops.xs[m] as tf.Tensor2D), [V, K]));
      return (parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor2D;
    });
  try {
    for (let c = 0; c < nc; c++) {
      const A = Array.from({ length: ha }, (_, i) => rowsOf(a, Va, c, ba[i] as number, ba[i + 1] as number));
      const B = symmetric ? A : Array.from({ length: hb }, (_, j) => rowsOf(b, Vb, c, bb[j] as number, bb[j + 1] as number));
      const Bt = B.map((t) => tf.transpose(t) as tf.Tensor2D);
      for (let i = 0; i < ha; i++) {
        for (let j = 0; j < (symmetric ? i + 1 : hb); j++) {
          const prod = tf.matMul(A[i] as tf.Tensor2D, Bt[j] as tf.Tensor2D) as tf.Tensor2D;
          const prev = acc[i]?.[j];
          if (prev) {
            (acc[i] as (tf.Tensor2D | undefined)[])[j] = tf.add(prev, prod) as tf.Tensor2D;
            tf.dispose([prev, prod]);
          } else (acc[i] as (tf.Tensor2D | undefined)[])[j] = prod;
        }
      }
      tf.dispose(symmetric ? [...A, ...Bt] : [...A, ...B, ...Bt]);
    }
    return tf.tidy(() => {
      // Sample-major [(m,v), (n,w)] from the blocks, then v-major.
      const rows = acc.map((row, i) => {
        const cols = Array.from({ length: hb }, (_, j) => (symmetric && j > i ? tf.transpose(acc[j]?.[i] as tf.Tensor2D) : (row[j] as tf.Tensor2D)));
        return cols.length === 1 ? (cols[0] as tf.Tensor2D) : tf.concat(cols, 1);
      });
      const Gs = rows.length === 1 ? (rows[0] as tf.Tensor2D) : tf.concat(rows, 0);
      return tf.reshape(tf.transpose(tf.reshape(Gs, [na, Va, nb, Vb]), [1, 0, 3, 2]), [Va * na, Vb * nb]) as tf.Tensor2D;
    });
  } finally {
    tf.dispose(acc.flat().filter((t): t is tf.Tensor2D => t !== undefined));
    tf.dispose([...a.xs, ...a.ds]);
    if (!symmetric) tf.dispose([...b.xs, ...b.ds]);
  }
}

/** Bias cross-Gram `⟨b^a_vm, b^b_wn⟩` → `[Va·na, Vb·nb]` (b = Σ_t D). */
export function biasCrossGram(Da: tf.Tensor4D, Db: tf.Tensor4D): tf.Tensor2D {
  const [Va, na, T, O] = Da.shape;
  const [Vb, nb] = Db.shape;
  if (Db.shape[3] !== O) throw new Error(`biasCrossGram: D_a [${Da.shape}] and D_b [${Db.shape}] differ in the output axis.`);
  return tf.tidy(() => {
    const Ba = sumPositions(tf.reshape(Da, [Va * na, T, O]) as tf.Tensor3D);
    const Bb = Da === Db ? Ba : sumPositions(tf.reshape(Db, [Vb * nb, Db.shape[2], O]) as tf.Tensor3D);
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
      const B = sumPositions(tf.reshape(D, [V * n, T, O]) as tf.Tensor3D);
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
