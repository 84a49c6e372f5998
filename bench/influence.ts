/**
 * Timing of CG, Arnoldi and EKFAC influence on the `mlp` benchmark problem
 * (784-256-relu-128-relu-10, softmax CE mean), 1,000 training and 100 test
 * points (inputs standard normal, labels uniform, as bench/problems.ts).
 *   npm run bench:influence [-- cg arnoldi ekfac]
 */
import * as tf from '@tensorflow/tfjs';
import { buildProblem } from './problems';
import { ArnoldiInfluence, CgInfluence, EkfacInfluence, extend, initBackend, type InfluenceModel } from '../src/index';

const backend = await initBackend();
const which = process.argv.slice(2);
const prob = buildProblem('mlp', 0);
const ext = extend(prob.model, { loss: 'softmaxCrossEntropy', reduction: 'mean' });
const xTrain = tf.randomNormal([1000, 784], 0, 1, 'float32', 11);
const yTrain = tf.tidy(() => tf.cast(tf.floor(tf.randomUniform([1000], 0, 10, 'float32', 12)), 'int32'));
const xTest = tf.randomNormal([100, 784], 0, 1, 'float32', 13);
const yTest = tf.tidy(() => tf.cast(tf.floor(tf.randomUniform([100], 0, 10, 'float32', 14)), 'int32'));
console.log(`backend ${backend}, D = ${ext.numParams}, 1000 train, 100 test`);

// λ relative to the top GGN eigenvalue.
const probe = new ArnoldiInfluence(ext, { regularization: 1, rank: 1, progress: false });
probe.fit({ x: xTrain, y: yTrain, batchSize: 250 });
const top = Math.abs(probe.approximations()[0]?.values[0] as number);
probe.dispose();
const lambda = 0.01 * top;
console.log(`top GGN eigenvalue ${top.toExponential(3)}, λ = 0.01·top = ${lambda.toExponential(3)}`);

async function time(name: string, m: InfluenceModel, extra?: () => string): Promise<void> {
  const t0 = performance.now();
  m.fit({ x: xTrain, y: yTrain, batchSize: 250 });
  const t1 = performance.now();
  const F = m.influenceFactors(xTest, yTest);
  const t2 = performance.now();
  const S = m.influencesFromFactors(F);
  S.dataSync();
  const t3 = performance.now();
  console.log(
    `${name}: fit ${((t1 - t0) / 1000).toFixed(1)} s, factors ${((t2 - t1) / 1000).toFixed(1)} s, scores ${((t3 - t2) / 1000).toFixed(1)} s, total ${((t3 - t0) / 1000).toFixed(1)} s; S ${S.shape}${extra ? '; ' + extra() : ''}`,
  );
  tf.dispose([F, S]);
  m.dispose();
  console.log(`  tensors alive ${tf.memory().numTensors}, MB ${(tf.memory().numBytes / 1e6).toFixed(0)}`);
}

if (which.length === 0 || which.includes('ekfac')) await time('EKFAC', new EkfacInfluence(ext, { regularization: lambda, progress: false, chunkSize: 125 }));
if (which.length === 0 || which.includes('arnoldi')) await time('Arnoldi rank 50', new ArnoldiInfluence(ext, { regularization: lambda, rank: 50, progress: false, chunkSize: 125 }));
if (which.length === 0 || which.includes('cg')) {
  const cg = new CgInfluence(ext, { regularization: lambda, rtol: 1e-3, maxIter: 100, progress: false, chunkSize: 125 });
  await time('CG (rtol 1e-3)', cg, () => cg.lastSolves.map((s) => `${s.iterations} iterations, converged ${s.converged}, rel. residual ${s.relativeResidual.toExponential(1)}`).join(' '));
}
