import { Duration, Size, Token } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import { IConstruct } from 'constructs';
import { TransformersNeuronxSageMakerInferenceModelDataConfig } from '../inference-model-data';
import { NeuronxInstanceType } from '../neuronx-instance-type';
import { NeuronxRuntime } from '../neuronx-runtime';
import { CONTRACT, endpointEnv } from './contract';
import { checkPositiveInteger } from './problems';
import { regionProblems } from './regions';
import { checkpointBytes, GIB, modelSizing, ModelSizing, ResolvedCompileOptions, servingProblems, stepSeconds, weightBytes } from './sizing';

/**
 * What an endpoint is built from: its props with their defaults (derived from the model's size), and every reason
 * they cannot work, as SageMaker would report it at deploy time.
 */

// SageMaker's bounds for ModelDataDownloadTimeoutInSeconds and ContainerStartupHealthCheckTimeoutInSeconds
// (CreateEndpointConfig API reference), and for VolumeSizeInGB.
const MIN_TIMEOUT = Duration.seconds(60);
const MAX_TIMEOUT = Duration.seconds(3600);
const MIN_VOLUME_GB = 1;
const MAX_VOLUME_GB = 512;
// Derived defaults: copying the model data at ~50 MB/s, loading the weights onto the NeuronCores at ~35 MB/s
// (workers load at the same time), each with a fixed allowance; both clamped to SageMaker's bounds.
const DOWNLOAD_BASE_SECONDS = 300;
const DOWNLOAD_SECONDS_PER_GIB = 20;
const STARTUP_BASE_SECONDS = 600;
const STARTUP_SECONDS_PER_GIB = 30;
// Volume for the model data: the bf16 checkpoint, the compiled artifacts and the code, with headroom.
const VOLUME_CHECKPOINT_FACTOR = 1.25;
const VOLUME_BASE_GIB = 16;
/**
 * SageMaker ends an InvokeEndpoint call that the container has not answered within 60 seconds (InvokeEndpoint API
 * reference: "A customer's model containers must respond to requests within 60 seconds").
 */
export const INVOCATION_LIMIT = Duration.seconds(60);
/**
 * What an invocation needs besides the generation: the prompt's prefill (which cannot be interrupted), the last
 * token (which may end one step after the limit: the handler checks the clock as each token arrives) and the answer's
 * way back. 10 s, which is what the handler's default limit (contract `defaults.generationTimeLimitSeconds`, 50 s)
 * has always left of the 60.
 */
const INVOCATION_ALLOWANCE = Duration.seconds(INVOCATION_LIMIT.toSeconds() - CONTRACT.defaults.generationTimeLimitSeconds);
/** The longest generation time limit: SageMaker's invocation limit less that allowance. */
export const MAX_GENERATION_TIME_LIMIT = Duration.seconds(INVOCATION_LIMIT.toSeconds() - INVOCATION_ALLOWANCE.toSeconds());
/**
 * The longest generation time limit without continuous batching (contract `endpoint.batching.staticAdmission`): a
 * request may wait in TorchServe's bounded queue for one whole batch, then generate its own, and both, each with its
 * allowance, must fit the invocation limit.
 */
export const MAX_STATIC_GENERATION_TIME_LIMIT = Duration.seconds(CONTRACT.endpoint.batching.staticAdmission.generationTimeLimitSeconds);

/** The longest generation time limit for model data served with or without continuous batching. */
export function maxGenerationTimeLimit(continuousBatching: boolean): Duration {
  return continuousBatching ? MAX_GENERATION_TIME_LIMIT : MAX_STATIC_GENERATION_TIME_LIMIT;
}

/**
 * What each variable the library sets in the container is, and the prop it comes from, for the message that
 * refuses it in `environment` (every key of contract `endpoint.environment`; a test checks none is missing).
 */
