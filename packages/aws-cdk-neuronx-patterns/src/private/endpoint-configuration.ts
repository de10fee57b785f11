import { Duration, Size, Token } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import { IConstruct } from 'constructs';
import { TransformersNeuronxSageMakerInferenceModelDataConfig } from '../inference-model-data';
import { NeuronxInstanceType } from '../neuronx-instance-type';
import { NeuronxRuntime } from '../neuronx-runtime';
import { TransformersNeuronxSageMakerRealtimeInferenceEndpointProps } from '../transformers-neuronx-sagemaker-realtime-inference-endpoint';
import { CONTRACT, endpointEnv } from './contract';
import { regionProblems } from './regions';
import { checkPositiveInteger, checkpointBytes, GIB, modelSizing, ModelSizing, ResolvedCompileOptions, servingProblems, weightBytes } from './sizing';

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
// SageMaker's bounds for a container's Environment (CreateModel, ContainerDefinition): the name pattern, bytes per
// name and per value, and bytes of all names and values together.
const ENVIRONMENT_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const MAX_ENVIRONMENT_ENTRY_BYTES = 1024;
const MAX_ENVIRONMENT_BYTES = 32 * 1024;

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
}

/** The settings of an endpoint with `props`, serving `data` on `instanceType`. */
export function endpointSettings(
  props: TransformersNeuronxSageMakerRealtimeInferenceEndpointProps,
  data: TransformersNeuronxSageMakerInferenceModelDataConfig,
  instanceType: NeuronxInstanceType,
): EndpointSettings {
  const sizing = modelSizing(data.model);
  return {
    instanceType,
    runtime: data.runtime,
    sizing,
    options: { tpDegree: data.tpDegree, nPositions: data.nPositions, quantDtype: data.quantDtype, batchSize: data.batchSize },
    downloadTimeout: props.modelDataDownloadTimeout
      ?? Duration.seconds(clamp(DOWNLOAD_BASE_SECONDS + DOWNLOAD_SECONDS_PER_GIB * checkpointBytes(sizing) / GIB)),
    startupTimeout: props.containerStartupHealthCheckTimeout
      ?? Duration.seconds(clamp(STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_GIB * weightBytes(sizing, data.quantDtype) / GIB)),
    volumeSize: props.volumeSize
      ?? (instanceType.volumeSizeSupported
        ? Size.gibibytes(Math.ceil(checkpointBytes(sizing) / GIB * VOLUME_CHECKPOINT_FACTOR) + VOLUME_BASE_GIB)
        : undefined),
  };
}

/**
 * TorchServe's dynamic batching for artifacts compiled for `batchSize` (contract `endpoint.batching`): none at batch 1,
 * where TorchServe runs as it always did. Above, the toolkit's SAGEMAKER_TS_* variables, all five: the toolkit
 * (sagemaker-pytorch-inference 2.0.21 torchserve.py `_generate_ts_config_properties`, ts_environment.py) writes them
 * into a per-model config as soon as one is set, with minWorkers and maxWorkers 1 and responseTimeout 60 s for those
 * not set (TorchServe 0.11.0 reads the model's workers from it: ModelServer.initModelStore), which would leave one
 * worker and kill the model load after 60 s. So the workers are the worker count and the response timeout the
 * startup health-check timeout, as TS_DEFAULT_RESPONSE_TIMEOUT.
 */
export function batchingEnvironment(batchSize: number, workers: number, responseTimeout: Duration): Record<string, string> {
  if (batchSize === 1) return {};
  return {
    [endpointEnv('serverBatchSize')]: String(batchSize),
    [endpointEnv('serverMaxBatchDelay')]: String(CONTRACT.endpoint.batching.maxBatchDelayMilliseconds),
    [endpointEnv('serverMinWorkers')]: String(workers),
    [endpointEnv('serverMaxWorkers')]: String(workers),
    [endpointEnv('serverResponseTimeout')]: String(responseTimeout.toSeconds()),
  };
}

/** Every reason the endpoint `scope` cannot serve, before its environment is rendered (see environmentSizeProblems). */
export function endpointProblems(
  scope: IConstruct,
  props: TransformersNeuronxSageMakerRealtimeInferenceEndpointProps,
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
    ...Object.keys(props.environment ?? {}).filter(k => reserved.has(k))
      .map(k => `environment sets ${k}, which the library sets from the compile options and instance type: remove it.`),
    ...environmentEntryProblems(props.environment ?? {}),
  ];
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
