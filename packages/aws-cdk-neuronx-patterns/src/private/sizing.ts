import { CompileOptions, QuantDtype } from '../compile-options';
import { NeuronxInstanceFamily, NeuronxInstanceType } from '../neuronx-instance-type';
import { CONTRACT } from './contract';
import { checkPositiveInteger } from './problems';

/**
 * Memory and parallelism arithmetic, shared by every check so that one number means one thing everywhere.
 */

export const GIB = 1024 ** 3;

/** transformers-neuronx's default sequence length, the library's default `nPositions`. */
export const DEFAULT_N_POSITIONS = 4096;

/** bf16: 2 bytes a parameter. */
export const BF16_BYTES = 2;
/** int8 weight storage: 1 byte a parameter. */
export const S8_BYTES = 1;
/** KV cache stored in bf16 (transformers-neuronx keeps the cache in the `amp` dtype). */
const KV_CACHE_DTYPE_BYTES = BF16_BYTES;

/**
 * Share of a NeuronCore's device memory a model may fill. The rest is left to the Neuron runtime's scratch space,
 * I/O tensors and the NEFF instructions; a model sized to 100% fails at load with an out-of-memory error.
 */
export const DEVICE_MEMORY_USABLE_FRACTION = 0.9;

/**
 * Tensor-parallel degrees the Neuron runtime's collectives support on one instance of a family.
 * trn1: "Supported number of Neuron Cores is 1, 2, 8, 16 or a multiple of 32. For other configurations, such as
 * multiples of 2, consider using inf2 instances" (Neuron runtime error, nrt_load_collectives); inf2: 1 or any
 * multiple of 2.
 */
export function isSupportedTpDegree(family: NeuronxInstanceFamily, tpDegree: number): boolean {
  if (tpDegree === 1) return true;
  if (family === NeuronxInstanceFamily.TRN1) return [2, 8, 16].includes(tpDegree) || tpDegree % 32 === 0;
  return tpDegree % 2 === 0;
}

/** What the checks need to know about a model. Everything but the parameter count is optional. */
export interface ModelSizing {
  readonly parameterCount: number;
  readonly numLayers?: number;
  readonly hiddenSize?: number;
  readonly numAttentionHeads?: number;
  readonly numKeyValueHeads?: number;
  readonly maxPositionEmbeddings?: number;
}

/**
 * Resolved compile options: what the artifacts are compiled for. Every `CompileOptions` field is carried (an option
 * added there reaches every check without a change here); these are the ones the arithmetic needs resolved.
 * `continuousBatching`: batchSize slots sharing one KV cache, no batch-1 graph of its own.
 */
export interface ResolvedCompileOptions extends CompileOptions {
  readonly tpDegree: number;
  readonly nPositions: number;
  readonly batchSize: number;
}

export function bytesPerParameter(quantDtype?: QuantDtype): number {
  return quantDtype === QuantDtype.S8 ? S8_BYTES : BF16_BYTES;
}

/** Bytes of the weights as stored on the device (and in host memory while loading). */
export function weightBytes(model: ModelSizing, quantDtype?: QuantDtype): number {
  return model.parameterCount * bytesPerParameter(quantDtype);
}

/** Bytes of the checkpoint as published (bf16), which the compile job downloads and loads. */
export function checkpointBytes(model: ModelSizing): number {
  return model.parameterCount * BF16_BYTES;
}

/**
 * Bytes of the KV cache: 2 (K and V) x layers x KV heads x head dim x dtype bytes, per position and sequence.
 * Zero when the architecture is not known (then only the weights are checked).
 */
export function kvCacheBytes(model: ModelSizing, nPositions: number, batchSize: number): number {
  if (!model.numLayers || !model.hiddenSize || !model.numAttentionHeads) return 0;
  const kvHeads = model.numKeyValueHeads ?? model.numAttentionHeads;
  const headDim = model.hiddenSize / model.numAttentionHeads;
  return 2 * model.numLayers * kvHeads * headDim * KV_CACHE_DTYPE_BYTES * nPositions * batchSize;
}

/**
 * Sequences the compiled model keeps a KV cache for: 1 at batch size 1; above, batch 1 is compiled too (the handler
 * runs a lone request on it: runtime/common/neuronx_common.py compiled_batch_sizes) and transformers-neuronx 0.13
 * allocates a cache per compiled batch size (decoder.py, attn_k_cache / attn_v_cache per batch size). Compiled for
 * continuous batching, the slots: one cache of batchSize rows that every graph shares (config.py
 * ContinuousBatchingConfig.batch_size_for_shared_caches; a context is encoded at batch 1 into its slot's row).
 */
