/**
 * ViViT conformance: the `vivit` quantity (FORMAT.md §6.4) for the `full`,
 * `per_layer` and `per_param` block structures, with the hooks Eigh (evals,
 * evecs) and DirectionalDampedNewton (gammas, lambdas, newton_step with
 * constant damping 1) run in one backward pass per structure, default
 * criterion (λ > 1e-4 · λ_max).
 *
 * Comparisons (errors relative to the reference's largest magnitude, FORMAT.md §8):
 *  - evals: both spectra sorted descending and zero-padded to one length,
 *    compared entrywise. Eigenvalues below ~1e-6 · λ_max are float32 noise
 *    (FORMAT.md §6.4) and compare with ~0 within the tolerance.
 *  - the number K of eigenvectors must equal the reference's exactly.
 *  - evecs per cluster of equal reference eigenvalues (gap < 1e-7 · λ_max):
 *    the distance between the spanned subspaces, max ‖e − P_ref e‖ both ways
 *    (singletons: |sin θ|, i.e. up to sign).
 *    Also the residual `‖GGN_ref e − λ e‖ / λ_max` with the fixture's float64
 *    `ggn` where present (gap-independent).
 *  - gammas: per cluster `Σ_k γ_nk²` for every n, and γ itself with the sign
 *    aligned to the reference eigenvector for singleton clusters.
 *  - lambdas: per cluster `Σ_k λ_nk` for every n.
 *  - newton_step: per parameter, directly (basis-independent).
 *
 * Tolerances: TOL_VIVIT = 1e-4 (FORMAT.md §8) for evals, the residual and the
 * Newton step (measured ≤ 5e-6 on every fixture). Eigenvector-derived
 * quantities (evecs, gammas, lambdas) are accurate to ~ε_G / relgap
 * (Davis–Kahan; ε_G the float32 Gram matrix's relative noise, relgap the
 * cluster's distance to the rest of the spectrum and to 0, over λ_max;
 * measured sin θ · relgap ≤ 1.5e-8 on every fixture, e.g. 2.6e-5 at relgap
 * 1.9e-4). They get tol_k = max(TOL_VIVIT, EPS_GRAM / relgap_k) with
 * EPS_GRAM = 2e-7 (a ×13 margin) and are reported scaled by TOL_VIVIT / tol_k,
 * so every printed error is judged against TOL_VIVIT; the note names the
 * worst comparison.
 */
import type * as tf from '@tensorflow/tfjs';
import { DirectionalDampedNewton, type DirectionalDampedNewtonResult } from '../../../hooks/directionalDampedNewton';
import { Eigh, type EighResult } from '../../../hooks/eigh';
import type { VivitGroup } from '../../../hooks/groups';
import type { LoadedFixture, T } from '../fixture';
import { maxRelErr, sameShape } from '../compare';
import { fixtureQuantity, hasQuantity, judge, type Outcome, type QuantityCheck } from './types';

export const TOL_VIVIT = 1e-4;
export const EPS_GRAM = 2e-7;
/** Reference eigenvalues closer than this (relative to λ_max) form one cluster (FORMAT.md: evecsUnique). */
const CLUSTER_GAP = 1e-7;

type VivitResult = {
  evals: T;
  evecs: T;
  gammas: T;
  lambdas: T;
  newton_step: T[];
  evecsUnique: boolean;
  minRelGap: number;
};
/** [what, error] */
type Err = [string, number];
type VivitBlocks = { blocks: 'full' | 'per_layer' | 'per_param'; groups: number[][]; results: VivitResult[] };

