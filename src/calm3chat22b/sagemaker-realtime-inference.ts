import { Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  Model,
  NeuronxCompile,
  NeuronxCompileProps,
  TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
} from 'aws-cdk-neuronx-patterns';
import { Construct } from 'constructs';
import { InstanceTypeStrategy } from './instance-type-strategy';
import { ARCHITECTURE, MODEL_ID, PARAMETER_COUNT, PINNED_REVISION } from './model-facts';
import { CompileOwners } from './private/compile-owners';
import { compileSubnetProblems } from './private/compile-subnets';

/**
 * Properties of a calm3-22b-chat SageMaker real-time inference endpoint.
 */
export interface SageMakerRealtimeInferenceProps {
  /**
   * The bucket to upload model data for hosting.
   */
  readonly bucket: s3.IBucket;

  /**
   * VPC in which this will launch compile worker instance.
   */
  readonly compileVpc: ec2.IVpc;

  /**
   * The strategy of instance types.
   */
  readonly instanceTypeStrategy: InstanceTypeStrategy;

  /**
   * Number of instances behind the endpoint. Once `endpoint.autoScaleInstanceCount` is called, Application Auto
   * Scaling owns the count: the endpoint starts at its `minCapacity` and this prop is not used (a warning says so).
   *
   * @default 1
   */
  readonly instanceCount?: number;

  /**
   * The Hugging Face revision (a commit hash) of cyberagent/calm3-22b-chat to compile. A different revision gets
   * its own artifact prefix and a new compile.
   *
   * @default '055922aa0f0fb1fbfbc97a2e31134532485ee99b' (the head of `main`, July 2024)
   */
  readonly revision?: string;

  /**
   * The subnets of `compileVpc` the compile instance runs in. They need outbound internet access (a NAT gateway):
   * the job downloads the model from Hugging Face, and AWS Batch gives the instance no public IP.
   *
   * @default - the private subnets with egress of `compileVpc`
   */
  readonly compileSubnets?: ec2.SubnetSelection;

  /**
   * Compile on Spot capacity: cheaper, but an instance can be reclaimed. A reclaimed job is retried only as often as
   * whole attempts fit in the deploy's 12-hour wait: with the compile's 10-hour attempt timeout, none, so a reclaim
   * fails the deploy (a synth warning says so; deploy again). Any other failure ends it at once.
   *
   * @default false
   */
  readonly compileSpot?: boolean;

  /**
   * The key prefix of `bucket` under which the compiled artifacts are written; each distinct compile gets its own
   * sub-prefix. Changing it compiles again into the new prefix.
   *
   * @default 'neuronx-compile/'
   */
  readonly artifactRootPrefix?: string;

  /**
   * Extra environment variables for the serving container. Variables the library sets (workers, NeuronCores,
   * compile options) cannot be set here.
   *
   * @default - none
   */
  readonly environment?: { [name: string]: string };

  /**
   * KMS key that encrypts the endpoint instance's storage volume. Only ml.inf2 instances take one (ml.trn1 has
   * local NVMe storage, and SageMaker rejects a key for it), so `InstanceTypeStrategy.lowCost` rejects it.
   *
   * @default - an AWS managed key
   */
  readonly volumeEncryptionKey?: kms.IKey;

  /**
   * How long SageMaker may take to copy the compiled model to the endpoint instance (60 seconds to 1 hour).
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
   * How long the endpoint generates for one call before it answers with the text so far and
   * `finish_reason: "length"`. Set it below the shortest timeout in front of the endpoint: an API Gateway REST API
   * integration ends a request after 29 seconds by default, so 25 seconds fits behind one.
   *
   * At most 50 seconds (SageMaker ends an invocation after 60 seconds; the prompt's prefill, the last token and the
   * answer need the rest), 20 seconds for a strategy without `continuousBatching` (a request may wait for a whole
   * batch before its own generation), and at least 1 second, the time of one decoding step of either preset rounded up.
   *
   * @default - 50 seconds with continuous batching (both presets), 20 seconds without
   */
  readonly generationTimeLimit?: Duration;
}

/**
 * cyberagent/calm3-22b-chat on a SageMaker real-time endpoint on AWS Inferentia2 or Trainium.
 *
 * During `cdk deploy` an AWS Batch job on a Neuron instance in `compileVpc` downloads the model from Hugging Face,
 * compiles it with transformers-neuronx for the serving instance and writes the artifacts under a prefix of
 * `bucket`; the endpoint then serves them. The instance types and compile options come from `instanceTypeStrategy`.
 *
 * Constructs in one stack that compile the same artifacts (same revision, strategy, bucket and
 * `artifactRootPrefix`) share the first one's compile: one Batch job, one prefix, each its own endpoint.
 */
