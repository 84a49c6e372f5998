/**
 * Selected eigenvectors of a symmetric tridiagonal matrix by inverse
 * iteration (after LAPACK's dstein), float64: for each given eigenvalue λ
 * (accurate to ~ε‖T‖, e.g. from `implicitQL`), solve (T − λI) x = b with a
 * pivoted LU of the tridiagonal a few times from a fixed pseudo-random start.
 * Eigenvalues whose neighbours are closer than 1e-6·‖T‖ form a cluster whose
 * vectors are re-orthogonalised against each other (modified Gram–Schmidt,
 * twice) after every solve; (almost) equal eigenvalues are perturbed by
 * 10ε‖T‖ first, so that the iterations converge to different vectors of the
 * cluster's subspace. Vectors of eigenvalues further apart than 1e-6·‖T‖ are
 * orthogonal to ~ε‖T‖/gap ≤ 1e-9 without re-orthogonalisation (dstein uses
 * 1e-3·‖T‖, which chains whole ranges of a decaying spectrum into one
 * cluster). A cluster of more than 32 selected vectors is not handled
 * (residual Infinity: callers fall back).
 *
 * Cost O(n) per vector and iteration (O(n·c) with a cluster of c vectors),
 * against O(n²) per vector for replaying the QL rotations.
 */

const EPS = 2 ** -52;
/** Iterations after the first solve (dstein: convergence check plus 2 extra). */
const ITERATIONS = 4;
/** Cluster gap relative to ‖T‖₁. */
const ORTOL = 1e-6;
/** Largest cluster re-orthogonalised here. */
const MAX_CLUSTER = 32;

/**
 * Unit eigenvectors of the tridiagonal T (diagonal d, off-diagonal e[i]
 * coupling i and i+1; e[n−1] unused) for `lambdas` (ASCENDING). Returns an
 * n×k row-major matrix (column j ↔ lambdas[j]) and the largest residual
 * ‖T x − λ x‖ / ‖T‖₁ (callers may fall back to another method when it is
 * not at rounding level; Infinity when a cluster is too large). Inputs are
 * not modified.
 */