export const RESERVED_ENVIRONMENT: Record<string, { readonly what: string; readonly from?: string; readonly prop?: string }> = {
  tpDegree: { what: 'the tensor-parallel degree the model data was compiled with', from: 'the model data\'s tpDegree (compileOptions.tpDegree)' },
  nPositions: { what: 'the positions the model data was compiled for', from: 'the model data\'s nPositions (compileOptions.nPositions)' },
  batchSize: { what: 'the batch size the model data was compiled for', from: 'the model data\'s batchSize (compileOptions.batchSize)' },
  amp: { what: 'the compute type the model data was compiled with (bf16)' },
  quantDtype: { what: 'the storage type of the weights', from: 'the model data\'s quantDtype (compileOptions.quantDtype)' },
  workers: { what: 'the model server\'s workers per instance', from: 'instanceType and the model data\'s tpDegree (one worker per tpDegree NeuronCores)' },
  coresPerWorker: { what: 'the NeuronCores each worker takes', from: 'the model data\'s tpDegree (compileOptions.tpDegree)' },
  responseTimeout: { what: 'TorchServe\'s response timeout, which also bounds the model load', from: 'the startup health-check timeout', prop: 'containerStartupHealthCheckTimeout' },
  serviceHandler: { what: 'the handler TorchServe calls for every batch (the inference code\'s handle)' },
  generationTimeLimit: { what: 'the seconds the handler generates before it answers with the text so far', from: 'the generation time limit', prop: 'generationTimeLimit' },
  serverBatchSize: { what: 'TorchServe\'s batch size', from: 'the model data\'s batchSize (compileOptions.batchSize)' },
  serverMaxBatchDelay: { what: 'how long TorchServe waits to fill a batch' },
  serverMinWorkers: { what: 'TorchServe\'s least workers', from: 'instanceType and the model data\'s tpDegree' },
  serverMaxWorkers: { what: 'TorchServe\'s most workers', from: 'instanceType and the model data\'s tpDegree' },
  serverResponseTimeout: { what: 'TorchServe\'s response timeout for a batching model, which also bounds the model load', from: 'the startup health-check timeout', prop: 'containerStartupHealthCheckTimeout' },
  serverJobQueueSize: {
    what: 'how many requests TorchServe lets wait without continuous batching (past it, 503 at once)',
    from: 'instanceType and the model data\'s tpDegree and batchSize (workers x batchSize)',
  },
  javaOptions: { what: 'the model server\'s JVM options, which load the readiness check of /ping' },
};

// SageMaker's bounds for a container's Environment (CreateModel, ContainerDefinition): the name pattern, bytes per
// name and per value, and bytes of all names and values together.
const ENVIRONMENT_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const MAX_ENVIRONMENT_ENTRY_BYTES = 1024;
const MAX_ENVIRONMENT_BYTES = 32 * 1024;

/** What the endpoint's settings and checks read of its props (TransformersNeuronxSageMakerRealtimeInferenceEndpointProps are one). */
export interface EndpointConfigurationInput {
  readonly environment?: { [name: string]: string };
  readonly instanceCount?: number;
  readonly modelDataDownloadTimeout?: Duration;
  readonly containerStartupHealthCheckTimeout?: Duration;
  readonly volumeSize?: Size;
  readonly volumeEncryptionKey?: kms.IKey;
  readonly generationTimeLimit?: Duration;
}

/** An endpoint's props resolved against its model data. */
export interface EndpointSettings {
  readonly instanceType: NeuronxInstanceType;
  /** The model data's runtime: artifacts load only under the compiler that made them. */
  readonly runtime: NeuronxRuntime;
  readonly sizing: ModelSizing;
  /** What the model data was compiled with. */
  readonly options: ResolvedCompileOptions;
  readonly downloadTimeout: Duration;
  readonly startupTimeout: Duration;
  /** The storage volume (none on trn1). */
  readonly volumeSize?: Size;
  /** How long the handler generates for one call. */
  readonly generationTimeLimit: Duration;
}

