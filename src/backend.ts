/**
 * Backend selection.
 *
 * curvpack runs on the TF.js instance the user imported (it is a peer
 * dependency and never bundled). Order of preference:
 *   1. an explicit choice: `initBackend({ backend })` or env `CURVPACK_BACKEND`;
 *   2. `tensorflow` — when @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node is
 *      installed (already imported by the user, or importable);
 *   3. `wasm` — @tensorflow/tfjs-backend-wasm, the embedded default;
 *   4. `cpu` — TF.js's plain JavaScript backend.
 */
import * as tf from '@tensorflow/tfjs';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface InitBackendOptions {
  /** Force a backend; overrides `CURVPACK_BACKEND`. */
  backend?: BackendName;
  /** Print nothing when falling back (default false: silent anyway). */
  quiet?: boolean;
}

function envBackend(): BackendName | undefined {
  const raw = typeof process !== 'undefined' ? process.env?.CURVPACK_BACKEND : undefined;
  if (raw === undefined || raw === '') return undefined;
  if (!(BACKEND_NAMES as readonly string[]).includes(raw)) {
    throw new Error(
      `CURVPACK_BACKEND='${raw}' is not a known backend; use one of ${BACKEND_NAMES.join(', ')} (or unset it).`,
    );
  }
  return raw as BackendName;
}

/** Import an optional peer by name (the module may not be installed). */
async function tryImport(name: string): Promise<boolean> {
  try {
    await import(/* @vite-ignore */ name);
    return true;
  } catch {
    return false;
  }
}

async function ensureRegistered(name: BackendName): Promise<boolean> {
  if (tf.findBackendFactory(name) !== null && tf.findBackendFactory(name) !== undefined) return true;
  if (name === 'tensorflow') {
    return (
      ((await tryImport('@tensorflow/tfjs-node-gpu')) || (await tryImport('@tensorflow/tfjs-node'))) &&
      !!tf.findBackendFactory('tensorflow')
    );
  }
  if (name === 'wasm') {
    try {
      await import('@tensorflow/tfjs-backend-wasm');
    } catch {
      return false;
    }
    return !!tf.findBackendFactory('wasm');
  }
  return !!tf.findBackendFactory('cpu');
}

/**
 * Select and initialise the backend. Returns the name of the active backend.
 * Throws if a forced backend cannot be loaded (with what to install).
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendName> {
  const forced = options.backend ?? envBackend();
  if (forced !== undefined) {
    if (!(BACKEND_NAMES as readonly string[]).includes(forced)) {
      throw new Error(`backend '${forced}' is not known; use one of ${BACKEND_NAMES.join(', ')}.`);
    }
    if (!(await ensureRegistered(forced))) {
      const hint =
        forced === 'tensorflow'
          ? 'install @tensorflow/tfjs-node (CPU) or @tensorflow/tfjs-node-gpu (CUDA); both download libtensorflow at install time'
          : forced === 'wasm'
            ? 'install @tensorflow/tfjs-backend-wasm'
            : 'install @tensorflow/tfjs';
      throw new Error(`backend '${forced}' was requested but is not available: ${hint}.`);
    }
    if (!(await tf.setBackend(forced))) throw new Error(`backend '${forced}' failed to initialise.`);
    await tf.ready();
    return forced;
  }
  for (const name of BACKEND_NAMES) {
    if (!(await ensureRegistered(name))) continue;
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
    } catch {
      // fall through to the next backend
    }
  }
  throw new Error('no TF.js backend could be initialised (tried tensorflow, wasm, cpu).');
}

/** The name of the active TF.js backend. */
export function activeBackend(): string {
  return tf.getBackend();
}
