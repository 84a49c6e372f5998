/**
 * JSON lines: one JSON object per line (https://jsonlines.org). Writing to a
 * file needs Node (≥ 20.16, `process.getBuiltinModule`); elsewhere pass a
 * sink function. Non-finite numbers become `null` (JSON has no NaN/Infinity).
 */

/** Receives one line (without the trailing newline). */
export type JsonlSink = (line: string) => void;

interface FsLike {
  mkdirSync(path: string, options: { recursive: boolean }): unknown;
  writeFileSync(path: string, data: string): void;
  appendFileSync(path: string, data: string): void;
  readFileSync(path: string, encoding: 'utf8'): string;
}
interface PathLike {
  dirname(path: string): string;
}

/** Node's fs and path modules, without a static import (the library also runs in browsers). */
export function nodeModules(what: string): { fs: FsLike; path: PathLike } {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const get = proc?.getBuiltinModule;
  if (typeof get !== 'function') {
    throw new Error(`${what}: writing files needs Node.js ≥ 20.16 (process.getBuiltinModule); elsewhere pass a sink function (line) => void instead of a path.`);
  }
  return { fs: get.call(proc, 'node:fs') as FsLike, path: get.call(proc, 'node:path') as PathLike };
}

/** A sink appending lines to a file (directories created; the file is truncated first unless `append`). */
export function fileSink(path: string, options: { append?: boolean } = {}): JsonlSink {
  if (typeof path !== 'string' || path === '') throw new Error(`fileSink: path must be a non-empty string, got ${String(path)}.`);
  const { fs, path: p } = nodeModules('fileSink');
  fs.mkdirSync(p.dirname(path), { recursive: true });
  if (options.append !== true) fs.writeFileSync(path, '');
  return (line) => fs.appendFileSync(path, `${line}\n`);
}

/** `JSON.stringify` on one line; NaN/±Infinity → null, Float64Array/typed arrays → arrays. */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v)) return null;
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
    return v;
  });
}

/** Writes objects as JSON lines to a file path or a sink. */
export class JsonlWriter {
  private readonly sink: JsonlSink;
  private lines = 0;

  constructor(target: string | JsonlSink, options: { append?: boolean } = {}) {
    if (typeof target === 'function') this.sink = target;
    else if (typeof target === 'string') this.sink = fileSink(target, options);
    else throw new Error(`JsonlWriter: target must be a file path or a function (line) => void, got ${String(target)}.`);
  }

  /** Lines written so far. */
  get count(): number {
    return this.lines;
  }

  write(value: object): void {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error(`JsonlWriter.write: each line must be a JSON object, got ${Array.isArray(value) ? 'an array' : String(value)}.`);
    }
    this.sink(toJsonLine(value));
    this.lines += 1;
  }
}

/** Parse JSON-lines text (blank lines skipped); errors name the line. */
export function parseJsonl<T = Record<string, unknown>>(text: string): T[] {
  const out: T[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      out.push(JSON.parse(line) as T);
    } catch (e) {
      throw new Error(`parseJsonl: line ${i + 1} is not valid JSON (${(e as Error).message}).`);
    }
  });
  return out;
}

/** Read and parse a JSON-lines file (Node). */
export function readJsonl<T = Record<string, unknown>>(path: string): T[] {
  return parseJsonl<T>(nodeModules('readJsonl').fs.readFileSync(path, 'utf8'));
}

/** Write a text file (Node), creating its directory; e.g. an SVG from `figureSvg`. */
export function writeTextFile(path: string, text: string): void {
  if (typeof path !== 'string' || path === '') throw new Error(`writeTextFile: path must be a non-empty string, got ${String(path)}.`);
  const { fs, path: p } = nodeModules('writeTextFile');
  fs.mkdirSync(p.dirname(path), { recursive: true });
  fs.writeFileSync(path, text);
}
