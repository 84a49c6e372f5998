/**
 * Shared checks for module derivatives against independent references:
 * TF.js autodiff (tf.grad of ⟨mat_v, f(x)⟩), finite differences, adjoint
 * identities, brute-force loops. Tolerances: relative to the reference's
 * largest magnitude (float32 sums of ≤ a few hundred terms give ~1e-6).
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { maxRelErr } from '../conformance/compare';
import { expectNoLeak } from '../helpers/leaks';
import type { ForwardRecord, LinearModuleDerivatives, ModuleDerivatives, ParamRole } from '../../src/derivatives/types';
import { recordTensors } from '../../src/derivatives/record';
import { paramProduct, type ProductKind } from '../../src/engine/paramProducts';

export type Num = ArrayLike<number>;

/** A MaxPooling2D / AveragePooling2D test case: input `[N, ...inShape]`, V stacked vectors. */
export interface PoolingCase {
  name: string;
  inShape: [number, number, number];
  poolSize: [number, number];
  strides: [number, number];
  padding: 'valid' | 'same';
  N: number;
  V: number;
}

export { maxRelErr };

/** Expect equal shapes and a relative error below tol. */
export function expectClose(a: tf.Tensor, b: tf.Tensor | Num, tol: number, what = ''): void {
  if (b instanceof tf.Tensor) expect(a.shape, `${what} shape`).toEqual(b.shape);
  const e = maxRelErr(a, b);
  expect(e, `${what} maxRelErr ${e}`).toBeLessThanOrEqual(tol);
}

export { expectNoLeak };

/** A forward record's own tensors (not its input). */
export function disposeRecord(rec: ForwardRecord): void {
  tf.dispose(recordTensors(rec).filter((t) => t !== rec.input));
}

/** Autodiff VJPs: `[V, N, ...in]`, entry v = ∇ₓ ⟨mat[v], f(x)⟩. */
export function autodiffVjp(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, mat: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const V = mat.shape[0] as number;
    const rows: tf.Tensor[] = [];
    for (let v = 0; v < V; v++) {
      const mv = tf.squeeze(tf.slice(mat, [v], [1]), [0]);
      rows.push(tf.grad((z: tf.Tensor) => tf.sum(tf.mul(mv, f(z))))(x));
    }
    return tf.stack(rows);
  });
}

/** Central difference `(f(x + εv) − f(x − εv)) / 2ε` per stack entry `[V, N, ...out]`. */
export function centralDifference(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, mat: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const V = mat.shape[0] as number;
    const rows: tf.Tensor[] = [];
    for (let v = 0; v < V; v++) {
      const d = tf.mul(tf.squeeze(tf.slice(mat, [v], [1]), [0]), eps);
      rows.push(tf.div(tf.sub(f(tf.add(x, d)), f(tf.sub(x, d))), 2 * eps));
    }
    return tf.stack(rows);
  });
}

/**
 * Adjoint identity per (v, n): ⟨u, J v⟩ = ⟨Jᵀ u, v⟩ for random u (output stack) and
 * v (input stack). Returns the largest |difference| relative to Σ|u ⊙ Jv|.
 */
export function adjointGap(m: ModuleDerivatives, rec: ForwardRecord, V: number, seed = 7): number {
  return tf.tidy(() => {
    const u = tf.randomNormal([V, ...rec.output.shape], 0, 1, 'float32', seed);
    const v = tf.randomNormal([V, ...rec.input.shape], 0, 1, 'float32', seed + 1);
    const Jv = m.jacMatProd(rec, v);
    const Jtu = m.jacTMatProd(rec, u);
    const sumTail = (t: tf.Tensor) => tf.sum(tf.reshape(t, [V, rec.input.shape[0] as number, -1]), 2);
    const a = sumTail(tf.mul(u, Jv));
    const b = sumTail(tf.mul(Jtu, v));
    const scale = tf.add(sumTail(tf.abs(tf.mul(u, Jv))), 1e-30);
    return tf.max(tf.div(tf.abs(tf.sub(a, b)), scale)).dataSync()[0] as number;
  });
}

/**
 * Standard checks of a module on one input: forward vs reference, jacTMatProd vs
 * autodiff VJPs of the reference, jacMatProd vs central differences (eps) of
 * the reference, the adjoint identity, no leaks. `jvpTol` defaults to `tol`.
 */
export function checkModule(
  m: ModuleDerivatives,
  x: tf.Tensor,
  reference: (x: tf.Tensor) => tf.Tensor,
  opts: { V: number; tol: number; eps: number; jvpTol?: number; seed?: number },
): void {
  expectNoLeak(() => {
    const rec = m.forward(x, { training: false });
    expect(rec.output).not.toBe(x);
    tf.tidy(() => {
      const ref = reference(x);
      expectClose(rec.output, ref, opts.tol, `${m.kind} forward`);
      expect(m.outputShape(x.shape.slice(1))).toEqual(ref.shape.slice(1));
      const mat = tf.randomNormal([opts.V, ...rec.output.shape], 0, 1, 'float32', opts.seed ?? 1);
      expectClose(m.jacTMatProd(rec, mat), autodiffVjp(reference, x, mat), opts.tol, `${m.kind} jacTMatProd`);
      const vin = tf.randomUniform([opts.V, ...rec.input.shape], -1, 1, 'float32', (opts.seed ?? 1) + 1);
      expectClose(
        m.jacMatProd(rec, vin),
        centralDifference(reference, x, vin, opts.eps),
        opts.jvpTol ?? opts.tol,
        `${m.kind} jacMatProd`,
      );
      expect(adjointGap(m, rec, opts.V)).toBeLessThan(1e-5);
    });
    disposeRecord(rec);
  });
}

