/** createLoss: names, aliases, reductions and errors. */
import { describe, expect, it } from 'vitest';
import { createLoss, MSELoss, SigmoidCrossEntropyLoss, SoftmaxCrossEntropyLoss } from '../../../src/derivatives/losses/index';

describe('createLoss', () => {
  it('accepts the names and aliases', () => {
    expect(createLoss('mse')).toBeInstanceOf(MSELoss);
    expect(createLoss('meanSquaredError', 'sum').reduction).toBe('sum');
    expect(createLoss('softmax_cross_entropy')).toBeInstanceOf(SoftmaxCrossEntropyLoss);
    expect(createLoss('crossEntropy').name).toBe('softmaxCrossEntropy');
    expect(createLoss('sigmoid_cross_entropy')).toBeInstanceOf(SigmoidCrossEntropyLoss);
    expect(createLoss('sigmoidCrossEntropy').reduction).toBe('mean');
  });

  it('rejects unknown losses and reductions naming the option', () => {
    expect(() => createLoss('hinge')).toThrow(/option 'loss': unknown loss 'hinge'; use one of mse, softmaxCrossEntropy, sigmoidCrossEntropy/);
    expect(() => createLoss('mse', 'none')).toThrow(/option 'reduction': unknown reduction 'none'; use 'mean' or 'sum'/);
  });

  it('normalises like FORMAT.md §4', () => {
    expect(createLoss('mse', 'mean').normalizer(4, 3)).toBe(12);
    expect(createLoss('softmaxCrossEntropy', 'mean').normalizer(4, 3)).toBe(4);
    expect(createLoss('sigmoidCrossEntropy', 'mean').normalizer(4, 3)).toBe(12);
    for (const l of ['mse', 'softmaxCrossEntropy', 'sigmoidCrossEntropy']) expect(createLoss(l, 'sum').normalizer(4, 3)).toBe(1);
  });
});