export function cachedSequences(batchSize: number, continuousBatching?: boolean): number {
  return batchSize === 1 || continuousBatching ? batchSize : 1 + batchSize;
}

/** Device bytes one model copy needs: weights plus the KV caches of every compiled batch size. */
export function deviceBytesNeeded(model: ModelSizing, options: ResolvedCompileOptions): number {
  const sequences = cachedSequences(options.batchSize, options.continuousBatching);
  return weightBytes(model, options.quantDtype) + kvCacheBytes(model, options.nPositions, sequences);
}

/** The largest batch size that fits one worker of `instance` with these options (0 when not even batch 1 does). */
export function largestFittingBatchSize(model: ModelSizing, instance: NeuronxInstanceType, options: ResolvedCompileOptions): number {
  const perSequence = kvCacheBytes(model, options.nPositions, 1);
  const left = deviceBytesAvailable(instance, options.tpDegree) - weightBytes(model, options.quantDtype);
  if (left < perSequence) return 0;
  if (perSequence === 0) return Infinity;
  const sequences = Math.floor(left / perSequence);
  if (options.continuousBatching) return sequences; // cachedSequences: the slots
  return sequences >= 3 ? sequences - 1 : 1; // cachedSequences: 1 + batchSize above batch 1
}

/** Device bytes the NeuronCores of one worker offer to a model. */
export function deviceBytesAvailable(instance: NeuronxInstanceType, tpDegree: number): number {
  return instance.acceleratorMemoryPerCore.toGibibytes() * GIB * tpDegree * DEVICE_MEMORY_USABLE_FRACTION;
}

/**
 * The time of one decoding step, from the figures in the contract's `stepTime` (the same the model-server tests'
 * simulated device uses): a step reads every weight once, so its time follows the weight bytes each NeuronCore holds,
 * and each sequence of the compiled batch adds a fixed share of a batch-1 step (10.9 %). An estimate for limits, not
 * a measurement of calm3 on hardware.
 */
const STEP = CONTRACT.stepTime;
const REFERENCE_BYTES_PER_CORE = STEP.referenceParameters * STEP.referenceBytesPerParameter / STEP.referenceNeuronCores;
const PER_SEQUENCE_SHARE = (STEP.referenceSecondsBatch4 - STEP.referenceSecondsBatch1) / 3 / STEP.referenceSecondsBatch1;

/** Seconds one decoding step of the compiled batch takes (see the calibration above). */
export function stepSeconds(model: ModelSizing, options: ResolvedCompileOptions): number {
  const batchOne = STEP.referenceSecondsBatch1 * weightBytes(model, options.quantDtype) / options.tpDegree / REFERENCE_BYTES_PER_CORE;
  return batchOne * (1 - PER_SEQUENCE_SHARE + PER_SEQUENCE_SHARE * options.batchSize);
}

/** Model copies (TorchServe workers) an instance holds: one for each `tpDegree` NeuronCores. */
export function workersPerInstance(instance: NeuronxInstanceType, tpDegree: number): number {
  return Math.floor(instance.neuronCores / tpDegree);
}

/** Host memory the compile job needs: the bf16 checkpoint loaded, plus the quantized copy when quantizing. */
export function compileHostBytesNeeded(model: ModelSizing, quantDtype?: QuantDtype): number {
  return checkpointBytes(model) + (quantDtype ? weightBytes(model, quantDtype) : 0);
}

/**
 * What the compile instance's root volume holds besides the compile job's work dir: the Neuron DLC image (about
 * 20 GiB unpacked, besides its pulled layers), the operating system of the Neuron ECS AMI, the Docker and ECS agent
 * state and the logs. A budget, not a measurement: 64 GiB, the allowance the construct gave before the rule was shared,
 * so that no default volume shrank when it was (a disk that fills hours into a compile costs far more than the
 * extra gp3 GiB for those hours).
 */
export const ROOT_VOLUME_ALLOWANCE_GIB = 64;

/**
 * Free space the compile job requires in its work dir before downloading (contract `compileJob.diskSpace`, which the
 * job checks): the checkpoint x the factor (quantizing needs more) + the margin. The checkpoint is the bf16 one.
 */
export function compileWorkDirBytes(model: ModelSizing, quantDtype?: QuantDtype): number {
  const { factorQuantized, factorUnquantized, marginGiB } = CONTRACT.compileJob.diskSpace;
  return checkpointBytes(model) * (quantDtype ? factorQuantized : factorUnquantized) + marginGiB * GIB;
}

/** The compile instance's root volume, which holds the work dir: what the job checks for, plus the allowance. */
export function compileVolumeBytes(model: ModelSizing, quantDtype?: QuantDtype): number {
  return compileWorkDirBytes(model, quantDtype) + ROOT_VOLUME_ALLOWANCE_GIB * GIB;
}

