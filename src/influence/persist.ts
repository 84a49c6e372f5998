/**
 * Influence models and factors on disk (Node): a directory with a JSON
 * description and one raw binary file per array (little-endian Float32 or
 * Float64, row-major), kronfluence-style, so that an expensive fit or a set
 * of factors is computed once and reused.
 *
 *   <dir>/influence.json   { format, version, method, options, params, blocks, nTrain, state, arrays }
 *   <dir>/factors.json     { format, version, method, params, shape, file }
 *   <dir>/<name>.bin       the arrays
 *
 * On load, the format and version are checked, and the parameters (layer
 * index, role, shape) must match the model's; array files must have exactly
 * the recorded number of bytes. `node:fs` is imported on first use, so that
 * curvpack still loads where there is no file system.
 */
import * as tf from '@tensorflow/tfjs';
import type { ParamInfo } from '../engine/params';
import type { MethodState, StateArray } from './base';

export const INFLUENCE_FORMAT = 'curvpack-influence';
export const FACTORS_FORMAT = 'curvpack-influence-factors';
export const INFLUENCE_VERSION = 1;

export interface SavedParam {
  readonly name: string;
  readonly shape: readonly number[];
}

export interface SavedArray {
  readonly key: string;
  readonly file: string;
  readonly dtype: 'float32' | 'float64';
  readonly shape: readonly number[];
}

export interface SavedModel {
  readonly format: string;
  readonly version: number;
  readonly method: string;
  readonly options: Record<string, unknown>;
  readonly params: readonly SavedParam[];
  readonly blocks: readonly { name: string; params: string[]; regularization: number }[];
  readonly nTrain: number | null;
  readonly state: Record<string, unknown>;
  readonly arrays: readonly SavedArray[];
}

export interface SavedFactors {
  readonly format: string;
  readonly version: number;
  readonly method: string;
  readonly params: readonly SavedParam[];
  readonly shape: readonly [number, number];
  readonly file: string;
  readonly dtype: 'float32';
}

type Fs = typeof import('node:fs/promises');
type Path = typeof import('node:path');

async function nodeFs(where: string): Promise<{ fs: Fs; path: Path }> {
  try {
    return { fs: await import('node:fs/promises'), path: await import('node:path') };
  } catch {
    throw new Error(`${where}: saving and loading need Node's file system (node:fs), which is not available here.`);
  }
}

export function savedParams(params: readonly ParamInfo[]): SavedParam[] {
  return params.map((p) => ({ name: p.shortName, shape: [...p.shape] }));
}

/** Throws unless the saved parameters are the model's (layer index/role and shapes). */
export function checkParams(where: string, saved: readonly SavedParam[], params: readonly ParamInfo[]): void {
  const have = savedParams(params);
  const fmt = (ps: readonly SavedParam[]) => ps.map((p) => `${p.name} [${p.shape.join(', ')}]`).join(', ');
  const same = saved.length === have.length && saved.every((p, i) => p.name === have[i]?.name && p.shape.length === have[i]?.shape.length && p.shape.every((d, j) => d === have[i]?.shape[j]));
  if (!same) {
    throw new Error(`${where}: the saved parameters (${fmt(saved)}) do not match the model's (${fmt(have)}); load with the same architecture and the same blocks.`);
  }
}

function checkHeader(where: string, o: { format?: unknown; version?: unknown }, format: string): void {
  if (o.format !== format) throw new Error(`${where}: not a ${format} file (format '${String(o.format)}').`);
  if (typeof o.version !== 'number' || o.version > INFLUENCE_VERSION || o.version < 1) {
    throw new Error(`${where}: version ${String(o.version)} is not supported (this curvpack reads version ${INFLUENCE_VERSION}); save it again with this version.`);
  }
}

const fileName = (key: string) => `${key.replace(/[^A-Za-z0-9_.-]/g, '_')}.bin`;

async function writeArray(fs: Fs, file: string, a: StateArray): Promise<void> {
  const bytes = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  await fs.writeFile(file, bytes);
}