export class SageMakerRealtimeInference extends Construct {
  /** The SageMaker endpoint that serves the model. */
  public readonly endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint;

  /** The compile job that produces the endpoint's model data (shared with constructs that compile the same artifacts). */
  public readonly compile: NeuronxCompile;

  /**
   * The props that change how the compile runs but not what it writes, by prop name: constructs share a compile
   * only when these agree.
   *
   * @internal
   */
  public readonly _compileRunSettings: { [prop: string]: unknown };

  /**
   * @param scope the construct this one is created in, usually a Stack
   * @param id the construct id, unique within `scope`
   * @param props the bucket, the compile VPC and the instance type strategy
   */
  constructor(scope: Construct, id: string, props: SageMakerRealtimeInferenceProps) {
    super(scope, id);
    const strategy = props.instanceTypeStrategy;
    const model = Model.fromHuggingFace(MODEL_ID, {
      revision: props.revision ?? PINNED_REVISION,
      parameterCount: PARAMETER_COUNT,
      architecture: ARCHITECTURE,
    });

    const problems = compileSubnetProblems(props.compileVpc, props.compileSubnets);
    if (problems.length > 0) {
      throw new Error(`SageMakerRealtimeInference '${this.node.path}': ${problems.join(' ')}`);
    }

    // The strategy was checked against the model when it was made; the patterns check again before they build.
    const compileProps: NeuronxCompileProps = {
      vpc: props.compileVpc,
      vpcSubnets: props.compileSubnets,
      spot: props.compileSpot,
      bucket: props.bucket,
      artifactRootPrefix: props.artifactRootPrefix,
      model,
      servingInstanceType: strategy.instanceType,
      compileInstanceType: strategy.instanceTypeForCompile,
      compileOptions: strategy._compileOptions(),
    };
    this._compileRunSettings = {
      'compileVpc': props.compileVpc.vpcId,
      'compileSubnets': props.compileVpc.selectSubnets(props.compileSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }).subnetIds,
      'compileSpot': props.compileSpot ?? false,
      'instanceTypeStrategy.instanceTypeForCompile': strategy.instanceTypeForCompile.instanceTypeName,
    };
    const shared = this.sharedCompile(compileProps);
    this.compile = shared ?? new NeuronxCompile(this, 'NeuronxCompile', compileProps);
    if (!shared) compileOwners(this).register(this.compile, this);
    this.endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(this, 'RealtimeInference', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(this.compile),
      instanceType: strategy.instanceType,
      instanceCount: props.instanceCount,
      environment: props.environment,
      volumeEncryptionKey: props.volumeEncryptionKey,
      modelDataDownloadTimeout: props.modelDataDownloadTimeout,
      containerStartupHealthCheckTimeout: props.containerStartupHealthCheckTimeout,
      generationTimeLimit: props.generationTimeLimit,
    });
  }

  /**
   * The compile of another SageMakerRealtimeInference in this stack that writes the same artifacts (same model,
   * revision, strategy, bucket and prefix), to share: two would be two Batch jobs compiling the same thing into one
   * prefix at the same time. Throws when that construct runs its compile with other settings (sharing would silently
   * drop them). A NeuronxCompile made some other way is not shared: its constructor refuses the twin with its own message.
   */
  private sharedCompile(compileProps: NeuronxCompileProps): NeuronxCompile | undefined {
    const existing = NeuronxCompile.findInStack(this, compileProps);
    const owner = existing && compileOwners(this).ownerOf(existing);
    if (!existing || !owner) {
      return undefined;
    }
    const stack = Stack.of(this);
    const resolved = (value: unknown) => JSON.stringify(stack.resolve(value)) ?? 'undefined';
    const differ = Object.keys(this._compileRunSettings)
      .filter(name => resolved(this._compileRunSettings[name]) !== resolved(owner._compileRunSettings[name]));
    if (differ.length > 0) {
      throw new Error(`SageMakerRealtimeInference '${this.node.path}' compiles the same artifacts as '${owner.node.path}' (same model, `
        + `revision, strategy and bucket: prefix ${existing.compiledArtifactS3Prefix}), and constructs that compile the same artifacts in one `
        + `stack share one compile, but ${differ.join(' and ')} differ: give both the same ${differ.join(' and ')} to share the compile, `
        + 'or give this one another artifactRootPrefix to compile its own copy.');
    }
    return existing;
  }
}

/** The SageMakerRealtimeInference constructs of `scope`'s stack that made a compile, by the compile. */
function compileOwners(scope: Construct): CompileOwners<SageMakerRealtimeInference> {
  return CompileOwners.of<SageMakerRealtimeInference>(scope, 'Calm3ChatCompileOwners');
}
