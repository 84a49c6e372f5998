/**
 * The shared Gram-space machinery (hooks/gramSpace.ts) outside the engine's
 * own `tf.tidy`: a step driven module by module (as the training plugin does,
 * `keepTensors: true`) must not leave any intermediate tensor behind, since no
 * enclosing scope would free it; and the hooks refuse losses without the
 * square-root factor they need.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { DirectionalDampedNewton } from '../../hooks/directionalDampedNewton';
import { DirectionalDerivatives } from '../../hooks/directionalDerivatives';
import { Eigh } from '../../hooks/eigh';
import { Eigvalsh } from '../../hooks/eigvalsh';
import { GramMatrix } from '../../hooks/gramMatrix';
import { groupsFull, groupsPerLayer, groupsPerParam, topK } from '../../hooks/groups';
import { chooseKernelGramRoute } from '../../hooks/gramProducts';
import type { DirectionalDerivativesResult } from '../../hooks/directionalDerivatives';
import type { DirectionalDampedNewtonResult } from '../../hooks/directionalDampedNewton';
import { makeTargets, smallMlp } from '../helpers/ggnBruteForce';
import type { LossDerivatives } from '../../src/derivatives/losses/types';

describe('GramSpaceHook', () => {
  it('no intermediate tensors survive a step driven without an enclosing tidy', () => {
    const model = smallMlp(4, 5, 3, 'tanh', 2);
    const x = tf.randomNormal([6, 4], 0, 1, 'float32', 3);
    const y = makeTargets('softmaxCrossEntropy', 6, 3, 1);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const hooks = [
      new GramMatrix({ groups: groupsFull(ext), subsampling: [0, 2] }),
      new Eigvalsh({ groups: groupsPerLayer(ext) }),
      new Eigh({ groups: groupsPerParam(ext) }),
      new DirectionalDerivatives({ groups: groupsPerLayer(ext), evecs: true, subsamplingGrad: [1, 4] }),
      new DirectionalDampedNewton({ groups: groupsFull(ext), mcSamplesGgn: 1, seed: 4, evecs: true }),
    ];
    const run = () => {
      const step = ext.createStep(6, { hooks, keepTensors: true });
      try {
        let h: tf.Tensor = x;
        for (let i = 0; i < ext.modules.length; i++) h = step.forwardModule(i, h);
        step.beginLoss(h, y);
        for (let i = ext.modules.length - 1; i >= 0; i--) step.backwardModule(i);
      } finally {
        step.disposeIntermediates();
      }
      const out = step.out;
      expect(out.groupResults.Eigh?.length).toBe(4);
      tf.dispose([out.grads as unknown as tf.TensorContainer, out.groupResults as unknown as tf.TensorContainer, out.results as unknown as tf.TensorContainer]);
    };
    run();
    const n0 = tf.memory().numTensors;
    run();
    run();
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('conv kernels with the explicit Gram route: the joint [D; G] Gram (same samples) equals separate Gram and cross products', () => {
    // T = 36 patches, I = 18, O = 3, V = 3 (C = 4, reduced), n = 5: the explicit route (checked below).
    // Tolerance: the same float32 products summed in two orders: 1e-5 relative to the largest entry.
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, padding: 'same', activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed: 1 }) }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 4, kernelInitializer: tf.initializers.glorotNormal({ seed: 2 }) }),
      ],
    });
    expect(chooseKernelGramRoute(3, 5, 3, 5, 36, 18, 3, true)).toBe('explicit');
    const x = tf.randomNormal([5, 6, 6, 2], 0, 1, 'float32', 3);
    const y = makeTargets('softmaxCrossEntropy', 5, 4, 2);
    const ext = extend(model, { loss: 'softmaxCrossEntropy' });
    const perm = [3, 0, 4, 1, 2];
    const groups = groupsPerLayer(ext, { criterion: topK(3) });
    // All gradient samples (same tensors as the curvature samples: joint route) vs the same samples permuted (separate cross route).
    const joint = new DirectionalDerivatives({ name: 'joint', groups });
    const separate = new DirectionalDerivatives({ name: 'separate', groups, subsamplingGrad: perm });
    const stepJ = new DirectionalDampedNewton({ name: 'stepJ', groups });
    const stepS = new DirectionalDampedNewton({ name: 'stepS', groups, subsamplingGrad: perm });
    const r = ext.backward(x, y, { hooks: [joint, separate, stepJ, stepS] });
    const rel = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
      let e = 0;
      let m = 0;
      for (let i = 0; i < b.length; i++) {
        e = Math.max(e, Math.abs((a[i] as number) - (b[i] as number)));
        m = Math.max(m, Math.abs(b[i] as number));
      }
      return e / m;
    };
    groups.forEach((_, g) => {
      const a = r.groups(joint)[g] as DirectionalDerivativesResult;
      const b = r.groups(separate)[g] as DirectionalDerivativesResult;
      const ga = a.gammas.arraySync() as number[][];
      const gb = b.gammas.arraySync() as number[][];
      // Row i of the permuted result is sample perm[i].
      expect(rel(perm.flatMap((n) => ga[n] as number[]), gb.flat())).toBeLessThan(1e-5);
      expect(rel(a.lambdas.dataSync(), b.lambdas.dataSync())).toBeLessThan(1e-6);
      // The step uses mean_n γ_nk: invariant under the permutation.
      const sa = (r.groups(stepJ)[g] as DirectionalDampedNewtonResult).newtonStep.flatMap((t) => Array.from(t.dataSync()));
      const sb = (r.groups(stepS)[g] as DirectionalDampedNewtonResult).newtonStep.flatMap((t) => Array.from(t.dataSync()));
      expect(rel(sa, sb)).toBeLessThan(1e-5);
    });
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('a loss without the needed square-root factor is refused up front', () => {
    const model = smallMlp(3, 4, 2, 'tanh', 1);
    const base = extend(model, { loss: 'mse' }).loss;
    // The mse loss without its Monte-Carlo factor.
    const noMc = Object.assign(Object.create(base) as LossDerivatives, { sqrtHessianSampled: undefined });
    const ext = extend(model, { loss: noMc });
    const x = tf.randomNormal([3, 3], 0, 1, 'float32', 1);
    const y = tf.randomNormal([3, 2], 0, 1, 'float32', 2);
    expect(() => ext.backward(x, y, { hooks: [new Eigvalsh({ groups: groupsFull(ext), mcSamples: 1 })] })).toThrow(/sqrtHessianSampled/);
    tf.dispose([x, y]);
    model.dispose();
  });
});
