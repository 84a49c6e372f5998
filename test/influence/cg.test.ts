/**
 * CgInfluence (CG, block CG, Jacobi- and Nyström-preconditioned CG, CG on
 * the normal equations for an indefinite Hessian) against DirectInfluence
 * (itself checked against explicit float64 matrices in direct.test.ts and
 * against the BackPACK fixtures in the conformance run).
 *
 * λ = 0.05·λ_max of the block (≤ 0.1·λ_max as the issue asks): the GGN part
 * dominates, and κ(M + λI) ≤ 21 for the PSD GGN, so CG to rtol 1e-7 has a
 * solution error ≤ κ·1e-7 ≈ 2e-6 plus float32 rounding; tolerance 1e-4
 * relative to the largest |influence| (measured ≤ 2e-6).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extend, type ExtendedModel } from '../../src/engine/extend';
import { CgInfluence, type CgInfluenceOptions } from '../../src/influence/cg';
import { DirectInfluence } from '../../src/influence/direct';
import type { CurvatureMode } from '../../src/influence/types';
import { jacobiEigen, makeProblem, maxRelErr, type Problem } from './reference';

const TOL = 1e-4;

let p: Problem;
let ext: ExtendedModel;
const spectra = new Map<string, Float64Array>();
const direct = new Map<string, Float32Array>();

function key(c: CurvatureMode, blocks: string): string {
  return `${c}/${blocks}`;
}

beforeAll(() => {
  p = makeProblem({ inputs: 4, hidden: 6, outputs: 3, loss: 'softmaxCrossEntropy', reduction: 'mean' }, 12, 4, 21);
  ext = extend(p.model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
  for (const c of ['ggn', 'hessian'] as const) {
    const d = new DirectInfluence(ext, { regularization: 0, curvature: c, progress: false });
    d.fit({ x: p.xTrain, y: p.yTrain });
    spectra.set(c, jacobiEigen(d.blockMatrix(0), d.size).values);
    d.dispose();
  }
});
afterAll(() => p.dispose());

function lambdaFor(c: CurvatureMode): number {
  const v = spectra.get(c) as Float64Array;
  return 0.05 * Math.max(...Array.from(v, Math.abs));
}

function directInfluence(c: CurvatureMode, lambda: number, blocks: 'full' | 'layer'): Float32Array {
  const k = `${key(c, blocks)}/${lambda}`;
  let r = direct.get(k);
  if (r === undefined) {
    const d = new DirectInfluence(ext, { regularization: lambda, curvature: c, blocks, progress: false });
    d.fit({ x: p.xTrain, y: p.yTrain });
    const S = d.influences(p.xTest, p.yTest);
    r = S.dataSync() as Float32Array;
    S.dispose();
    d.dispose();
    direct.set(k, r);
  }
  return r;
}

function cgInfluence(options: CgInfluenceOptions): { S: Float32Array; m: CgInfluence } {
  const m = new CgInfluence(ext, { progress: false, ...options });
  m.fit({ x: p.xTrain, y: p.yTrain });
  const S = m.influences(p.xTest, p.yTest);
  const out = S.dataSync() as Float32Array;
  S.dispose();
  return { S: out, m };
}

describe('CgInfluence vs DirectInfluence (tanh MLP 4-6-3, softmax CE, D = 51, 12 training points)', () => {
  const variants: [string, Partial<CgInfluenceOptions>][] = [
    ['cg', {}],
    ['blockCg', { solver: 'blockCg' }],
    ['cg + Nyström preconditioner (rank 10)', { preconditioner: 'nystrom', preconditionerRank: 10 }],
    ['cg + Jacobi preconditioner', { preconditioner: 'jacobi', hutchinsonSamples: 32 }],
  ];
  for (const blocks of ['full', 'layer'] as const) {
    for (const [name, extra] of variants) {
      it(`GGN ${blocks}: ${name}`, () => {
        const lambda = lambdaFor('ggn');
        const before = tf.memory().numTensors;
        const { S, m } = cgInfluence({ regularization: lambda, curvature: 'ggn', blocks, rtol: 1e-7, ...extra });
        expect(maxRelErr(S, directInfluence('ggn', lambda, blocks))).toBeLessThan(TOL);
        expect(m.lastSolves.every((s) => s.converged && !s.normalEquations)).toBe(true);
        m.dispose();
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }

  it('the Nyström preconditioner cuts the CG iterations', () => {
    const lambda = 0.001 * Math.max(...Array.from(spectra.get('ggn') as Float64Array));
    const plain = cgInfluence({ regularization: lambda, curvature: 'ggn', rtol: 1e-6 });
    const pre = cgInfluence({ regularization: lambda, curvature: 'ggn', rtol: 1e-6, preconditioner: 'nystrom', preconditionerRank: 30 });
    const it0 = plain.m.lastSolves[0]?.iterations as number;
    const it1 = pre.m.lastSolves[0]?.iterations as number;
    expect(it1).toBeLessThan(it0);
    expect(maxRelErr(pre.S, plain.S)).toBeLessThan(1e-3);
    plain.m.dispose();
    pre.m.dispose();
  });

  it('Hessian: CG where M + λI is positive definite, the normal equations where it is not', () => {
    const v = spectra.get('hessian') as Float64Array;
    const top = Math.max(...Array.from(v, Math.abs));
    const lmin = v[0] as number;
    // Positive definite: λ above −λ_min.
    const lamPd = Math.max(0.05 * top, -lmin + 0.05 * top);
    expect(lamPd).toBeLessThanOrEqual(0.1 * top + Math.max(0, -lmin));
    const pd = cgInfluence({ regularization: lamPd, curvature: 'hessian', rtol: 1e-7 });
    expect(maxRelErr(pd.S, directInfluence('hessian', lamPd, 'full'))).toBeLessThan(TOL);
    pd.m.dispose();
    // Indefinite: λ = 0.01·top below |λ_min| (checked), M + λI non-singular.
    expect(lmin).toBeLessThan(-0.02 * top);
    const lam = 0.01 * top;
    const warnings: string[] = [];
    const m = new CgInfluence(ext, { regularization: lam, curvature: 'hessian', rtol: 1e-8, maxIter: 2000, progress: false });
    m.on('warning', (w) => warnings.push(w.message));
    m.fit({ x: p.xTrain, y: p.yTrain });
    const S = m.influences(p.xTest, p.yTest);
    // Normal equations square κ: tolerance 1e-3 (κ(M + λI) ≈ 1e2 here; measured ~1e-5).
    expect(maxRelErr(S.dataSync(), directInfluence('hessian', lam, 'full'))).toBeLessThan(1e-3);
    expect(m.lastSolves[0]?.normalEquations).toBe(true);
    expect(warnings.some((w) => /not positive definite/.test(w))).toBe(true);
    S.dispose();
    m.dispose();
    // normalEquations: 'never' throws the solver's error, without leaking.
    const before = tf.memory().numTensors;
    const never = new CgInfluence(ext, { regularization: lam, curvature: 'hessian', normalEquations: 'never', progress: false });
    never.fit({ x: p.xTrain, y: p.yTrain });
    expect(() => never.influences(p.xTest, p.yTest)).toThrow(/not positive definite/);
    never.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad options clearly', () => {
    expect(() => new CgInfluence(ext, { regularization: -1 })).toThrow(/regularization must be a finite number ≥ 0, got -1/);
    expect(() => new CgInfluence(ext, { regularization: 0.1, solver: 'gmres' as never })).toThrow(/'solver' must be 'cg' or 'blockCg'/);
    expect(() => new CgInfluence(ext, { regularization: 0, preconditioner: 'nystrom' })).toThrow(/Nyström preconditioner needs regularization > 0/);
    expect(() => new CgInfluence(ext, { regularization: 0.1, preconditioner: 'nystrom', preconditionerRank: 1000 })).toThrow(/preconditionerRank 1000 is larger than the number of parameters/);
    expect(() => new CgInfluence(ext, { regularization: [0.1, 0.2], blocks: 'full' })).toThrow(/2 regularization values for 1 blocks/);
  });
});
