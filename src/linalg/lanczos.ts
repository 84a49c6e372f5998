/**
 * Lanczos with full reorthogonalisation for a few extreme eigenpairs of a
 * symmetric operator given only by its matrix-vector product. float64 on the
 * CPU; the operator may run anywhere (e.g. a TF.js Hessian-vector product).
 *
 * Builds an orthonormal Krylov basis Q_j (rows) with A Q_jᵀ = Q_jᵀ T_j + β_j q_{j+1} e_jᵀ,
 * reorthogonalising every new vector twice against all previous ones
 * (modified Gram–Schmidt, "twice is enough"), and checks the Ritz pairs
 * (θ, x = Q_jᵀ s) of T_j through β_j |s_j| (= ‖A x − θ x‖ in exact arithmetic).
 * At the end the returned residuals are the TRUE norms ‖A x − θ x‖ (k extra
 * products). If the Krylov space becomes invariant (β ≈ 0), it continues
 * with a fresh random vector orthogonal to the basis and then also requires
 * the new block's extreme Ritz values to converge, so further copies of an
 * exactly repeated eigenvalue are found. (Single-vector Lanczos cannot see
 * multiplicity otherwise: for tight clusters that never produce an invariant
 * subspace, ask for a larger k or use `eigh`.)
 *
 * Cost: j products + O(n j²) for the reorthogonalisation + O(j²) per
 * convergence check (last eigenvector components only) + one O(j³) small
 * eigenproblem at the end; memory j·n float64.
 */
import { Rng } from '../utils/random';
import { checkSize } from './dense';
import { tridiagonalEigen, tridiagonalEigenComponents } from './eigh';

export interface LanczosOptions {
  /** Which end of the spectrum (default 'largest'; 'both' = ⌈k/2⌉ largest and ⌊k/2⌋ smallest). */
  which?: 'largest' | 'smallest' | 'both';
  /** Maximum Krylov dimension (default min(n, max(300, 20k))). */
  maxIter?: number;
  /** Convergence: ‖A x − θ x‖ ≤ tol · ‖A‖ (‖A‖ estimated by max |Ritz value|); default 1e-8. */
  tol?: number;
  /** Seed of the random start vector (default 0). */
  seed?: number;
}

export interface LanczosResult {
  /** Ritz values, ascending. */
  values: Float64Array;
  /** k×n row-major, ROW i is the unit Ritz vector of values[i]. */
  vectors: Float64Array;
  /** Number of matrix-vector products used to build the basis (Krylov dimension). */
  iterations: number;
  /** True residual norms ‖A x_i − θ_i x_i‖ for each returned pair. */
  residuals: Float64Array;
  /** Whether every residual is ≤ tol · ‖A‖ (‖A‖ ≈ max |Ritz value|). */
  converged: boolean;
}