/** The settings of an endpoint with `props`, serving `data` on `instanceType`. */
export function endpointSettings(
  props: EndpointConfigurationInput,
  data: TransformersNeuronxSageMakerInferenceModelDataConfig,
  instanceType: NeuronxInstanceType,
): EndpointSettings {
  const sizing = modelSizing(data.model);
  const options = compiledOptions(data);
  return {
    instanceType,
    runtime: data.runtime,
    sizing,
    options,
    downloadTimeout: props.modelDataDownloadTimeout
      ?? Duration.seconds(clamp(DOWNLOAD_BASE_SECONDS + DOWNLOAD_SECONDS_PER_GIB * checkpointBytes(sizing) / GIB)),
    startupTimeout: props.containerStartupHealthCheckTimeout
      ?? Duration.seconds(clamp(STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_GIB * weightBytes(sizing, options.quantDtype) / GIB)),
    volumeSize: props.volumeSize
      ?? (instanceType.volumeSizeSupported
        ? Size.gibibytes(Math.ceil(checkpointBytes(sizing) / GIB * VOLUME_CHECKPOINT_FACTOR) + VOLUME_BASE_GIB)
        : undefined),
    generationTimeLimit: props.generationTimeLimit ?? maxGenerationTimeLimit(options.continuousBatching ?? false),
  };
}

/**
 * What the model data was compiled with: its `compileOptions` whole, over the separate fields (which model data that
 * predates `compileOptions` gives alone).
 */
export function compiledOptions(data: TransformersNeuronxSageMakerInferenceModelDataConfig): ResolvedCompileOptions {
  return {
    tpDegree: data.tpDegree,
    nPositions: data.nPositions,
    quantDtype: data.quantDtype,
    batchSize: data.batchSize,
    continuousBatching: data.continuousBatching,
    ...Object.fromEntries(Object.entries(data.compileOptions ?? {}).filter(([, value]) => value !== undefined)),
  };
}

/**
 * TorchServe's settings for artifacts compiled for `batchSize` (contract `endpoint.batching`). Continuous batching sets
 * none: the model config YAML the code placement writes holds every setting, and TorchServe 0.11.0 lets it override
 * these (contract `endpoint.continuousBatching`). Otherwise TorchServe's queue is bounded to the jobs the workers run
 * at once (`staticAdmission`), and above batch size 1 the toolkit's SAGEMAKER_TS_* variables, all five: the toolkit
 * (sagemaker-pytorch-inference 2.0.25, unchanged since 2.0.21: torchserve.py `_generate_ts_config_properties`,
 * ts_environment.py) writes them into a per-model config as soon as one is set, with minWorkers and maxWorkers 1 and
 * responseTimeout 60 s for those not set (TorchServe 0.11.0 reads the model's workers from it:
 * ModelServer.initModelStore), which would leave one worker and kill the model load after 60 s. So the workers are the
 * worker count and the response timeout the startup health-check timeout, as TS_DEFAULT_RESPONSE_TIMEOUT.
 */
export function batchingEnvironment(
  batchSize: number, workers: number, responseTimeout: Duration, continuousBatching: boolean,
): Record<string, string> {
  if (continuousBatching) return {};
  // TS_JOB_QUEUE_SIZE is TorchServe's own job_queue_size, read from the environment because the toolkit's
  // config.properties sets enable_envvars_config=true (etc/default-ts.properties).
  const queue = { [endpointEnv('serverJobQueueSize')]: String(workers * batchSize) };
  if (batchSize === 1) return queue;
  return {
    [endpointEnv('serverBatchSize')]: String(batchSize),
    [endpointEnv('serverMaxBatchDelay')]: String(CONTRACT.endpoint.batching.maxBatchDelayMilliseconds),
    [endpointEnv('serverMinWorkers')]: String(workers),
    [endpointEnv('serverMaxWorkers')]: String(workers),
    [endpointEnv('serverResponseTimeout')]: String(responseTimeout.toSeconds()),
    ...queue,
  };
}

