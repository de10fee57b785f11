import { ArnFormat, Duration, Size, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { Construct } from 'constructs';
import { TransformersNeuronxSageMakerInferenceModelData } from './inference-model-data';
import { NeuronxInstanceType } from './neuronx-instance-type';
import { NeuronxRuntime } from './neuronx-runtime';
import { CONTRACT, endpointEnv, quantDtypeValue } from './private/contract';
import { suppressWildcardFindings, wildcardFindings } from './private/nag-finding';
import { regionProblems } from './private/regions';
import { SERVICE_HANDLER } from './private/service-handler';
import {
  checkPositiveInteger, checkpointBytes, GIB, servingProblems, throwIfProblems, weightBytes, workersPerInstance,
} from './private/sizing';

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

/**
 * Properties of a TransformersNeuronxSageMakerRealtimeInferenceEndpoint.
 */
export interface TransformersNeuronxSageMakerRealtimeInferenceEndpointProps {
  /** The compiled model to serve. */
  readonly modelData: TransformersNeuronxSageMakerInferenceModelData;

  /**
   * The instance type to serve on.
   *
   * @default - the instance type the model data was compiled for
   */
  readonly instanceType?: NeuronxInstanceType;

  /**
   * The image to serve with. It must be the one the artifacts were compiled with.
   *
   * @default - the image of the model data
   */
  readonly image?: NeuronxRuntime;

  /**
   * Extra environment variables for the container. Variables the library sets (worker count, NeuronCores,
   * compile options) cannot be overridden here. Names are letters, digits and '_', not starting with a digit;
   * SageMaker takes at most 1024 bytes per name and per value, and 32 KiB for all of them with the library's own.
   *
   * @default - none
   */
  readonly environment?: { [name: string]: string };

  /**
   * Number of instances.
   *
   * @default 1
   */
  readonly instanceCount?: number;

  /**
   * Size of the storage volume for the model data. Only inf2 accepts one (trn1 has local NVMe storage).
   *
   * @default - on inf2, 1.25 times the bf16 checkpoint plus 16 GiB; on trn1, none
   */
  readonly volumeSize?: Size;

  /**
   * KMS key that encrypts the storage volume (inf2 only).
   *
   * @default - an AWS managed key
   */
  readonly volumeEncryptionKey?: kms.IKey;

  /**
   * How long SageMaker may take to copy the model data to the instance (60 seconds to 1 hour).
   *
   * @default - 300 seconds plus 20 seconds per GiB of model data, at most 1 hour
   */
  readonly modelDataDownloadTimeout?: Duration;

  /**
   * How long the container may take to load the model and pass its first health check (60 seconds to 1 hour).
   *
   * @default - 600 seconds plus 30 seconds per GiB of weights, at most 1 hour
   */
  readonly containerStartupHealthCheckTimeout?: Duration;
}

/**
 * A SageMaker real-time endpoint that serves transformers-neuronx artifacts on Inferentia2 or Trainium: one
 * TorchServe worker per `tpDegree` NeuronCores, each on its own cores.
 */
export class TransformersNeuronxSageMakerRealtimeInferenceEndpoint extends Construct {
  /** The endpoint's name. */
  public readonly endpointName: string;
  /** The endpoint's ARN. */
  public readonly endpointArn: string;
  /** The role the model runs as. */
  public readonly role: iam.IRole;
  /** The instance type served on. */
  public readonly instanceType: NeuronxInstanceType;
  /** Model copies (workers) on each instance. */
  public readonly workersPerInstance: number;
  /** The SageMaker endpoint config. */
  public readonly endpointConfig: sagemaker.CfnEndpointConfig;

  constructor(scope: Construct, id: string, props: TransformersNeuronxSageMakerRealtimeInferenceEndpointProps) {
    super(scope, id);
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com'),
      description: 'SageMaker model: reads its own model data prefix and pulls the Neuron DLC image',
    });
    this.role = role;
    const data = props.modelData.bind(this, role);
    const instanceType = props.instanceType ?? data.compiledFor;
    if (!instanceType) {
      throw new Error(`TransformersNeuronxSageMakerRealtimeInferenceEndpoint '${this.node.path}': instanceType is required when the model data does not say what it was compiled for.`);
    }
    this.instanceType = instanceType;
    const image = props.image ?? data.runtime;
    const sizing = { parameterCount: data.model.parameterCount, ...data.model.architecture };
    const options = { tpDegree: data.tpDegree, nPositions: data.nPositions, quantDtype: data.quantDtype, batchSize: CONTRACT.defaults.batchSize };

    const downloadTimeout = props.modelDataDownloadTimeout
      ?? Duration.seconds(clamp(DOWNLOAD_BASE_SECONDS + DOWNLOAD_SECONDS_PER_GIB * checkpointBytes(sizing) / GIB));
    const startupTimeout = props.containerStartupHealthCheckTimeout
      ?? Duration.seconds(clamp(STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_GIB * weightBytes(sizing, data.quantDtype) / GIB));
    const volumeSize = props.volumeSize
      ?? (instanceType.volumeSizeSupported
        ? Size.gibibytes(Math.ceil(checkpointBytes(sizing) / GIB * VOLUME_CHECKPOINT_FACTOR) + VOLUME_BASE_GIB)
        : undefined);
    const reserved = new Set(Object.values(CONTRACT.endpoint.environment));

    const what = `TransformersNeuronxSageMakerRealtimeInferenceEndpoint '${this.node.path}'`;
    throwIfProblems(what, [
      ...servingProblems('modelData', sizing, instanceType, options),
      ...(data.compiledFor && data.compiledFor.family !== instanceType.family
        ? [`instanceType is ${instanceType} but the model data was compiled for ${data.compiledFor.family}: Neuron artifacts load only on the family they were compiled for; use a ${data.compiledFor.family} instance type or compile for ${instanceType.family}.`]
        : []),
      ...(image.toString() !== data.runtime.toString()
        ? [`image is ${image} but the model data was compiled with ${data.runtime}: compiled artifacts load only under the compiler that made them; leave image unset.`]
        : []),
      ...regionProblems(this, { image: image.toString(), sageMaker: { instanceType, prop: 'instanceType' } }),
      ...checkPositiveInteger('instanceCount', props.instanceCount),
      ...timeoutProblem('modelDataDownloadTimeout', downloadTimeout),
      ...timeoutProblem('containerStartupHealthCheckTimeout', startupTimeout),
      ...volumeProblems(instanceType, props.volumeSize, volumeSize, props.volumeEncryptionKey),
      ...Object.keys(props.environment ?? {}).filter(k => reserved.has(k))
        .map(k => `environment sets ${k}, which the library sets from the compile options and instance type: remove it.`),
      ...environmentEntryProblems(props.environment ?? {}),
    ]);

    this.workersPerInstance = workersPerInstance(instanceType, data.tpDegree);
    data.runtime.grantPull(this, role);
    const ownStatements = this.grantLogsAndMetrics(role);

    const environment: Record<string, string> = {
      ...props.environment,
      ...data.environment,
      [endpointEnv('program')]: CONTRACT.endpoint.handlerScript,
      [endpointEnv('tpDegree')]: String(data.tpDegree),
      [endpointEnv('nPositions')]: String(data.nPositions),
      [endpointEnv('batchSize')]: String(CONTRACT.defaults.batchSize),
      [endpointEnv('amp')]: CONTRACT.defaults.amp,
      [endpointEnv('quantDtype')]: quantDtypeValue(data.quantDtype),
      [endpointEnv('workers')]: String(this.workersPerInstance),
      // Each worker process takes the next tpDegree free NeuronCores: workers never share cores.
      [endpointEnv('coresPerWorker')]: String(data.tpDegree),
      // TorchServe 0.11.0 waits for a worker's model LOAD as long as for a response (WorkerThread.run polls every
      // command, LOAD included, with the model's responseTimeout; pytorch/serve issue 2061, a separate startup
      // timeout only after 0.11: PR 3315). A shorter timeout kills a loading worker, and every restart loads again.
      // So give it the whole startup health-check time; the handler itself ends a generation within SageMaker's
      // 60 s invocation limit (generationTimeLimit below), so no answer waits for this timeout.
      [endpointEnv('responseTimeout')]: String(startupTimeout.toSeconds()),
      [endpointEnv('serviceHandler')]: SERVICE_HANDLER,
      [endpointEnv('generationTimeLimit')]: String(CONTRACT.defaults.generationTimeLimitSeconds),
    };
    throwIfProblems(what, environmentSizeProblems(environment));

    const model = new sagemaker.CfnModel(this, 'Model', {
      executionRoleArn: role.roleArn,
      enableNetworkIsolation: true,
      primaryContainer: {
        image: image.imageUri(this, { sageMakerInstanceType: instanceType }),
        modelDataSource: {
          s3DataSource: { s3Uri: data.s3Uri, s3DataType: 'S3Prefix', compressionType: 'None' },
        },
        environment,
      },
    });
    // The role's policy must exist before SageMaker checks the model can read its data and image.
    model.node.addDependency(role.node.findChild('DefaultPolicy'), ...data.dependencies);

    this.endpointConfig = new sagemaker.CfnEndpointConfig(this, 'EndpointConfig', {
      kmsKeyId: props.volumeEncryptionKey?.keyArn,
      productionVariants: [{
        variantName: 'AllTraffic',
        modelName: model.attrModelName,
        instanceType: instanceType.toString(),
        initialInstanceCount: props.instanceCount ?? 1,
        initialVariantWeight: 1,
        volumeSizeInGb: volumeSize ? Math.ceil(volumeSize.toGibibytes()) : undefined,
        modelDataDownloadTimeoutInSeconds: downloadTimeout.toSeconds(),
        containerStartupHealthCheckTimeoutInSeconds: startupTimeout.toSeconds(),
      }],
    });
    const endpoint = new sagemaker.CfnEndpoint(this, 'Endpoint', { endpointConfigName: this.endpointConfig.attrEndpointConfigName });
    this.endpointName = endpoint.attrEndpointName;
    this.endpointArn = endpoint.ref;
    const volumeKeyGrant = props.volumeEncryptionKey?.grantEncryptDecrypt(role);

    // The model data suppresses the wildcard of its own read grant (prefix/*) where it makes it.
    suppressWildcardFindings(role, [
      'Resource::*', // ecr:GetAuthorizationToken, granted by NeuronxRuntime.grantPull
      ...wildcardFindings(this, [...ownStatements, ...(volumeKeyGrant?.principalStatements ?? [])]),
    ], 'ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource type (the latter is limited to the SageMaker namespaces by condition); logs are limited to /aws/sagemaker/Endpoints/*'
      + (volumeKeyGrant ? '; kms:GenerateDataKey* and kms:ReEncrypt* are on the volume key only.' : '.'));
  }

  /** Grants invoking this endpoint. */
  public grantInvoke(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['sagemaker:InvokeEndpoint'],
      resourceArns: [this.endpointArn],
    });
  }

  /** Grants what SageMaker's container logging and metrics need, and returns the statements. */
  private grantLogsAndMetrics(role: iam.Role): iam.PolicyStatement[] {
    const stack = Stack.of(this);
    const statements = [
      new iam.PolicyStatement({
        actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '/aws/sagemaker/Endpoints/*', arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
      }),
      new iam.PolicyStatement({
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringLike: { 'cloudwatch:namespace': ['/aws/sagemaker/*', 'AWS/SageMaker'] } },
      }),
    ];
    statements.forEach(statement => role.addToPrincipalPolicy(statement));
    return statements;
  }
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

/** The container's whole environment (the caller's and the library's) against SageMaker's total. */
function environmentSizeProblems(environment: Record<string, string>): string[] {
  const entries = Object.entries(environment);
  if (entries.some(([name, value]) => Token.isUnresolved(name) || Token.isUnresolved(value))) return [];
  const bytes = entries.reduce((sum, [name, value]) => sum + Buffer.byteLength(name) + Buffer.byteLength(value), 0);
  if (bytes <= MAX_ENVIRONMENT_BYTES) return [];
  return [`environment is ${bytes} bytes with the library's own variables: SageMaker accepts at most ${MAX_ENVIRONMENT_BYTES} bytes of names and values in all; pass large settings through the model data instead.`];
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
