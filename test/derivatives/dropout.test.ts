/**
 * Dropout derivatives. Not training: the identity (vs layer.apply, autodiff,
 * finite differences). Training: y = x ⊙ m with m ∈ {0, 1/(1 − rate)} from
 * the seed; Jᵀ = J = diag(m) vs autodiff of x ↦ x ⊙ m; the drop rate is
 * checked statistically.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { modulesForLayer } from '../../src/derivatives/index';
import { DropoutDerivatives } from '../../src/derivatives/dropout';
import { adjointGap, autodiffVjp, checkModule, disposeRecord, expectClose, expectNoLeak } from './helpers';

describe('Dropout derivatives', () => {
  it('is the identity when not training (N = 1 and N = 3), never aliasing its input', () => {
    const layer = tf.layers.dropout({ rate: 0.4, inputShape: [3, 4] });
    tf.sequential({ layers: [layer] });
    const [m] = modulesForLayer(layer) as [DropoutDerivatives];
    expect(m.kind).toBe('Dropout(0.4)');
    for (const N of [1, 3]) {
      const x = tf.randomNormal([N, 3, 4], 0, 1, 'float32', N);
      checkModule(m, x, (z) => layer.apply(z) as tf.Tensor, { V: 2, tol: 1e-7, eps: 1 });
      expectNoLeak(() => {
        const rec = m.forward(x, { training: false });
        expect(rec.output).not.toBe(x);
        expect(Object.keys(rec.saved)).toEqual([]);
        tf.tidy(() => expectClose(m.jacobianDiag(rec), tf.onesLike(x), 0, 'jacobianDiag'));
        disposeRecord(rec);
      });
      x.dispose();
    }
  });

  it('applies a seeded inverted-dropout mask in training and differentiates through it', () => {
    const rate = 0.3;
    const m = new DropoutDerivatives(rate);
    const N = 2;
    const x = tf.randomNormal([N, 40, 50], 0, 1, 'float32', 4);
    expectNoLeak(() => {
      const rec = m.forward(x, { training: true, seed: 17 });
      const mask = rec.saved.mask as tf.Tensor;
      expect(mask.shape).toEqual(x.shape);
      const mv = mask.dataSync();
      const keep = 1 / (1 - rate);
      let dropped = 0;
      for (const v of mv) {
        expect(v === 0 || Math.abs(v - keep) < 1e-6).toBe(true);
        if (v === 0) dropped++;
      }
      // Binomial(n = 4000, p = 0.3): standard error √(p(1−p)/n) ≈ 0.0072; 5σ bound.
      const se = Math.sqrt((rate * (1 - rate)) / mv.length);
      expect(Math.abs(dropped / mv.length - rate)).toBeLessThan(5 * se);
      tf.tidy(() => {
        expectClose(rec.output, tf.mul(x, mask), 0, 'forward = x ⊙ mask');
        const f = (z: tf.Tensor) => tf.mul(z, mask);
        const mat = tf.randomNormal([3, ...x.shape], 0, 1, 'float32', 5);
        expectClose(m.jacTMatProd(rec, mat), autodiffVjp(f, x, mat), 1e-7, 'jacTMatProd');
        expectClose(m.jacMatProd(rec, mat), autodiffVjp(f, x, mat), 1e-7, 'jacMatProd (diagonal J)');
        expectClose(m.jacobianDiag(rec), mask, 0, 'jacobianDiag');
        expect(adjointGap(m, rec, 2)).toBeLessThan(1e-6);
      });
      // Same seed → same mask; another seed → another mask.
      const again = m.forward(x, { training: true, seed: 17 });
      const other = m.forward(x, { training: true, seed: 18 });
      tf.tidy(() => {
        expectClose(again.saved.mask as tf.Tensor, mask, 0, 'same seed');
        expect(tf.sum(tf.abs(tf.sub(other.saved.mask as tf.Tensor, mask))).dataSync()[0]).toBeGreaterThan(0);
      });
      [rec, again, other].forEach(disposeRecord);
    });
    x.dispose();
  });

  it('rejects noiseShape, bad rates and a missing training seed', () => {
    const layer = tf.layers.dropout({ rate: 0.5, noiseShape: [1, 4], inputShape: [4], name: 'dropns' });
    tf.sequential({ layers: [layer] });
    expect(() => modulesForLayer(layer)).toThrow(/Dropout layer 'dropns': option noiseShape is not supported/);
    expect(() => new DropoutDerivatives(1)).toThrow(/option rate must be in \[0, 1\), got 1/);
    expect(() => new DropoutDerivatives(-0.1)).toThrow(/option rate must be in \[0, 1\)/);
    expectNoLeak(() => {
      const x = tf.ones([2, 3]);
      expect(() => new DropoutDerivatives(0.2).forward(x, { training: true })).toThrow(/training mode needs a seed/);
      // rate 0: identity even in training.
      const rec = new DropoutDerivatives(0).forward(x, { training: true });
      expect(rec.output).not.toBe(x);
      disposeRecord(rec);
      x.dispose();
    });
  });
});
