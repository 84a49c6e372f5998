/** Small helpers over TF.js tensor containers. */
import * as tf from '@tensorflow/tfjs';

/** Every tensor inside a container (arrays and plain objects, recursively). */
export function tensorsIn(c: unknown, out: tf.Tensor[] = []): tf.Tensor[] {
  if (c instanceof tf.Tensor) out.push(c);
  else if (Array.isArray(c)) for (const v of c) tensorsIn(v, out);
  else if (c !== null && typeof c === 'object' && !ArrayBuffer.isView(c)) for (const v of Object.values(c)) tensorsIn(v, out);
  return out;
}

/**
 * Mark every tensor of a container to survive the enclosing `tf.tidy`
 * scopes (for values created lazily inside a caller's tidy but owned and
 * disposed by someone else).
 */
export function keepAll<T>(c: T): T {
  for (const t of tensorsIn(c)) tf.keep(t);
  return c;
}
