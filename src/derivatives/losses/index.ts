import type { LossDerivatives, LossName, Reduction } from './types';
import { LOSS_NAMES, REDUCTIONS } from './types';
import { MSELoss } from './mse';
import { SoftmaxCrossEntropyLoss } from './softmaxCrossEntropy';
import { SigmoidCrossEntropyLoss } from './sigmoidCrossEntropy';

export * from './types';
export { MSELoss, SoftmaxCrossEntropyLoss, SigmoidCrossEntropyLoss };

/** Loss aliases accepted by `extend` (TF.js / PyTorch / fixture spellings). */
const ALIASES: Readonly<Record<string, LossName>> = {
  mse: 'mse',
  meanSquaredError: 'mse',
  softmaxCrossEntropy: 'softmaxCrossEntropy',
  softmax_cross_entropy: 'softmaxCrossEntropy',
  crossEntropy: 'softmaxCrossEntropy',
  sigmoidCrossEntropy: 'sigmoidCrossEntropy',
  sigmoid_cross_entropy: 'sigmoidCrossEntropy',
};

export function createLoss(loss: string, reduction: string = 'mean'): LossDerivatives {
  const name = ALIASES[loss];
  if (name === undefined) {
    throw new Error(`option 'loss': unknown loss '${loss}'; use one of ${LOSS_NAMES.join(', ')}.`);
  }
  if (!(REDUCTIONS as readonly string[]).includes(reduction)) {
    throw new Error(`option 'reduction': unknown reduction '${reduction}'; use 'mean' or 'sum'.`);
  }
  const r = reduction as Reduction;
  switch (name) {
    case 'mse':
      return new MSELoss(r);
    case 'softmaxCrossEntropy':
      return new SoftmaxCrossEntropyLoss(r);
    case 'sigmoidCrossEntropy':
      return new SigmoidCrossEntropyLoss(r);
  }
}
