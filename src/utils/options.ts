/**
 * Checks of numeric options, with one error format everywhere:
 * "`where`: option '`name`' must be … `why`, got `value`."
 */

/** `x` if it is an integer ≥ `min`; throws otherwise. */
export function checkInteger(where: string, name: string, x: unknown, min: number, why = ''): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min) {
    throw new Error(`${where}: option '${name}' must be an integer ≥ ${min}${why}, got ${String(x)}.`);
  }
  return x;
}

/** `x` if it is a finite number ≥ `min` (> `min` with `strictMin`); throws otherwise. */
export function checkNumber(where: string, name: string, x: unknown, min: number, strictMin = false, why = ''): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || (strictMin ? !(x > min) : !(x >= min))) {
    throw new Error(`${where}: option '${name}' must be a finite number ${strictMin ? '>' : '≥'} ${min}${why}, got ${String(x)}.`);
  }
  return x;
}