/** k extreme eigenpairs of the symmetric operator `matvec` on Rⁿ. */
export function lanczos(
  matvec: (v: Float64Array) => Float64Array,
  n: number,
  k: number,
  options: LanczosOptions = {},
): LanczosResult {
  const fn = 'lanczos';
  checkSize(fn, 'n', n);
  checkSize(fn, 'k', k);
  if (typeof matvec !== 'function') throw new Error(`${fn}: matvec must be a function (v: Float64Array) => Float64Array.`);
  if (k > n) throw new Error(`${fn}: k = ${k} eigenpairs requested but the operator has dimension n = ${n}; use k ≤ n.`);
  const which = options.which ?? 'largest';
  if (which !== 'largest' && which !== 'smallest' && which !== 'both') {
    throw new Error(`${fn}: which must be 'largest', 'smallest' or 'both', got '${String(which)}'.`);
  }
  const tol = options.tol ?? 1e-8;
  if (!(tol > 0)) throw new Error(`${fn}: tol must be positive, got ${tol}.`);
  if (options.maxIter !== undefined && !(Number.isInteger(options.maxIter) && options.maxIter > 0)) {
    throw new Error(`${fn}: maxIter must be a positive integer, got ${options.maxIter}.`);
  }
  // The Krylov dimension needs at least k; it can never exceed n.
  const maxIter = Math.min(n, Math.max(k, options.maxIter ?? Math.max(300, 20 * k)));
  if (k === 0 || n === 0) {
    return { values: new Float64Array(0), vectors: new Float64Array(0), iterations: 0, residuals: new Float64Array(0), converged: true };
  }
  const rng = new Rng(options.seed ?? 0);
  const kHigh = which === 'largest' ? k : which === 'smallest' ? 0 : Math.ceil(k / 2);
  const kLow = k - kHigh;

  const callMatvec = (v: Float64Array): Float64Array => {
    const out = matvec(Float64Array.from(v));
    if (out == null || out.length !== n) {
      throw new Error(`${fn}: matvec returned length ${out == null ? 'nothing' : out.length}, expected n = ${n}.`);
    }
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(out[i] as number)) throw new Error(`${fn}: matvec returned a non-finite entry (${out[i]}) at ${i}.`);
    }
    return out;
  };

  const Q = new Float64Array(maxIter * n); // basis vectors as rows
  const alpha = new Float64Array(maxIter);
  const beta = new Float64Array(maxIter); // beta[j] couples q_j and q_{j+1}
  let normEstimate = 0;

  // Orthogonalises w against rows 0..j−1 of Q twice; returns ‖w‖ afterwards.
  const reorthogonalize = (w: Float64Array, j: number): number => {
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        const qi = i * n;
        let s = 0;
        for (let t = 0; t < n; t++) s += (Q[qi + t] as number) * (w[t] as number);
        if (s !== 0) for (let t = 0; t < n; t++) w[t] -= s * (Q[qi + t] as number);
      }
    }
    let s = 0;
    for (let t = 0; t < n; t++) s += (w[t] as number) * (w[t] as number);
    return Math.sqrt(s);
  };
  // A fresh random unit vector orthogonal to rows 0..j−1 (or null if none exists numerically).
  const randomStart = (j: number): Float64Array | null => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const w = new Float64Array(n);
      for (let t = 0; t < n; t++) w[t] = rng.normal();
      const before = Math.sqrt(w.reduce((acc, x) => acc + x * x, 0));
      const nrm = reorthogonalize(w, j);
      if (nrm > 1e-8 * before) {
        for (let t = 0; t < n; t++) w[t] /= nrm;
        return w;
      }
    }
    return null;
  };

  const start = randomStart(0);
  if (!start) throw new Error(`${fn}: could not draw a start vector.`);
  Q.set(start, 0);
  let m = 0; // current Krylov dimension
  let lastCheck = 0;
  let blockStart = 0; // first basis index of the current Krylov block (after restarts)
  let done = false;
  const w = new Float64Array(n);
  while (m < maxIter && !done) {
    const j = m;
    const qj = Q.subarray(j * n, (j + 1) * n);
    w.set(callMatvec(qj));
    let a = 0;
    for (let t = 0; t < n; t++) a += (w[t] as number) * (qj[t] as number);
    alpha[j] = a;
    m = j + 1;
    // w ← A q_j − α_j q_j − β_{j−1} q_{j−1}, then full reorthogonalisation.
    for (let t = 0; t < n; t++) w[t] -= a * (qj[t] as number);
    if (j > 0) {
      const b = beta[j - 1] as number;
      const qp = (j - 1) * n;
      for (let t = 0; t < n; t++) w[t] -= b * (Q[qp + t] as number);
    }
    let b = reorthogonalize(w, m);
    normEstimate = Math.max(normEstimate, Math.abs(a) + b + (j > 0 ? (beta[j - 1] as number) : 0));
    if (m === maxIter) break;
    let restarted = false;
    if (b <= 1e-12 * Math.max(normEstimate, Number.MIN_VALUE)) {
      // Invariant subspace: restart with a fresh orthogonal direction (β = 0 splits T).
      const fresh = randomStart(m);
      if (!fresh) break;
      b = 0;
      beta[j] = 0;
      Q.set(fresh, m * n);
      restarted = true;
      blockStart = m;
    } else {
      beta[j] = b;
      for (let t = 0; t < n; t++) Q[m * n + t] = (w[t] as number) / b;
    }
    // Convergence check of the wanted Ritz pairs every few steps.
    // (Not right after a restart: every estimate is 0 then, yet the new direction may
    // still hold wanted eigenvalues, e.g. further copies of a repeated one.)
    if (!restarted && m >= k && m - lastCheck >= Math.max(5, Math.floor(m / 10))) {
      lastCheck = m;
      // Residual estimates β_m |s_{m,i}| need only the last components of T's eigenvectors (O(m²)).
      const { values: theta, components: last } = tridiagonalEigenComponents(alpha.subarray(0, m), beta.subarray(0, m - 1), [m - 1]);
      const scale = Math.max(Math.abs(theta[0] as number), Math.abs(theta[m - 1] as number), Number.MIN_VALUE);
      const bm = beta[m - 1] as number;
      let ok = true;
      for (const i of wantedIndex(m, kLow, kHigh)) {
        if (bm * Math.abs(last[i] as number) > 0.1 * tol * scale) ok = false; // margin: estimate vs true residual
      }
      // After a restart, the earlier blocks are exact, but the current block's
      // extreme Ritz values can still grow into the wanted set: they must have
      // converged as well (interlacing: converged Ritz values stay put).
      if (ok && blockStart > 0) {
        const mb = m - blockStart;
        const blk = tridiagonalEigenComponents(alpha.subarray(blockStart, m), beta.subarray(blockStart, m - 1), [mb - 1]);
        for (const i of wantedIndex(mb, kLow, kHigh)) {
          if (bm * Math.abs(blk.components[i] as number) > 0.1 * tol * scale) ok = false;
        }
      }
      if (ok) done = true;
    }
  }

  // Ritz vectors x = Qᵀ s for the wanted pairs, then true residuals.
  const ritz = ritzPairs(alpha, beta, m, kLow, kHigh);
  const count = ritz.index.length;
  const values = new Float64Array(count);
  const vectors = new Float64Array(count * n);
  const residuals = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const col = ritz.index[i] as number;
    values[i] = ritz.values[col] as number;
    const xi = i * n;
    for (let r = 0; r < m; r++) {
      const s = ritz.vectors[r * m + col] as number;
      if (s === 0) continue;
      const qr = r * n;
      for (let t = 0; t < n; t++) vectors[xi + t] += s * (Q[qr + t] as number);
    }
    let nrm = 0;
    for (let t = 0; t < n; t++) nrm += (vectors[xi + t] as number) ** 2;
    nrm = Math.sqrt(nrm);
    for (let t = 0; t < n; t++) vectors[xi + t] /= nrm;
    const ax = callMatvec(vectors.subarray(xi, xi + n));
    let res = 0;
    for (let t = 0; t < n; t++) res += ((ax[t] as number) - values[i]! * (vectors[xi + t] as number)) ** 2;
    residuals[i] = Math.sqrt(res);
  }
  const scale = Math.max(ritz.maxAbs, Number.MIN_VALUE);
  let converged = count === k;
  for (let i = 0; i < count; i++) if (!((residuals[i] as number) <= tol * scale)) converged = false;
  return { values, vectors, iterations: m, residuals, converged };
}

/** Positions (ascending) of the wanted Ritz values among m: kLow smallest and kHigh largest. */
function wantedIndex(m: number, kLow: number, kHigh: number): number[] {
  const index: number[] = [];
  const low = Math.min(kLow, m);
  const high = Math.min(kHigh, m - low);
  for (let i = 0; i < low; i++) index.push(i);
  for (let i = m - high; i < m; i++) index.push(i);
  return index;
}

/** Full eigen-decomposition of T_m and the column indices of the wanted Ritz pairs (ascending by value). */
function ritzPairs(
  alpha: Float64Array,
  beta: Float64Array,
  m: number,
  kLow: number,
  kHigh: number,
): { values: Float64Array; vectors: Float64Array; index: number[]; maxAbs: number } {
  const { values, vectors } = tridiagonalEigen(alpha.subarray(0, m), beta.subarray(0, m - 1));
  const maxAbs = m > 0 ? Math.max(Math.abs(values[0] as number), Math.abs(values[m - 1] as number)) : 0;
  return { values, vectors: vectors as Float64Array, index: wantedIndex(m, kLow, kHigh), maxAbs };
}
