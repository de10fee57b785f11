import { ArnFormat, Duration, Size, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { Construct } from 'constructs';
import { TransformersNeuronxSageMakerInferenceModelData, TransformersNeuronxSageMakerInferenceModelDataConfig } from './inference-model-data';
import { NeuronxInstanceType } from './neuronx-instance-type';
import { CONTRACT, endpointEnv, quantDtypeValue } from './private/contract';
import { batchingEnvironment, EndpointSettings, endpointProblems, endpointSettings, environmentSizeProblems } from './private/endpoint-configuration';
import { suppressWildcardFindings, wildcardFindings } from './private/nag-finding';
import { throwIfProblems } from './private/problems';
import { readinessJavaOptions, serviceHandler } from './private/service-handler';
import { workersPerInstance } from './private/sizing';
import { VARIANT_NAME } from './private/variant';
import { TransformersNeuronxSageMakerRealtimeInferenceEndpointBase } from './transformers-neuronx-sagemaker-realtime-inference-endpoint-base';

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
   * Extra environment variables for the container. Variables the library sets (worker count, NeuronCores,
   * compile options) cannot be overridden here. Names are letters, digits and '_', not starting with a digit;
   * SageMaker takes at most 1024 bytes per name and per value, and 32 KiB for all of them with the library's own.
   *
   * @default - none
   */
  readonly environment?: { [name: string]: string };

  /**
   * Number of instances. Once `autoScaleInstanceCount` is called, Application Auto Scaling owns the count: the
   * endpoint starts at its `minCapacity`, and this prop is not used (a warning says so).
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

  /**
   * How long the handler generates for one call before it answers with the text so far and
   * `finish_reason: "length"`. Set it below the shortest timeout in front of the endpoint: an API Gateway REST API
   * integration ends a request after 29 seconds by default, so 25 seconds fits behind one.
   *
   * At most 50 seconds: SageMaker ends an invocation after 60 seconds, and the prompt's prefill, the last token and
   * the answer need the rest. At most 20 seconds for model data compiled without `continuousBatching`: a request may
   * then wait in TorchServe's queue for a whole batch before its own generation, and both must fit. At least the time
   * of one decoding step of the compiled batch, in whole seconds (1 second for calm3's presets), so that one token fits.
   *
   * @default - 50 seconds with continuous batching, 20 seconds without
   */
  readonly generationTimeLimit?: Duration;
}

/**
 * A SageMaker real-time endpoint that serves transformers-neuronx artifacts on Inferentia2 or Trainium: one
 * TorchServe worker per `tpDegree` NeuronCores, each on its own cores.
 */
export class TransformersNeuronxSageMakerRealtimeInferenceEndpoint extends TransformersNeuronxSageMakerRealtimeInferenceEndpointBase {
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
  /** The most requests a worker generates together (the batch size the model was compiled for). */
  public readonly batchSize: number;
  /** The number of instances the endpoint is deployed with. */
  public readonly instanceCount: number;
  /** How long SageMaker may take to copy the model data to a new instance. */
  public readonly modelDataDownloadTimeout: Duration;
  /** How long a new instance's container may take to load the model and pass its first health check. */
  public readonly containerStartupHealthCheckTimeout: Duration;
  /** How long the handler generates for one call before it answers with the text so far. */
  public readonly generationTimeLimit: Duration;
  /** The SageMaker endpoint config. */
  public readonly endpointConfig: sagemaker.CfnEndpointConfig;

  /**
   * Binds the model data, resolves and checks the settings (throwing with every problem at once), then adds the
   * SageMaker model, endpoint config and endpoint.
   *
   * @param scope the scope of the endpoint
   * @param id the endpoint's id in its scope
   * @param props the model data to serve, and how
   */
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
    const settings = endpointSettings(props, data, instanceType);
    this.check(endpointProblems(this, props, data, settings));

