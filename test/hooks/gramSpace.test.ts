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
import { groupsFull, groupsPerLayer, groupsPerParam } from '../../hooks/groups';
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