/** Every reason the endpoint `scope` cannot serve, before its environment is rendered (see environmentSizeProblems). */
export function endpointProblems(
  scope: IConstruct,
  props: EndpointConfigurationInput,
  data: TransformersNeuronxSageMakerInferenceModelDataConfig,
  settings: EndpointSettings,
): string[] {
  const { instanceType, runtime } = settings;
  const reserved = new Set(Object.values(CONTRACT.endpoint.environment));
  return [
    ...servingProblems('modelData', settings.sizing, instanceType, settings.options),
    ...(data.compiledFor && data.compiledFor.family !== instanceType.family
      ? [`instanceType is ${instanceType} but the model data was compiled for ${data.compiledFor.family}: Neuron artifacts load only on the family they were compiled for; use a ${data.compiledFor.family} instance type or compile for ${instanceType.family}.`]
      : []),
    ...regionProblems(scope, { image: runtime.toString(), sageMaker: { instanceType, prop: 'instanceType' } }),
    ...checkPositiveInteger('instanceCount', props.instanceCount),
    ...timeoutProblem('modelDataDownloadTimeout', settings.downloadTimeout),
    ...timeoutProblem('containerStartupHealthCheckTimeout', settings.startupTimeout),
    ...volumeProblems(instanceType, props.volumeSize, settings.volumeSize, props.volumeEncryptionKey),
    ...generationTimeLimitProblems(settings),
    ...Object.keys(props.environment ?? {}).filter(k => reserved.has(k)).map(reservedVariableProblem),
    ...environmentEntryProblems(props.environment ?? {}),
  ];
}

/** The message that refuses a variable the library sets: what it is, and which prop sets it. */
function reservedVariableProblem(name: string): string {
  const key = Object.keys(CONTRACT.endpoint.environment).find(k => CONTRACT.endpoint.environment[k] === name)!;
  const { what, from, prop } = RESERVED_ENVIRONMENT[key];
  return `environment sets ${name}, ${what}, which the library sets ${from ? `from ${from}` : 'itself'}: remove it${prop ? ` and set ${prop} instead` : ''}.`;
}

/**
 * The generation time limit against SageMaker's invocation limit (less the allowance: MAX_GENERATION_TIME_LIMIT, or
 * MAX_STATIC_GENERATION_TIME_LIMIT without continuous batching) and a floor of one decoding step of the compiled batch,
 * rounded up to whole seconds, so that at least one token fits.
 */
function generationTimeLimitProblems(settings: EndpointSettings): string[] {
  const limit = settings.generationTimeLimit;
  if (limit.isUnresolved()) return ['generationTimeLimit is a token: the handler\'s limit must be known at synth to be checked against SageMaker\'s invocation limit; give a Duration.'];
  const floor = minGenerationTimeLimit(settings);
  const continuous = settings.options.continuousBatching ?? false;
  const max = maxGenerationTimeLimit(continuous);
  const ms = limit.toMilliseconds();
  if (ms >= floor.toMilliseconds() && ms <= max.toMilliseconds()) return [];
  const reason = continuous
    ? `SageMaker ends an invocation after ${INVOCATION_LIMIT.toHumanString()}, and the prompt's prefill, the last token and the answer need the last ${INVOCATION_ALLOWANCE.toHumanString()}`
    : `Without continuous batching a request may wait in TorchServe's queue for a whole batch before its own generation, and both must fit SageMaker's ${INVOCATION_LIMIT.toHumanString()} `
      + `with ${INVOCATION_ALLOWANCE.toHumanString()} each for the prefill, the last token and the answer (model data compiled with continuousBatching allows up to ${MAX_GENERATION_TIME_LIMIT.toHumanString()})`;
  return [`generationTimeLimit is ${limit.toHumanString()}: use ${floor.toHumanString()} to ${max.toHumanString()}. ${reason}; `
    + `below ${floor.toHumanString()} not even one token of this model data (tpDegree ${settings.options.tpDegree}, batchSize ${settings.options.batchSize}) fits.`];
}

/** The shortest generation time limit: one decoding step of the compiled batch, in whole seconds (at least 1). */
export function minGenerationTimeLimit(settings: EndpointSettings): Duration {
  return Duration.seconds(Math.max(1, Math.ceil(stepSeconds(settings.sizing, settings.options))));
}

