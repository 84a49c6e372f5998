/**
 * `loadInfluenceModel`: rebuild an influence model saved with `model.save(dir)`.
 */
import type { ExtendedModel } from '../engine/extend';
import type { ProgressOption } from '../train/progress';
import type { InfluenceModel } from './base';
import { CgInfluence } from './cg';
import type { DataSource } from './data';
import { DirectInfluence } from './direct';
import { EkfacInfluence } from './ekfac';
import { InverseHarmonicMeanInfluence } from './inverseHarmonicMean';
import { LissaInfluence } from './lissa';
import { ArnoldiInfluence, NystromInfluence } from './lowRank';
import { checkParams, readModel } from './persist';
import type { InfluenceOptions } from './types';

export interface LoadInfluenceOptions {
  /** Training data: needed by CG, LiSSA and the inverse harmonic mean, and for `influences` without explicit training data. */
  trainData?: DataSource;
  progress?: ProgressOption;
}

type Factory = (model: ExtendedModel, options: InfluenceOptions & Record<string, unknown>) => InfluenceModel;

const FACTORIES: Record<string, Factory> = {
  direct: (m, o) => new DirectInfluence(m, o),
  cg: (m, o) => new CgInfluence(m, o),
  lissa: (m, o) => new LissaInfluence(m, o),
  arnoldi: (m, o) => new ArnoldiInfluence(m, o as never),
  nystrom: (m, o) => new NystromInfluence(m, o as never),
  ekfac: (m, o) => new EkfacInfluence(m, o),
  inverseHarmonicMean: (m, o) => new InverseHarmonicMeanInfluence(m, o),
};

/** Load an influence model saved with `save(dir)`, for `model` (same architecture; its current weights are used for gradients). */
export async function loadInfluenceModel(dir: string, model: ExtendedModel, options: LoadInfluenceOptions = {}): Promise<InfluenceModel> {
  const where = `loadInfluenceModel('${dir}')`;
  const { desc, state } = await readModel(dir);
  const factory = FACTORIES[desc.method];
  if (factory === undefined) throw new Error(`${where}: unknown influence method '${desc.method}' (known: ${Object.keys(FACTORIES).join(', ')}).`);
  const m = factory(model, { ...(desc.options as unknown as InfluenceOptions), ...(options.progress !== undefined ? { progress: options.progress } : {}) });
  try {
    checkParams(where, desc.params, m.params);
    if (m.needsDataToLoad && options.trainData === undefined) {
      throw new Error(`${where}: a saved '${desc.method}' model multiplies with the curvature of the training data; pass { trainData } to load it.`);
    }
    m.restore(state, options.trainData, desc.nTrain ?? undefined);
  } catch (e) {
    m.dispose();
    throw e;
  }
  return m;
}
