/**
 * Dense derivatives vs TF.js autodiff (matMul gradients exist on wasm),
 * central differences (affine: ε = 1 exact up to rounding) and per-sample
 * autodiff parameter gradients, for 2-D inputs and inputs with extra
 * position axes ([N, T, in]: T > 1 patches in the weight products).
 * Tolerance 1e-5: float32 sums of ≤ 7 products.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { DenseDerivatives } from '../../src/derivatives/dense';
import { modulesForLayer } from '../../src/derivatives/index';
import type { LinearModuleDerivatives } from '../../src/derivatives/types';
import { autodiffVjp, checkModule, checkParamProducts, disposeRecord, expectClose, expectNoLeak, type ParamFn } from './helpers';

/** The definition y = x·W + b on the last axis. */
const definition: ParamFn = (x, kernel, bias) => {
  const [inF, outF] = kernel.shape as [number, number];
  const y = tf.reshape(tf.matMul(tf.reshape(x, [-1, inF]), kernel as tf.Tensor2D), [...x.shape.slice(0, -1), outF]);
  return bias ? tf.add(y, bias) : y;
};

interface Case {
  name: string;
  inShape: number[];
  units: number;
  useBias: boolean;
  N: number;
  V: number;
  activation?: 'tanh';
}

const CASES: Case[] = [
  { name: '2-D input with bias', inShape: [5], units: 3, useBias: true, N: 4, V: 3 },
  { name: 'no bias, N = 1', inShape: [4], units: 2, useBias: false, N: 1, V: 2 },
  { name: '3-D input [N, T = 3, in] (T > 1 positions)', inShape: [3, 4], units: 3, useBias: true, N: 2, V: 2 },
  { name: 'fused tanh, V = 1', inShape: [6], units: 4, useBias: true, N: 3, V: 1, activation: 'tanh' },
  // jacTMatProd orientation: few rows through a wide layer take (W · matᵀ)ᵀ, the cases above mat · Wᵀ.
  { name: 'wide layer, few stack rows (W·matᵀ orientation)', inShape: [20], units: 16, useBias: true, N: 2, V: 2 },
];

describe('Dense derivatives', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const layer = tf.layers.dense({
        inputShape: c.inShape,
        units: c.units,
        useBias: c.useBias,
        activation: c.activation ?? 'linear',
        biasInitializer: 'randomNormal',
      });
      tf.sequential({ layers: [layer] });
      const modules = modulesForLayer(layer);
      expect(modules.map((m) => m.kind)).toEqual(c.activation ? ['Dense', `Activation(${c.activation})`] : ['Dense']);
      const dense = modules[0] as LinearModuleDerivatives;
      const [kernel, bias] = layer.getWeights() as [tf.Tensor, tf.Tensor | undefined];
      expect(dense.kernelShape).toEqual(kernel.shape);
      expect(dense.hasBias).toBe(c.useBias);
      const x = tf.randomNormal([c.N, ...c.inShape], 0, 1, 'float32', 1);
      expectNoLeak(() => {
        tf.tidy(() => {
          let h: tf.Tensor = x;
          const recs = modules.map((m) => {
            const r = m.forward(h, { training: false });
            h = r.output;
            return r;
          });
          expectClose(h, layer.apply(x) as tf.Tensor, 1e-6, 'forward chain vs layer.apply');
          recs.forEach(disposeRecord);
        });
        const f = (z: tf.Tensor) => definition(z, kernel, bias);
        checkModule(dense, x, f, { V: c.V, tol: 1e-5, eps: 1 });
        const rec = dense.forward(x, { training: false });
        tf.tidy(() => {
          const D = tf.randomNormal([c.V, ...rec.output.shape], 0, 1, 'float32', 2);
          checkParamProducts(dense, rec, definition, kernel, bias, D, 1e-5);
          const X = dense.unfoldInput(rec);
          const T = x.size / (c.N * (c.inShape.at(-1) as number));
          expect(X.shape).toEqual([c.N, T, c.inShape.at(-1)]);
          expect(dense.foldOutput(D).shape).toEqual([c.V, c.N, T, c.units]);
          expectClose(dense.unfoldOutput(dense.foldOutput(D), rec.output.shape.slice(1)), D, 0, 'fold/unfold');
          const dK = tf.randomNormal([c.V, ...kernel.shape], 0, 1, 'float32', 3);
          const wantK = tf.stack(tf.unstack(dK).map((d) => tf.div(tf.sub(definition(x, tf.add(kernel, d), bias), definition(x, tf.sub(kernel, d), bias)), 2)));
          expectClose(dense.paramJacMatProd(rec, 'kernel', dK), wantK, 1e-5, 'paramJacMatProd kernel');
          if (bias) {
            const db = tf.randomNormal([c.V, c.units], 0, 1, 'float32', 4);
            const wantB = tf.stack(tf.unstack(db).map((d) => tf.div(tf.sub(definition(x, kernel, tf.add(bias, d)), definition(x, kernel, tf.sub(bias, d))), 2)));
            expectClose(dense.paramJacMatProd(rec, 'bias', db), wantB, 1e-5, 'paramJacMatProd bias');
          }
          const K2 = tf.randomNormal(kernel.shape, 0, 1, 'float32', 5);
          const mat = tf.randomNormal([c.V, ...rec.output.shape], 0, 1, 'float32', 6);
          expectClose(
            dense.jacTMatProdWithKernel(rec, mat, K2),
            autodiffVjp((z) => definition(z, K2, undefined), x, mat),
            1e-5,
            'jacTMatProdWithKernel',
          );
        });
        disposeRecord(rec);
      });
      x.dispose();
      layer.dispose();
    });
  }

  it('is constructed from variables and exposes them as params', () => {
    const k = tf.variable(tf.zeros([3, 2]));
    const d = new DenseDerivatives(k, undefined);
    expect(d.params.map((p) => p.role)).toEqual(['kernel']);
    expect(d.outputShape([4, 3])).toEqual([4, 2]);
    k.dispose();
  });
});