    this.workersPerInstance = workersPerInstance(instanceType, settings.options.tpDegree);
    this.batchSize = settings.options.batchSize;
    this.instanceCount = props.instanceCount ?? 1;
    this._givenInstanceCount = props.instanceCount;
    this.modelDataDownloadTimeout = settings.downloadTimeout;
    this.containerStartupHealthCheckTimeout = settings.startupTimeout;
    this.generationTimeLimit = settings.generationTimeLimit;
    data.runtime.grantPull(this, role);
    const ownStatements = this.grantLogsAndMetrics(role);
    const model = this.addModel(role, data, settings, renderEnvironment(props, data, this.workersPerInstance, settings));
    this.endpointConfig = new sagemaker.CfnEndpointConfig(this, 'EndpointConfig', {
      kmsKeyId: props.volumeEncryptionKey?.keyArn,
      productionVariants: [renderProductionVariant(model, settings, props.instanceCount)],
    });
    const endpoint = new sagemaker.CfnEndpoint(this, 'Endpoint', { endpointConfigName: this.endpointConfig.attrEndpointConfigName });
    this.endpointName = endpoint.attrEndpointName;
    this.endpointArn = endpoint.ref;
    this._cfnResources = { endpoint, config: this.endpointConfig };
    this.suppressRoleFindings(role, ownStatements, props.volumeEncryptionKey?.grantEncryptDecrypt(role));
  }

  /** The SageMaker model: the runtime's image, the model data and the container's environment (checked against SageMaker's total). */
  private addModel(
    role: iam.Role, data: TransformersNeuronxSageMakerInferenceModelDataConfig, settings: EndpointSettings, environment: Record<string, string>,
  ) {
    this.check(environmentSizeProblems(environment));
    const model = new sagemaker.CfnModel(this, 'Model', {
      executionRoleArn: role.roleArn,
      enableNetworkIsolation: true,
      primaryContainer: {
        image: settings.runtime.imageUri(this, { sageMakerInstanceType: settings.instanceType }),
        modelDataSource: {
          s3DataSource: { s3Uri: data.s3Uri, s3DataType: 'S3Prefix', compressionType: 'None' },
        },
        environment,
      },
    });
    // The role's policy must exist before SageMaker checks the model can read its data and image.
    model.node.addDependency(role.node.findChild('DefaultPolicy'), ...data.dependencies);
    return model;
  }

  /** Throws one error that lists every problem, or does nothing. */
  private check(problems: string[]): void {
    throwIfProblems(`TransformersNeuronxSageMakerRealtimeInferenceEndpoint '${this.node.path}'`, problems);
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

  /** The model data suppresses the wildcard of its own read grant (prefix/*) where it makes it. */
  private suppressRoleFindings(role: iam.Role, ownStatements: iam.PolicyStatement[], volumeKeyGrant?: iam.Grant) {
    suppressWildcardFindings(role, [
      'Resource::*', // ecr:GetAuthorizationToken, granted by NeuronxRuntime.grantPull
      ...wildcardFindings(this, [...ownStatements, ...(volumeKeyGrant?.principalStatements ?? [])]),
    ], 'ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource type (the latter is limited to the SageMaker namespaces by condition); logs are limited to /aws/sagemaker/Endpoints/*'
      + (volumeKeyGrant ? '; kms:GenerateDataKey* and kms:ReEncrypt* are on the volume key only.' : '.'));
  }
}


/** The container's environment: the caller's, the model data's, and what the handler reads (see contract.json). */
function renderEnvironment(
  props: TransformersNeuronxSageMakerRealtimeInferenceEndpointProps,
  data: TransformersNeuronxSageMakerInferenceModelDataConfig,
  workers: number,
  settings: EndpointSettings,
): Record<string, string> {
  const { startupTimeout, options } = settings;
  return {
    ...props.environment,
    ...data.environment,
    [endpointEnv('tpDegree')]: String(options.tpDegree),
    [endpointEnv('nPositions')]: String(options.nPositions),
    [endpointEnv('batchSize')]: String(options.batchSize),
    [endpointEnv('amp')]: CONTRACT.defaults.amp,
    [endpointEnv('quantDtype')]: quantDtypeValue(options.quantDtype),
    [endpointEnv('workers')]: String(workers),
    // Each worker process takes the next tpDegree free NeuronCores: workers never share cores.
    [endpointEnv('coresPerWorker')]: String(options.tpDegree),
    // TorchServe 0.11.0 waits for a worker's model LOAD as long as for a response (WorkerThread.run polls every
    // command, LOAD included, with the model's responseTimeout; pytorch/serve issue 2061, a separate startup
    // timeout only after 0.11: PR 3315). A shorter timeout kills a loading worker, and every restart loads again.
    // So give it the whole startup health-check time; the handler itself ends a generation within SageMaker's
    // 60 s invocation limit (generationTimeLimit below), so no answer waits for this timeout.
    [endpointEnv('responseTimeout')]: String(startupTimeout.toSeconds()),
    // The entry of exactly the code the model data placed (code/<hash>/): no other deploy's code is ever served.
    [endpointEnv('serviceHandler')]: serviceHandler(data.codeHash),
    // /ping answers 200 only once the model has loaded (see readinessJavaOptions), with that code's plugin.
    [endpointEnv('javaOptions')]: readinessJavaOptions(data.codeHash),
    // Seconds, as a decimal number (the handler reads a float): '50' by default.
    [endpointEnv('generationTimeLimit')]: String(settings.generationTimeLimit.toMilliseconds() / 1000),
    ...batchingEnvironment(options.batchSize, workers, startupTimeout, options.continuousBatching ?? false),
  };
}

/** The one production variant: all traffic to the model on `instanceCount` instances. */
function renderProductionVariant(
  model: sagemaker.CfnModel, settings: EndpointSettings, instanceCount = 1,
): sagemaker.CfnEndpointConfig.ProductionVariantProperty {
  return {
    variantName: VARIANT_NAME,
    modelName: model.attrModelName,
    instanceType: settings.instanceType.toString(),
    initialInstanceCount: instanceCount,
    initialVariantWeight: 1,
    volumeSizeInGb: settings.volumeSize ? Math.ceil(settings.volumeSize.toGibibytes()) : undefined,
    modelDataDownloadTimeoutInSeconds: settings.downloadTimeout.toSeconds(),
    containerStartupHealthCheckTimeoutInSeconds: settings.startupTimeout.toSeconds(),
  };
}