/** Host memory serving needs: every worker holds its copy of the stored weights while loading them. */
export function servingHostBytesNeeded(model: ModelSizing, quantDtype: QuantDtype | undefined, workers: number): number {
  return weightBytes(model, quantDtype) * workers;
}

export function gib(bytes: number): string {
  return `${(bytes / GIB).toFixed(1)} GiB`;
}

export function hostBytes(instance: NeuronxInstanceType): number {
  return instance.memory.toGibibytes() * GIB;
}

/** Tensor-parallel degrees that would work for this model on this instance (for error messages). */
export function workingTpDegrees(model: ModelSizing, instance: NeuronxInstanceType, options: Omit<ResolvedCompileOptions, 'tpDegree'>): number[] {
  const result = [];
  for (let tp = 1; tp <= instance.neuronCores; tp++) {
    if (!isSupportedTpDegree(instance.family, tp)) continue;
    if (model.numAttentionHeads && model.numAttentionHeads % tp !== 0) continue;
    if (deviceBytesNeeded(model, { ...options, tpDegree: tp }) > deviceBytesAvailable(instance, tp)) continue;
    result.push(tp);
  }
  return result;
}

/**
 * Every reason a compile configuration cannot work on its serving instance, as sentences naming the prop, the
 * value and what would work. Empty when it can work.
 */
export function servingProblems(
  prefix: string,
  model: ModelSizing,
  instance: NeuronxInstanceType,
  options: ResolvedCompileOptions,
  compileInstance?: NeuronxInstanceType,
): string[] {
  const problems = [
    ...checkPositiveInteger(`${prefix}.tpDegree`, options.tpDegree),
    ...checkPositiveInteger(`${prefix}.nPositions`, options.nPositions),
    ...checkPositiveInteger(`${prefix}.batchSize`, options.batchSize),
  ];
  if (problems.length > 0) return problems;

  const { tpDegree, nPositions } = options;
  // Every suggestion must itself be accepted, together with the others: a tpDegree the compile instance has the
  // NeuronCores for (compileInstanceProblems), sized for the positions the nPositions suggestion allows.
  const suggestedPositions = model.maxPositionEmbeddings ? Math.min(nPositions, model.maxPositionEmbeddings) : nPositions;
  const onServing = workingTpDegrees(model, instance, { ...options, nPositions: suggestedPositions, batchSize: 1 });
  const working = onServing.filter(tp => !compileInstance || tp <= compileInstance.neuronCores);
  const suggestion = working.length > 0
    ? `use tpDegree ${working.join(' or ')}`
    : onServing.length > 0
      ? `no tpDegree works on both ${instance} and the compile instance ${compileInstance?.instanceTypeName} (${compileInstance?.neuronCores} NeuronCores): compile on an instance with at least ${Math.min(...onServing)} NeuronCores`
      : 'no tpDegree works on this instance: choose a larger instance type, int8 weights (QuantDtype.S8) or fewer positions';
  if (tpDegree > instance.neuronCores) {
    problems.push(`${prefix}.tpDegree is ${tpDegree} but ${instance} has ${instance.neuronCores} NeuronCores: ${suggestion}.`);
  } else if (!isSupportedTpDegree(instance.family, tpDegree)) {
    const supported = instance.family === NeuronxInstanceFamily.TRN1 ? '1, 2, 8, 16 or 32' : '1 or an even number';
    problems.push(`${prefix}.tpDegree is ${tpDegree}, which the Neuron runtime does not support on ${instance.family} (it supports ${supported}): ${suggestion}.`);
  }
  if (model.numAttentionHeads && model.numAttentionHeads % tpDegree !== 0) {
    problems.push(`${prefix}.tpDegree is ${tpDegree}, which does not divide the model's ${model.numAttentionHeads} attention heads: ${suggestion}.`);
  }
  if (model.maxPositionEmbeddings && nPositions > model.maxPositionEmbeddings) {
    problems.push(`${prefix}.nPositions is ${nPositions} but the model has ${model.maxPositionEmbeddings} position embeddings: use at most ${model.maxPositionEmbeddings}.`);
  }
  if (tpDegree <= instance.neuronCores) {
    const available = deviceBytesAvailable(instance, tpDegree);
    const batchOne = { ...options, batchSize: 1 };
    if (deviceBytesNeeded(model, batchOne) > available) {
      const needed = deviceBytesNeeded(model, batchOne);
      problems.push(
        `${prefix}: the model needs ${gib(needed)} of accelerator memory per worker `
        + `(weights ${gib(weightBytes(model, options.quantDtype))} + KV cache ${gib(kvCacheBytes(model, nPositions, 1))} for ${nPositions} positions) `
        + `but tpDegree ${tpDegree} on ${instance} gives ${gib(available)}: ${suggestion}.`,
      );
    } else if (deviceBytesNeeded(model, options) > available) {
      const sequences = cachedSequences(options.batchSize, options.continuousBatching);
      problems.push(
        `${prefix}.batchSize is ${options.batchSize}: the model needs ${gib(deviceBytesNeeded(model, options))} of accelerator memory per worker `
        + `(weights ${gib(weightBytes(model, options.quantDtype))} + ${sequences} KV caches of ${gib(kvCacheBytes(model, nPositions, 1))} for ${nPositions} positions: `
        + `${options.continuousBatching ? 'one per slot' : `batch ${options.batchSize} and batch 1`}) but tpDegree ${tpDegree} on ${instance} gives ${gib(available)}: `
        + `use batchSize ${Math.max(options.continuousBatching ? 2 : 1, largestFittingBatchSize(model, instance, options))} or less, fewer positions, or more NeuronCores per worker.`,
      );
    }
    const workers = workersPerInstance(instance, tpDegree);
    if (options.continuousBatching) problems.push(...continuousBatchingProblems(prefix, instance, options, workers, working));
    const hostNeeded = servingHostBytesNeeded(model, options.quantDtype, workers);
    if (hostNeeded > hostBytes(instance)) {
      problems.push(
        `${prefix}: ${workers} worker(s) on ${instance} need ${gib(hostNeeded)} of host memory to load the weights `
        + `but it has ${gib(hostBytes(instance))}: choose an instance type with more memory or int8 weights (QuantDtype.S8).`,
      );
    }
  }
  return problems;
}