async function readArray(where: string, fs: Fs, file: string, dtype: 'float32' | 'float64', shape: readonly number[]): Promise<Float32Array | Float64Array> {
  const buf = await fs.readFile(file);
  const n = shape.reduce((a, b) => a * b, 1);
  const size = dtype === 'float32' ? 4 : 8;
  if (buf.byteLength !== n * size) {
    throw new Error(`${where}: ${file} has ${buf.byteLength} bytes, expected ${n * size} (${dtype} [${shape.join(', ')}]); the file is truncated or belongs to another save.`);
  }
  const copy = new ArrayBuffer(buf.byteLength);
  new Uint8Array(copy).set(buf);
  return dtype === 'float32' ? new Float32Array(copy) : new Float64Array(copy);
}

/** Write a model description and its state arrays to `dir` (created if missing). */
export async function writeModel(dir: string, desc: Omit<SavedModel, 'arrays' | 'format' | 'version' | 'state'>, state: MethodState): Promise<void> {
  const where = 'save';
  const { fs, path } = await nodeFs(where);
  await fs.mkdir(dir, { recursive: true });
  const arrays: SavedArray[] = [];
  for (const [key, a] of Object.entries(state.arrays)) {
    const file = fileName(key);
    await writeArray(fs, path.join(dir, file), a);
    arrays.push({ key, file, dtype: a.data instanceof Float64Array ? 'float64' : 'float32', shape: [...a.shape] });
  }
  const out: SavedModel = { format: INFLUENCE_FORMAT, version: INFLUENCE_VERSION, ...desc, state: state.meta, arrays };
  await fs.writeFile(path.join(dir, 'influence.json'), JSON.stringify(out, null, 1));
}

/** Read a model description and its arrays from `dir`. */
export async function readModel(dir: string): Promise<{ desc: SavedModel; state: MethodState }> {
  const where = `loadInfluenceModel('${dir}')`;
  const { fs, path } = await nodeFs(where);
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, 'influence.json'), 'utf8');
  } catch {
    throw new Error(`${where}: no influence.json in this directory; save a fitted model with model.save(dir) first.`);
  }
  const desc = JSON.parse(text) as SavedModel;
  checkHeader(where, desc, INFLUENCE_FORMAT);
  const arrays: Record<string, StateArray> = {};
  for (const a of desc.arrays) arrays[a.key] = { data: await readArray(where, fs, path.join(dir, a.file), a.dtype, a.shape), shape: a.shape };
  return { desc, state: { meta: desc.state, arrays } };
}

/** Write influence factors `[K, D]` with the parameters they belong to. */
export async function writeFactors(dir: string, method: string, params: readonly ParamInfo[], factors: tf.Tensor2D): Promise<void> {
  const { fs, path } = await nodeFs('saveFactors');
  await fs.mkdir(dir, { recursive: true });
  const file = 'factors.bin';
  await writeArray(fs, path.join(dir, file), { data: Float32Array.from(factors.dataSync()), shape: factors.shape });
  const out: SavedFactors = { format: FACTORS_FORMAT, version: INFLUENCE_VERSION, method, params: savedParams(params), shape: [factors.shape[0], factors.shape[1]], file, dtype: 'float32' };
  await fs.writeFile(path.join(dir, 'factors.json'), JSON.stringify(out, null, 1));
}

/** Read influence factors, checking that they belong to these parameters. */
export async function readFactors(dir: string, params: readonly ParamInfo[]): Promise<tf.Tensor2D> {
  const where = `loadFactors('${dir}')`;
  const { fs, path } = await nodeFs(where);
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, 'factors.json'), 'utf8');
  } catch {
    throw new Error(`${where}: no factors.json in this directory; save factors with model.saveFactors(dir, factors) first.`);
  }
  const desc = JSON.parse(text) as SavedFactors;
  checkHeader(where, desc, FACTORS_FORMAT);
  checkParams(where, desc.params, params);
  const D = params.reduce((s, p) => s + p.size, 0);
  if (desc.shape[1] !== D) throw new Error(`${where}: the factors have ${desc.shape[1]} columns, the model's selected parameters ${D}.`);
  const data = await readArray(where, fs, path.join(dir, desc.file), 'float32', desc.shape);
  return tf.tensor2d(data as Float32Array, [desc.shape[0], desc.shape[1]]);
}