/** Per-sample parameter gradients by autodiff: `[V][N]` of `{ kernel, bias }` arrays. */
export type ParamFn = (x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | undefined) => tf.Tensor;

/**
 * Reference per-sample parameter products `∇_p ⟨D[v, n], f(x_n; W, b)⟩` by autodiff,
 * one sample at a time: `{ kernel: Float64Array[V·N], bias?: ... }`.
 */
export function perSampleParamGrads(
  f: ParamFn,
  x: tf.Tensor,
  kernel: tf.Tensor,
  bias: tf.Tensor | undefined,
  D: tf.Tensor,
): { kernel: Float64Array[]; bias: Float64Array[] } {
  const [V, N] = D.shape as [number, number];
  const out = { kernel: [] as Float64Array[], bias: [] as Float64Array[] };
  for (let v = 0; v < V; v++) {
    for (let n = 0; n < N; n++) {
      tf.tidy(() => {
        const xn = tf.slice(x, [n], [1]);
        const dvn = tf.slice(D, [v, n], [1, 1]).reshape([1, ...D.shape.slice(2)]);
        const params = bias ? [kernel, bias] : [kernel];
        const grads = tf.grads((...ps: tf.Tensor[]) => tf.sum(tf.mul(dvn, f(xn, ps[0] as tf.Tensor, ps[1]))))(params);
        out.kernel.push(Float64Array.from((grads[0] as tf.Tensor).dataSync()));
        if (bias) out.bias.push(Float64Array.from((grads[1] as tf.Tensor).dataSync()));
      });
    }
  }
  return out;
}

/**
 * Check the five parameter products of the engine (`paramProduct`, which uses the
 * module's unfoldInput/foldOutput and weightProducts) against per-sample autodiff.
 */
export function checkParamProducts(
  m: LinearModuleDerivatives,
  rec: ForwardRecord,
  f: ParamFn,
  kernel: tf.Tensor,
  bias: tf.Tensor | undefined,
  D: tf.Tensor,
  tol: number,
): void {
  const [V, N] = D.shape as [number, number];
  const ref = perSampleParamGrads(f, rec.input, kernel, bias, D);
  const roles: [ParamRole, Float64Array[], readonly number[]][] = [['kernel', ref.kernel, kernel.shape]];
  if (bias) roles.push(['bias', ref.bias, bias.shape]);
  for (const [role, g, shape] of roles) {
    const size = shape.reduce((a, b) => a * b, 1);
    const at = (v: number, n: number) => g[v * N + n] as Float64Array;
    const perSample = new Float64Array(V * N * size);
    const summed = new Float64Array(V * size);
    const sumSq = new Float64Array(size);
    const perSampleSq = new Float64Array(N * size);
    const norms = new Float64Array(V * N);
    for (let v = 0; v < V; v++) {
      for (let n = 0; n < N; n++) {
        const gv = at(v, n);
        for (let i = 0; i < size; i++) {
          const e = gv[i] as number;
          perSample[(v * N + n) * size + i] = e;
          summed[v * size + i] += e;
          sumSq[i] += e * e;
          perSampleSq[n * size + i] += e * e;
          norms[v * N + n] += e * e;
        }
      }
    }
    const X = role === 'kernel' ? m.unfoldInput(rec) : undefined;
    const expected: Record<ProductKind, [Float64Array, number[]]> = {
      perSample: [perSample, [V, N, ...shape]],
      summed: [summed, [V, ...shape]],
      sumSquared: [sumSq, [...shape]],
      perSampleSumSquared: [perSampleSq, [N, ...shape]],
      perSampleSquaredNorm: [norms, [V, N]],
    };
    for (const kind of Object.keys(expected) as ProductKind[]) {
      const [want, wantShape] = expected[kind];
      const got = paramProduct(kind, m, role, shape, X, D);
      expect(got.shape, `${role} ${kind} shape`).toEqual(wantShape);
      const e = maxRelErr(got, want);
      expect(e, `${role} ${kind} maxRelErr ${e}`).toBeLessThan(tol);
      got.dispose();
      // With the record: the module's own fast path where it has one (Conv2D's summed kernel
      // product), X made lazily only when needed.
      let made = 0;
      const lazyX = role === 'kernel' ? () => (made++, X as tf.Tensor3D) : undefined;
      const viaRec = paramProduct(kind, m, role, shape, lazyX, D, rec);
      expect(viaRec.shape, `${role} ${kind} (record) shape`).toEqual(wantShape);
      const eRec = maxRelErr(viaRec, want);
      expect(eRec, `${role} ${kind} (record) maxRelErr ${eRec}`).toBeLessThan(tol);
      const fast = role === 'kernel' && kind === 'summed' && m.summedKernelProduct !== undefined;
      expect(made, `${role} ${kind}: unfolded input made`).toBe(role === 'kernel' && !fast ? 1 : 0);
      viaRec.dispose();
    }
    X?.dispose();
  }
}

/** Run `fn` on another backend and return to the previous one. */
export async function onBackend<T>(name: string, fn: () => T): Promise<T> {
  const prev = tf.getBackend();
  await tf.setBackend(name);
  try {
    return fn();
  } finally {
    await tf.setBackend(prev);
  }
}
