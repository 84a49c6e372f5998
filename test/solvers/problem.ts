/**
 * A small curvature problem shared by the solver tests: the GGN (PSD) and
 * Hessian (indefinite) of a tanh MLP's mean cross-entropy over 40 points
 * (D = 92), their explicit matrices (toDense; the operators are checked
 * against autodiff in test/operators/curvature.test.ts) and float64 spectra.
 * References solve the dense systems in float64 (Gaussian elimination).
 */
import type * as tf from '@tensorflow/tfjs';
import { extend } from '../../src/engine/extend';
import { eigh } from '../../src/linalg/eigh';
import { ggnOperator, hessianOperator } from '../../src/operators/index';
import { buildMlp, classTargets, randomTensor, type MlpSpec } from '../operators/reference';

export function curvatureProblem() {
  const spec: MlpSpec = { inputs: 6, units: [8, 4], activation: 'tanh', loss: 'softmaxCrossEntropy', reduction: 'mean' };
  const model = buildMlp(spec, 1);
  const ext = extend(model, { loss: spec.loss, reduction: spec.reduction });
  const x = randomTensor([40, 6], 3) as tf.Tensor2D;
  const y = classTargets(40, 4, 5);
  const data = { x, y, batchSize: 16 };
  const ggn = ggnOperator(ext, data);
  const hessian = hessianOperator(ext, data);
  const D = ggn.size;
  const G = ggn.toDense();
  const H = hessian.toDense();
  const ggnEig = eigh(G, D);
  const hessEig = eigh(H, D);
  const top = ggnEig.values[D - 1] as number;
  return { model, ext, x, y, data, ggn, hessian, D, G, H, ggnEig, hessEig, top, lambda: 0.1 * top };
}
