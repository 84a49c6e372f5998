/**
 * Event helpers: the ownership rule of step results (StepHandle), hook
 * warnings read from group results, request merging and validation.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { extend } from '../../src/engine/extend';
import { checkRequests, hookWarnings, isStepOptimizer, mergeRequests, StepHandle } from '../../src/train/events';
import { BatchGrad } from '../../extensions/firstorder/index';
import { GramMatrix } from '../../hooks/index';
import { expectNoLeaksPerTest } from '../helpers/leaks';

expectNoLeaksPerTest();

function setup() {
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2 })] });
  const ext = extend(model, { loss: 'mse' });
  const x = tf.ones([2, 3]);
  const y = tf.zeros([2, 2]);
  return { model, ext, x, y };
}

const info = { step: 4, epoch: 1, batch: 2, batchSize: 2, loss: 0.5, computed: true };

describe('StepHandle', () => {
  it('disposes the result after the event unless kept', () => {
    const { model, ext, x, y } = setup();
    const r1 = ext.backward(x, y, { extensions: [new BatchGrad()] });
    const h1 = new StepHandle(info, r1);
    const e1 = h1.event();
    expect(e1).toMatchObject(info);
    expect(e1.result).toBe(r1);
    h1.settle();
    expect(() => r1.grad(0)).toThrow(/disposed/);
    expect(() => e1.keep()).toThrow(/after step 4's event ended/);

    const r2 = ext.backward(x, y);
    const h2 = new StepHandle(info, r2);
    expect(h2.event().keep()).toBe(r2);
    h2.settle();
    h2.settle(); // idempotent
    expect(r2.grad(0).shape).toEqual([3, 2]);
    r2.dispose();

    // A refused keep (the caller owns the result): settle leaves it alone.
    const r3 = ext.backward(x, y);
    const h3 = new StepHandle(info, r3, 'the caller of endStep owns it');
    expect(() => h3.event().keep()).toThrow(/the caller of endStep owns it/);
    h3.settle();
    expect(r3.grad(0).shape).toEqual([3, 2]);
    r3.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('hookWarnings', () => {
  it('collects { message } warnings from group results', () => {
    const { model, ext, x, y } = setup();
    const warner = {
      name: 'W',
      quantities: [],
      groups: [{ params: [0] }, { params: [1] }],
      computeParam: () => tf.scalar(0),
      finishGroup: (g: { index: number }) => ({ v: tf.scalar(g.index), warnings: g.index === 1 ? [{ message: 'small', code: 'x' }, 'plain string'] : [] }),
    };
    const gram = new GramMatrix({ groups: [{ params: [0, 1] }] });
    const r = ext.backward(x, y, { hooks: [warner, gram] });
    const ws = hookWarnings(r, [warner, gram], 7);
    expect(ws).toEqual([
      { step: 7, source: 'hook', message: 'small', detail: { message: 'small', code: 'x' } },
      { step: 7, source: 'hook', message: 'plain string', detail: 'plain string' },
    ]);
    r.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('requests', () => {
  it('merges by identity and validates', () => {
    const { model, ext, x, y } = setup();
    const a = new BatchGrad();
    const b = new BatchGrad({ name: 'B2' });
    expect(mergeRequests([a], [a, b])).toEqual([a, b]);
    expect(mergeRequests([a], undefined)).toEqual([a]);
    expect(() => checkRequests('T', ext, [a, new BatchGrad()], [])).toThrow(/T: two extensions or hooks are named 'BatchGrad'/);
    expect(() => checkRequests('T', ext, [{} as BatchGrad], [])).toThrow(/must be an extension \/ hook object/);
    expect(() => checkRequests('T', ext, [], [new GramMatrix({ groups: [{ params: ['nope'] }] })])).toThrow(/unknown parameter 'nope'/);
    expect(isStepOptimizer({ applyStep: () => undefined })).toBe(true);
    expect(isStepOptimizer(tf)).toBe(false);
    expect(isStepOptimizer(undefined)).toBe(false);
    tf.dispose([x, y]);
    model.dispose();
  });
});
