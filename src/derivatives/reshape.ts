/**
 * Reshape: `[N, ...inShape] → [N, ...targetShape]` (one entry may be
 * unknown: `null` or −1, as in tf.layers.reshape).
 */
import { product } from './record';
import { ReshapeLikeDerivatives } from './flatten';

export class ReshapeDerivatives extends ReshapeLikeDerivatives {
  readonly kind = 'Reshape';
  private readonly target: readonly (number | null)[];

  constructor(
    targetShape: readonly (number | null)[],
    private readonly where = 'Reshape',
  ) {
    super();
    const unknown = targetShape.filter((d) => d === null || d === -1).length;
    const bad = targetShape.some((d) => d !== null && d !== -1 && !(Number.isInteger(d) && d > 0));
    if (unknown > 1 || bad) {
      throw new Error(
        `${where}: option targetShape [${targetShape.map(String).join(', ')}] must be positive integers with at most one unknown (-1 or null) entry.`,
      );
    }
    this.target = [...targetShape];
  }

  outputShape(inShape: readonly number[]): number[] {
    const size = product(inShape);
    const known = product(this.target.filter((d): d is number => d !== null && d !== -1));
    const out = this.target.map((d) => (d === null || d === -1 ? size / known : d));
    if (product(out) !== size || !out.every((d) => Number.isInteger(d))) {
      throw new Error(
        `${this.where}: cannot reshape an input of shape [N, ${inShape.join(', ')}] (${size} entries per sample) to [N, ${this.target.map((d) => (d === null ? -1 : d)).join(', ')}].`,
      );
    }
    return out;
  }
}