/** The container's whole environment (the caller's and the library's) against SageMaker's total. */
export function environmentSizeProblems(environment: Record<string, string>): string[] {
  const entries = Object.entries(environment);
  if (entries.some(([name, value]) => Token.isUnresolved(name) || Token.isUnresolved(value))) return [];
  const bytes = entries.reduce((sum, [name, value]) => sum + Buffer.byteLength(name) + Buffer.byteLength(value), 0);
  if (bytes <= MAX_ENVIRONMENT_BYTES) return [];
  return [`environment is ${bytes} bytes with the library's own variables: SageMaker accepts at most ${MAX_ENVIRONMENT_BYTES} bytes of names and values in all; pass large settings through the model data instead.`];
}

/** Names SageMaker rejects, and names or values longer than it accepts (tokens are checked by SageMaker). */
function environmentEntryProblems(environment: Record<string, string>): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(environment)) {
    if (Token.isUnresolved(name)) continue;
    if (!ENVIRONMENT_NAME.test(name)) {
      problems.push(`environment name '${name}' is not one SageMaker accepts: use letters, digits and '_', not starting with a digit, e.g. '${suggestedName(name)}'.`);
    } else if (Buffer.byteLength(name) > MAX_ENVIRONMENT_ENTRY_BYTES) {
      problems.push(`environment name '${name.slice(0, 20)}…' is ${Buffer.byteLength(name)} bytes: SageMaker accepts at most ${MAX_ENVIRONMENT_ENTRY_BYTES}.`);
    }
    if (!Token.isUnresolved(value) && Buffer.byteLength(value) > MAX_ENVIRONMENT_ENTRY_BYTES) {
      problems.push(`environment ${name} is ${Buffer.byteLength(value)} bytes: SageMaker accepts at most ${MAX_ENVIRONMENT_ENTRY_BYTES} bytes per value; pass large settings through the model data instead.`);
    }
  }
  return problems;
}

function suggestedName(name: string): string {
  const cleaned = name.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned || 'MY_SETTING';
}

function clamp(seconds: number): number {
  return Math.round(Math.min(MAX_TIMEOUT.toSeconds(), Math.max(MIN_TIMEOUT.toSeconds(), seconds)));
}

function timeoutProblem(prop: string, value: Duration): string[] {
  if (Token.isUnresolved(value.toSeconds())) return [];
  const seconds = value.toSeconds();
  if (seconds < MIN_TIMEOUT.toSeconds() || seconds > MAX_TIMEOUT.toSeconds()) {
    return [`${prop} is ${value.toHumanString()}: SageMaker accepts ${MIN_TIMEOUT.toSeconds()} to ${MAX_TIMEOUT.toSeconds()} seconds.`];
  }
  return [];
}

function volumeProblems(
  instanceType: NeuronxInstanceType,
  given: Size | undefined,
  effective: Size | undefined,
  key: kms.IKey | undefined,
): string[] {
  const problems: string[] = [];
  if (!instanceType.volumeSizeSupported) {
    if (given) problems.push(`volumeSize is set but ${instanceType} has local NVMe storage and SageMaker rejects a volume size for it: remove volumeSize.`);
    if (key) problems.push(`volumeEncryptionKey is set but ${instanceType} has local NVMe storage and SageMaker rejects a KMS key for it: remove volumeEncryptionKey.`);
  }
  if (effective && instanceType.volumeSizeSupported) {
    const gb = Math.ceil(effective.toGibibytes());
    if (gb < MIN_VOLUME_GB || gb > MAX_VOLUME_GB) {
      problems.push(`volumeSize is ${gb} GB${given ? '' : ' (derived from the model size)'}: SageMaker accepts ${MIN_VOLUME_GB} to ${MAX_VOLUME_GB} GB; ${given ? 'choose a size in that range' : 'the model is too large for one volume'}.`);
    }
  }
  return problems;
}