export function tridiagonalInverseIteration(
  d: Float64Array,
  e: Float64Array,
  n: number,
  lambdas: ArrayLike<number>,
): { vectors: Float64Array; residual: number } {
  const k = lambdas.length;
  const X = new Float64Array(n * k);
  if (n === 0 || k === 0) return { vectors: X, residual: 0 };
  // ‖T‖₁
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const s = Math.abs(d[i] as number) + (i > 0 ? Math.abs(e[i - 1] as number) : 0) + (i < n - 1 ? Math.abs(e[i] as number) : 0);
    norm = Math.max(norm, s);
  }
  if (norm === 0) {
    // T = 0: unit vectors.
    for (let j = 0; j < k; j++) X[Math.min(j, n - 1) * k + j] = 1;
    return { vectors: X, residual: 0 };
  }
  if (n === 1) {
    for (let j = 0; j < k; j++) X[j] = 1;
    return { vectors: X, residual: 0 };
  }
  const ortol = ORTOL * norm;
  const pertol = 10 * EPS * norm;
  // LU of T − λI with partial pivoting (dgttrf): rows i, i+1 may swap.
  const dl = new Float64Array(n); // multipliers l_i (row i+1 ← row i+1 − l_i row i)
  const u0 = new Float64Array(n); // U diagonal
  const u1 = new Float64Array(n); // U first superdiagonal
  const u2 = new Float64Array(n); // U second superdiagonal (from swaps)
  const swap = new Uint8Array(n);
  const x = new Float64Array(n);
  let seed = 0x9e3779b9;
  const random = (): number => {
    // xorshift32 in [−1, 1)
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2147483648 - 1;
  };
  let clusterStart = 0;
  let previous = -Infinity;
  let worst = 0;
  for (let j = 0; j < k; j++) {
    let lambda = lambdas[j] as number;
    if (j > 0 && lambda - (lambdas[j - 1] as number) > ortol) clusterStart = j;
    if (j - clusterStart >= MAX_CLUSTER) return { vectors: X, residual: Infinity };
    // Separate (almost) equal eigenvalues so that the solves differ.
    if (lambda - previous < pertol) lambda = previous + pertol;
    previous = lambda;
    // Factor T − λI.
    let diag = (d[0] as number) - lambda;
    let sup = e[0] as number;
    for (let i = 0; i < n - 1; i++) {
      const sub = e[i] as number;
      const nextDiag = (d[i + 1] as number) - lambda;
      const nextSup = i + 1 < n - 1 ? (e[i + 1] as number) : 0;
      if (Math.abs(diag) >= Math.abs(sub)) {
        // No swap: pivot diag.
        swap[i] = 0;
        const piv = diag === 0 ? pertol : diag;
        const l = sub / piv;
        dl[i] = l;
        u0[i] = piv;
        u1[i] = sup;
        u2[i] = 0;
        diag = nextDiag - l * sup;
        sup = nextSup;
      } else {
        // Swap rows i and i+1: pivot sub.
        swap[i] = 1;
        const l = diag / sub;
        dl[i] = l;
        u0[i] = sub;
        u1[i] = nextDiag;
        u2[i] = nextSup;
        diag = sup - l * nextDiag;
        sup = -l * nextSup;
      }
    }
    u0[n - 1] = diag === 0 ? pertol : diag;
    // Start vector.
    for (let i = 0; i < n; i++) x[i] = random();
    for (let it = 0; it <= ITERATIONS; it++) {
      // Scale b like dstein so that the solution does not overflow.
      let bsum = 0;
      for (let i = 0; i < n; i++) bsum += Math.abs(x[i] as number);
      const scl = (n * norm * Math.max(EPS, Math.abs(u0[n - 1] as number))) / bsum;
      for (let i = 0; i < n; i++) x[i] = (x[i] as number) * scl;
      // Solve L (with the row swaps) then U.
      for (let i = 0; i < n - 1; i++) {
        if (swap[i] === 1) {
          const t = x[i] as number;
          x[i] = x[i + 1] as number;
          x[i + 1] = t - (dl[i] as number) * (x[i] as number);
        } else x[i + 1] = (x[i + 1] as number) - (dl[i] as number) * (x[i] as number);
      }
      x[n - 1] = (x[n - 1] as number) / (u0[n - 1] as number);
      x[n - 2] = ((x[n - 2] as number) - (u1[n - 2] as number) * (x[n - 1] as number)) / (u0[n - 2] as number);
      for (let i = n - 3; i >= 0; i--) {
        x[i] = ((x[i] as number) - (u1[i] as number) * (x[i + 1] as number) - (u2[i] as number) * (x[i + 2] as number)) / (u0[i] as number);
      }
      // Re-orthogonalise against the cluster's vectors (twice is enough, "twice is enough").
      for (let pass = 0; pass < (j > clusterStart ? 2 : 0); pass++) {
        for (let q = clusterStart; q < j; q++) {
          let s = 0;
          for (let i = 0; i < n; i++) s += (x[i] as number) * (X[i * k + q] as number);
          for (let i = 0; i < n; i++) x[i] = (x[i] as number) - s * (X[i * k + q] as number);
        }
      }
      let nrm = 0;
      for (let i = 0; i < n; i++) nrm = Math.max(nrm, Math.abs(x[i] as number));
      let ss = 0;
      for (let i = 0; i < n; i++) ss += ((x[i] as number) / nrm) ** 2;
      const inv = 1 / (nrm * Math.sqrt(ss));
      for (let i = 0; i < n; i++) x[i] = (x[i] as number) * inv;
    }
    // Residual ‖T x − λ x‖ (the unperturbed λ).
    const lam = lambdas[j] as number;
    let r2 = 0;
    for (let i = 0; i < n; i++) {
      let t = ((d[i] as number) - lam) * (x[i] as number);
      if (i > 0) t += (e[i - 1] as number) * (x[i - 1] as number);
      if (i < n - 1) t += (e[i] as number) * (x[i + 1] as number);
      r2 += t * t;
    }
    worst = Math.max(worst, Math.sqrt(r2) / norm);
    for (let i = 0; i < n; i++) X[i * k + j] = x[i] as number;
  }
  return { vectors: X, residual: worst };
}