/**
 * Continuous batching needs one worker per model (TorchServe 0.11.0 stalls a continuous-batching model with more:
 * tools/model-server/test_torchserve_continuous_batching.py) and at least two slots. `working` are the tpDegrees that
 * work otherwise; the suggestion is the largest of them that makes one worker (a smaller one leaves NeuronCores idle).
 */
function continuousBatchingProblems(
  prefix: string, instance: NeuronxInstanceType, options: ResolvedCompileOptions, workers: number, working: number[],
): string[] {
  const problems: string[] = [];
  if (workers > 1) {
    const alone = Math.max(0, ...working.filter(tp => workersPerInstance(instance, tp) === 1));
    problems.push(`${prefix}.continuousBatching is true but tpDegree ${options.tpDegree} on ${instance} makes ${workers} workers: TorchServe 0.11.0 `
      + 'stalls continuous batching with more than one worker per model; '
      + (alone > 0 ? `use tpDegree ${alone} (one worker on ${alone} of its ${instance.neuronCores} NeuronCores) or` : 'no tpDegree gives one worker here:')
      + ' set continuousBatching to false.');
  }
  if (options.batchSize < 2) {
    problems.push(`${prefix}.batchSize is ${options.batchSize} with continuousBatching: batchSize is the number of slots, and one slot `
      + 'batches nothing; use batchSize 2 or more, or set continuousBatching to false.');
  }
  return problems;
}

/** Every reason an instance cannot compile the model. */
export function compileInstanceProblems(prop: string, model: ModelSizing, instance: NeuronxInstanceType, options: ResolvedCompileOptions): string[] {
  const problems: string[] = [];
  const needed = compileHostBytesNeeded(model, options.quantDtype);
  if (needed > hostBytes(instance)) {
    const enough = NeuronxInstanceType.all().filter(t => hostBytes(t) >= needed && t.neuronCores >= options.tpDegree);
    problems.push(
      `${prop} is ${instance.instanceTypeName}, whose ${gib(hostBytes(instance))} of host memory cannot hold the ${gib(needed)} the compile needs `
      + `(bf16 checkpoint${options.quantDtype ? ' plus int8 copy' : ''}): use ${enough.map(t => t.instanceTypeName).join(' or ') || 'a larger instance'}.`,
    );
  }
  if (options.tpDegree > instance.neuronCores) {
    problems.push(`${prop} is ${instance.instanceTypeName} with ${instance.neuronCores} NeuronCores, fewer than tpDegree ${options.tpDegree}: transformers-neuronx loads the model onto tpDegree cores after compiling.`);
  }
  return problems;
}

/** What sizing reads of a model (a `Model` is one): its size and, when known, its shape. */
export interface SizedModel {
  readonly parameterCount: number;
  readonly architecture?: Omit<ModelSizing, 'parameterCount'>;
}

/** What the sizing checks know of a model. */
export function modelSizing(model: SizedModel): ModelSizing {
  return { parameterCount: model.parameterCount, ...model.architecture };
}