/** Rows of per-parameter tensors `[K, ...p]` concatenated into K group vectors. */
function rowsOf(parts: readonly tf.Tensor[], K: number): Float64Array[] {
  const rows: number[][] = Array.from({ length: K }, () => []);
  for (const t of parts) {
    const d = t.dataSync();
    const per = K === 0 ? 0 : t.size / K;
    for (let k = 0; k < K; k++) for (let i = 0; i < per; i++) (rows[k] as number[]).push(d[k * per + i] as number);
  }
  return rows.map((r) => Float64Array.from(r));
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/** Clusters of the reference's selected eigenvalues (indices 0..K−1) and each cluster's relative gap. */
function clusters(evals: readonly number[], K: number): { members: number[]; relgap: number }[] {
  const E = evals.length;
  const max = Math.max(...evals.map(Math.abs));
  const sel = evals.slice(E - K);
  const out: { members: number[]; relgap: number }[] = [];
  for (let k = 0; k < K; k++) {
    const last = out[out.length - 1];
    if (last && Math.abs((sel[k] as number) - (sel[k - 1] as number)) < CLUSTER_GAP * max) last.members.push(k);
    else out.push({ members: [k], relgap: 0 });
  }
  for (const c of out) {
    const inside = new Set(c.members.map((k) => E - K + k));
    let gap = Math.min(...c.members.map((k) => Math.abs(sel[k] as number))); // distance to the zero eigenvalues
    evals.forEach((l, j) => {
      if (inside.has(j)) return;
      for (const k of c.members) gap = Math.min(gap, Math.abs(l - (sel[k] as number)));
    });
    c.relgap = gap / max;
  }
  return out;
}

/**
 * Distance between the spans of two orthonormal sets: the largest
 * `‖a_i − P_b a_i‖₂` (and vice versa), formed entrywise (the closed form
 * `√(1 − Σ⟨a, b⟩²)` would lose half the digits to cancellation). For single
 * vectors this is |sin θ|, i.e. the comparison is up to sign.
 */
function spanDistance(a: readonly Float64Array[], b: readonly Float64Array[]): number {
  const one = (x: readonly Float64Array[], y: readonly Float64Array[]) => {
    let worst = 0;
    for (const v of x) {
      const r = Float64Array.from(v);
      for (const w of y) {
        const c = dot(v, w);
        for (let i = 0; i < r.length; i++) r[i] -= c * (w[i] as number);
      }
      worst = Math.max(worst, Math.sqrt(dot(r, r)));
    }
    return worst;
  };
  return Math.max(one(a, b), one(b, a));
}

function compareGroup(
  lf: LoadedFixture,
  ref: VivitResult,
  eigh: EighResult,
  newton: DirectionalDampedNewtonResult,
  groupParams: number[],
  errs: Err[],
): string | undefined {
  const push = (what: string, v: number) => errs.push([what, v]);
  const refEvals = ref.evals.data;
  const max = Math.max(...refEvals.map(Math.abs));
  // evals: descending, zero-padded.
  const a = [...eigh.evals].sort((x, y) => y - x);
  const b = [...refEvals].sort((x, y) => y - x);
  const L = Math.max(a.length, b.length);
  let ev = 0;
  for (let i = 0; i < L; i++) ev = Math.max(ev, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  push('evals', ev / max);
  const K = ref.evecs.shape[0] as number;
  if (eigh.selected.length !== K) return `selected ${eigh.selected.length} eigenvectors, reference has ${K}`;
  const N = lf.fx.inputs.shape[0] as number;
  if (!sameShape(newton.gammas.shape, ref.gammas.shape)) return `gammas [${newton.gammas.shape}] vs reference [${ref.gammas.shape}]`;
  const E = rowsOf(eigh.evecs, K);
  const Dg = ref.evecs.shape[1] as number;
  const R = Array.from({ length: K }, (_, k) => Float64Array.from(ref.evecs.data.slice(k * Dg, (k + 1) * Dg)));
  if ((E[0]?.length ?? Dg) !== Dg) return `eigenvectors have ${E[0]?.length} entries, reference ${Dg}`;
  // Residual with the float64 GGN (gap-independent), where the fixture has it.
  const ggn = lf.fx.quantities.ggn as T | undefined;
  if (ggn !== undefined) {
    const D = ggn.shape[0] as number;
    const idx: number[] = [];
    for (const p of groupParams) {
      const info = lf.params[p];
      if (info === undefined) return `unknown parameter ${p}`;
      for (let i = 0; i < info.size; i++) idx.push(info.offset + i);
    }
    E.forEach((e, k) => {
      const lam = eigh.evals[eigh.selected[k] as number] as number;
      let r2 = 0;
      idx.forEach((i, ii) => {
        let s = 0;
        idx.forEach((j, jj) => (s += (ggn.data[i * D + j] as number) * (e[jj] as number)));
        r2 += (s - lam * (e[ii] as number)) ** 2;
      });
      push(`residual of evec ${k}`, Math.sqrt(r2) / max);
    });
  }
  const gOurs = newton.gammas.arraySync() as number[][];
  const lOurs = newton.lambdas.arraySync() as number[][];
  const gRef = (n: number, k: number) => ref.gammas.data[n * K + k] as number;
  const lRef = (n: number, k: number) => ref.lambdas.data[n * K + k] as number;
  const gMax = Math.max(1e-300, ...ref.gammas.data.map((v) => v * v));
  const lMax = Math.max(1e-300, ...ref.lambdas.data.map(Math.abs));
  const gAbsMax = Math.sqrt(gMax);
  for (const c of clusters(refEvals, K)) {
    const scale = TOL_VIVIT / Math.max(TOL_VIVIT, EPS_GRAM / c.relgap);
    const cl = `cluster [${c.members}] (relgap ${c.relgap.toExponential(1)})`;
    push(`evecs of ${cl}`, scale * spanDistance(c.members.map((k) => E[k] as Float64Array), c.members.map((k) => R[k] as Float64Array)));
    for (let n = 0; n < N; n++) {
      let g2 = 0;
      let g2r = 0;
      let ls = 0;
      let lsr = 0;
      for (const k of c.members) {
        g2 += ((gOurs[n] as number[])[k] as number) ** 2;
        g2r += gRef(n, k) ** 2;
        ls += (lOurs[n] as number[])[k] as number;
        lsr += lRef(n, k);
      }
      push(`Σγ² of ${cl}`, (scale * Math.abs(g2 - g2r)) / gMax);
      push(`Σλ of ${cl}`, (scale * Math.abs(ls - lsr)) / lMax);
    }
    if (c.members.length === 1) {
      const k = c.members[0] as number;
      const sign = Math.sign(dot(E[k] as Float64Array, R[k] as Float64Array)) || 1;
      for (let n = 0; n < N; n++) push(`γ of ${cl}`, (scale * Math.abs(sign * ((gOurs[n] as number[])[k] as number) - gRef(n, k))) / gAbsMax);
    }
  }
  if (newton.newtonStep.length !== ref.newton_step.length) return `Newton step has ${newton.newtonStep.length} tensors, reference ${ref.newton_step.length}`;
  const flatOurs = newton.newtonStep.flatMap((t) => Array.from(t.dataSync()));
  const flatRef = ref.newton_step.flatMap((t) => t.data);
  for (let i = 0; i < newton.newtonStep.length; i++) {
    const t = newton.newtonStep[i] as tf.Tensor;
    if (!sameShape(t.shape, (ref.newton_step[i] as T).shape)) return `Newton step [${t.shape}] vs reference [${(ref.newton_step[i] as T).shape}]`;
  }
  push('newton_step', maxRelErr(flatOurs, flatRef));
  return undefined;
}

export const vivitChecks: QuantityCheck[] = [
  {
    name: 'vivit',
    present: hasQuantity('vivit'),
    run(lf: LoadedFixture): Outcome {
      const structures = fixtureQuantity<VivitBlocks[]>(lf, 'vivit');
      const errs: Err[] = [];
      for (const s of structures) {
        const groups: VivitGroup[] = s.groups.map((g) => ({ params: g.map((i) => (lf.params[i] as { name: string }).name) }));
        const eigh = new Eigh({ name: `Eigh/${s.blocks}`, groups, warnSmallEigvals: 0 });
        const newton = new DirectionalDampedNewton({ name: `Newton/${s.blocks}`, groups, warnSmallEigvals: 0 });
        const r = lf.ext.backward(lf.x, lf.y, { hooks: [eigh, newton], training: false });
        try {
          let mark = errs.length;
          for (let g = 0; g < s.groups.length; g++) {
            const problem = compareGroup(
              lf,
              s.results[g] as VivitResult,
              r.groups(eigh)[g] as EighResult,
              r.groups(newton)[g] as DirectionalDampedNewtonResult,
              s.groups[g] as number[],
              errs,
            );
            for (let i = mark; i < errs.length; i++) (errs[i] as Err)[0] = `${s.blocks} group ${g}: ${(errs[i] as Err)[0]}`;
            mark = errs.length;
            if (problem !== undefined) return { status: 'fail', note: `${s.blocks} group ${g}: ${problem}` };
          }
        } finally {
          r.dispose();
        }
      }
      const worst = errs.reduce<Err>((w, e) => (!(e[1] <= w[1]) ? e : w), ['', -1]);
      return judge(errs.map((e) => e[1]), TOL_VIVIT, `worst: ${worst[0]}`);
    },
  },
];
