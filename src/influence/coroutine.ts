/**
 * One implementation, two drivers: the influence pipeline is written as
 * generators that yield the steps which may be asynchronous (a product with
 * an operator that streams a tf.data.Dataset, the next dataset element, an
 * async solver). `runSync` answers every step with its synchronous variant
 * (and throws, naming the async method, when a step has none); `runAsync`
 * awaits the asynchronous variant. Errors are thrown back into the
 * generator, so its `finally` blocks free every tensor on both paths.
 */

export interface Step {
  /** What this step does (for the error when it has no synchronous variant). */
  readonly what: string;
  readonly sync: (() => unknown) | undefined;
  readonly async: () => Promise<unknown>;
}

export type Co<T> = Generator<Step, T, unknown>;

/** A step with a synchronous and an asynchronous variant (`sync` undefined: async only). */
export function* call<T>(what: string, sync: (() => T) | undefined, async: () => Promise<T>): Co<T> {
  return (yield { what, sync, async }) as T;
}

/** Drive a pipeline synchronously; `asyncName` names the async method to use instead. */
export function runSync<T>(gen: Co<T>, where: string, asyncName: string): T {
  let step = gen.next();
  while (!step.done) {
    const s = step.value;
    let value: unknown;
    try {
      if (s.sync === undefined) {
        throw new Error(`${where}: ${s.what} is asynchronous (the data is a tf.data.Dataset); use ${asyncName} instead.`);
      }
      value = s.sync();
    } catch (e) {
      step = gen.throw(e);
      continue;
    }
    step = gen.next(value);
  }
  return step.value;
}

/** Drive a pipeline asynchronously. */
export async function runAsync<T>(gen: Co<T>): Promise<T> {
  let step = gen.next();
  while (!step.done) {
    let value: unknown;
    try {
      value = await step.value.async();
    } catch (e) {
      step = gen.throw(e);
      continue;
    }
    step = gen.next(value);
  }
  return step.value;
}
