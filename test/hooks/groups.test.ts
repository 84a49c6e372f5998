/**
 * Parameter-group helpers, eigenvalue criteria and damping rules of the
 * ViViT hooks (hooks/groups.ts): plain functions checked on hand-made inputs.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import {
  aboveRelativeThreshold,
  aboveThreshold,
  allPositive,
  checkSelection,
  constantDamping,
  copyGroups,
  groupsFull,
  groupsPerLayer,
  groupsPerParam,
  topK,
  type HostMatrix,
  type VivitGroup,
} from '../../hooks/groups';
import { smallMlp } from '../helpers/ggnBruteForce';

const evals = [-1e-9, 1e-6, 0.01, 0.5, 2, 3];

describe('criteria', () => {
  it('topK keeps the k largest (ascending), all when fewer', () => {
    expect(topK(2)(evals)).toEqual([4, 5]);
    expect(topK(0)(evals)).toEqual([]);
    expect(topK(10)(evals)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(() => topK(1.5)).toThrow(/integer ≥ 0/);
  });
  it('aboveThreshold / aboveRelativeThreshold / allPositive', () => {
    expect(aboveThreshold(0.4)(evals)).toEqual([3, 4, 5]);
    // ViViT's default: λ > 1e-4 · max λ = 3e-4.
    expect(aboveRelativeThreshold()(evals)).toEqual([2, 3, 4, 5]);
    expect(aboveRelativeThreshold(0.5)(evals)).toEqual([4, 5]);
    expect(aboveRelativeThreshold()([-1, 0])).toEqual([]);
    expect(allPositive()(evals)).toEqual([1, 2, 3, 4, 5]);
    expect(() => aboveThreshold(NaN)).toThrow(/finite/);
    expect(() => aboveRelativeThreshold(-1)).toThrow(/≥ 0/);
  });
  it('checkSelection accepts indices and refuses anything else', () => {
    expect(checkSelection('H', 0, [5, 0], 6)).toEqual([5, 0]);
    expect(checkSelection('H', 0, new Int32Array([1]), 6)).toEqual([1]);
    expect(() => checkSelection('H', 2, [6], 6)).toThrow(/H: group 2's criterion returned index 6, not an index into its 6 eigenvalues \(valid: 0..5\)/);
    expect(() => checkSelection('H', 0, [0.5], 6)).toThrow(/index 0.5/);
    expect(() => checkSelection('H', 0, [1, 1], 6)).toThrow(/index 1 twice/);
    expect(() => checkSelection('H', 0, undefined, 6)).toThrow(/must return an array/);
  });
});

describe('damping', () => {
  it('constantDamping returns δ for every direction', () => {
    const m: HostMatrix = { rows: 1, cols: 1, data: new Float64Array(1) };
    expect(constantDamping(0.3)([1, 2], m, m, m)).toBe(0.3);
    expect(constantDamping()([1], m, m, m)).toBe(1);
    expect(() => constantDamping(NaN)).toThrow(/finite/);
  });
});

describe('group helpers', () => {
  it('full, per-layer and per-param structures in flat order, with extras', () => {
    const model = smallMlp(3, 4, 2, 'tanh', 1);
    const ext = extend(model, { loss: 'mse' });
    const names = ext.params.map((p) => p.name);
    const criterion = topK(1);
    expect(groupsFull(ext)).toEqual([{ params: names }]);
    expect(groupsPerLayer(ext, { criterion })).toEqual([
      { criterion, params: names.slice(0, 2) },
      { criterion, params: names.slice(2, 4) },
    ]);
    expect(groupsPerParam(ext).map((g) => g.params)).toEqual(names.map((n) => [n]));
    model.dispose();
  });

  it('copyGroups validates and copies (later changes to the user arrays have no effect)', () => {
    const params = ['a', 'b'];
    const groups: VivitGroup[] = [{ params }];
    const copy = copyGroups('H', groups);
    params.push('c');
    groups.push({ params: ['d'] });
    expect(copy).toEqual([{ params: ['a', 'b'] }]);
    expect(Object.isFrozen(copy)).toBe(true);
    expect(() => copyGroups('H', [])).toThrow(/H: option 'groups' must list at least one parameter group/);
    expect(() => copyGroups('H', undefined)).toThrow(/groupsFull\(ext\)/);
    expect(() => copyGroups('H', [{ params: ['a'] }, { params: [] }])).toThrow(/group 1 has no parameters/);
    expect(() => copyGroups('H', [{ params: ['a'], damping: 'x' as unknown as () => number }])).toThrow(/'damping' must be a function/);
    expect(tf.memory().numTensors).toBeGreaterThanOrEqual(0);
  });
});
