import { CfnWaitCondition, Duration, Size } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { CompileOptions, OptLevel, QuantDtype } from './compile-options';
import { Model } from './model';
import { NeuronxInstanceType } from './neuronx-instance-type';
import { NeuronxRuntime } from './neuronx-runtime';
import { addBatchEnvironment } from './private/compile-batch-environment';
import { compileSettings, resolveConfiguration, subnetProblems } from './private/compile-configuration';
import { addDeployWait } from './private/compile-wait';
import { HandlerFunction } from './private/handler-function';
import { throwIfProblems } from './private/problems';
import { regionProblems } from './private/regions';
import { resolvedKey, StackRegistry } from './private/stack-registry';

/**
 * What is compiled, for what, and how: the part of a NeuronxCompile that can be checked before anything is built
 * (see `NeuronxCompile.configurationProblems`).
 */
export interface NeuronxCompileConfiguration {
  /** The model to compile. */
  readonly model: Model;

  /**
   * The instance type that will serve the artifacts: the compiler targets its family, and the options are checked
   * against its NeuronCores and memory.
   *
   * @default - the compile instance type (`compileInstanceType`)
   */
  readonly servingInstanceType?: NeuronxInstanceType;

  /**
   * The EC2 instance type the compile job runs on.
   *
   * @default - the cheapest of inf2.8xlarge, inf2.24xlarge, inf2.48xlarge and trn1.32xlarge with enough host memory
   * for the model and at least tpDegree NeuronCores
   */
  readonly compileInstanceType?: NeuronxInstanceType;

  /**
   * How to compile.
   *
   * @default - tpDegree: all NeuronCores of the serving instance, bf16, 4096 positions, OptLevel.BEST_BALANCE
   */
  readonly compileOptions?: CompileOptions;

}

/**
 * The names a configuration check uses for the fields it reports on, so that its messages name the caller's own props.
 */
export interface NeuronxCompileConfigurationNames {
  /**
   * The name of the compile options (messages say `<name>.tpDegree`).
   *
   * @default 'compileOptions'
   */
  readonly compileOptions?: string;

  /**
   * The name of the compile instance type.
   *
   * @default 'compileInstanceType'
   */
  readonly compileInstanceType?: string;
}

/**
 * Properties of a NeuronxCompile.
 */
export interface NeuronxCompileProps extends NeuronxCompileConfiguration {
  /** The VPC the compile instance runs in. It needs outbound internet access (NAT) to download from Hugging Face. */
  readonly vpc: ec2.IVpc;

  /** The bucket the compiled artifacts are written to. */
  readonly bucket: s3.IBucket;

  /**
   * Run the compile on Spot capacity. A job whose instance is reclaimed is retried as many times as whole attempts
   * (each up to `startTimeout` + `timeout`) fit in the deploy's 12 hour wait, at most 3 attempts in all: with the
   * default timeout (10 hours) only one fits, so a reclaim fails the deploy (a warning says so); a `timeout` of at
   * most 5 hours 22 minutes gives 2 attempts, 3 hours 25 minutes 3. Any other failure ends the job at once.
   * On-demand jobs are not retried.
   *
   * @default false
   */
  readonly spot?: boolean;

  /**
   * Where in the VPC the compile instance runs.
   *
   * @default - the VPC's private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Root volume size of the compile instance.
   *
   * @default - what the compile job checks for (the bf16 checkpoint x 2.0 for int8 or x 1.5 for bf16, plus 10 GiB) plus 64 GiB for the image, the OS and logs
   */
  readonly volumeSize?: Size;

  /**
   * The Neuron Deep Learning Container the job runs in (and the endpoint must run).
   *
   * @default NeuronxRuntime.DEFAULT
   */
  readonly runtime?: NeuronxRuntime;

  /**
   * The longest one compile attempt (download, compile, upload) may run before Batch stops it. Together with
   * `startTimeout` it must leave the deploy's WaitCondition (at most 12 hours) 15 minutes to receive the signal; on
   * Spot it also sets how many attempts fit (see `spot`).
   *
   * @default Duration.hours(10)
   */
  readonly timeout?: Duration;

  /**
   * The longest the job may wait for an instance (RUNNABLE: no capacity, quota reached) before Batch cancels it
   * and the deploy fails with a message that says so. At least 10 minutes.
   *
   * @default Duration.minutes(30)
   */
  readonly startTimeout?: Duration;

  /**
   * The key prefix under which compiled artifacts are written; each distinct compile gets its own sub-prefix.
   *
   * @default 'neuronx-compile/'
   */
  readonly artifactRootPrefix?: string;
}

/**
 * Compiles a model with transformers-neuronx on an AWS Batch job on an EC2 Neuron instance, during `cdk deploy`.
 *
 * The artifacts (checkpoint, compiled NEFFs, completion marker) are written under a prefix that is a pure function
 * of what determines them: model and revision, runtime, compile options and serving family. A prefix that already
 * holds a completion marker needs no new compile. The deploy waits for the compile (up to 12 hours) through a
 * WaitCondition that the job's outcome is signalled to; deleting or rolling back the stack terminates the job.
 */
export class NeuronxCompile extends Construct {
  /**
   * The compile already made in `scope`'s stack that writes the artifacts `props` describe (the same bucket and
   * artifact prefix), if there is one. Serve it (`TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile`)
   * rather than making a second: two would compile the same thing into one prefix at the same time, so the
   * constructor refuses a second.
   *
   * @param scope any construct in the stack to look in
   * @param props the props the compile would be made with
   */
  public static findInStack(scope: Construct, props: NeuronxCompileProps): NeuronxCompile | undefined {
    return compiles(scope).get(artifactsKey(scope, props.bucket, compileSettings(props).artifactPrefix));
  }

  /**
   * Every reason a configuration cannot work (tensor-parallel degree, accelerator and host memory, positions), as
   * sentences that name the field, the value and what would work. Empty when it can work. A NeuronxCompile runs
   * the same check and throws; constructs that choose a configuration for their users can check it earlier.
   */
  public static configurationProblems(configuration: NeuronxCompileConfiguration, names: NeuronxCompileConfigurationNames = {}): string[] {
    return resolveConfiguration(configuration, names).problems;
  }

  /** The bucket the artifacts are in. */
  public readonly bucket: s3.IBucket;
  /** The key prefix of the artifacts (ends with '/'). */
  public readonly compiledArtifactS3Prefix: string;
  /** `s3://bucket/prefix/` of the artifacts. */
  public readonly compiledArtifactS3Url: string;
  /** The model compiled. */
  public readonly model: Model;
  /** The runtime (Neuron Deep Learning Container) the artifacts were compiled with. */
  public readonly runtime: NeuronxRuntime;
  /** The instance type the artifacts are compiled for. */
  public readonly servingInstanceType: NeuronxInstanceType;
  /** The instance type the compile job runs on. */
  public readonly compileInstanceType: NeuronxInstanceType;
  /**
   * What the artifacts are compiled with, whole: every `CompileOptions` field with its default applied (`tpDegree`,
   * `nPositions`, `batchSize`, `optLevel` and `continuousBatching` are always set; `quantDtype` only for quantized
   * weights). `TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile` carries it to the endpoint.
   */
  public readonly compileOptions: CompileOptions;
  /** Effective tensor-parallel degree. */
  public readonly tpDegree: number;
  /** Effective number of positions. */
  public readonly nPositions: number;
  /** Effective weight storage type (undefined: bf16). */
  public readonly quantDtype?: QuantDtype;
  /** Effective batch size: the most requests one model call generates for (with continuous batching, the slots). */
  public readonly batchSize: number;
  /** Whether the artifacts are compiled for continuous batching (`CompileOptions.continuousBatching`). */
  public readonly continuousBatching: boolean;
  /** Effective optimization level. */
  public readonly optLevel: OptLevel;
  /** The Batch job queue the compile job runs in. */
  public readonly jobQueue: batch.IJobQueue;
  /** The compile job's log group. */
  public readonly logGroup: logs.ILogGroup;
  /** How long the deploy waits for the compile, at most. */
  public readonly waitTimeout: Duration;

  /**
   * The function that serves this compile's custom resources; model data made from this compile in the same stack
   * has it place the inference code too.
   *
   * @internal
   */
  public readonly _lifecycleFunction: HandlerFunction;

  /**
   * The deploy's WaitCondition for this compile: what serves the artifacts in this stack comes after it (the
   * inference code placement checks the completion marker then).
   *
   * @internal
   */
  public readonly _deployWait: CfnWaitCondition;

  /**
   * Resolves and checks the configuration (throwing with every problem at once), then adds the Batch environment
   * that compiles and the deploy's wait for it.
   *
   * @param scope the scope of the compile
   * @param id the compile's id in its scope. With the stack's name, its construct path names the jobs the compile may stop.
   * @param props what to compile, for what, and where
   */
  constructor(scope: Construct, id: string, props: NeuronxCompileProps) {
    super(scope, id);
    const settings = compileSettings(props);
    const key = artifactsKey(this, props.bucket, settings.artifactPrefix);
    const twin = compiles(this).get(key);
    throwIfProblems(`NeuronxCompile '${this.node.path}'`, [
      ...settings.problems,
      ...(twin ? [`writes the same artifacts as NeuronxCompile '${twin.node.path}' (the same bucket and prefix ${settings.artifactPrefix}): `
        + 'two Batch jobs would compile the same thing into one prefix at the same time. Serve every endpoint that needs these '
        + `artifacts from '${twin.node.path}' (TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile; `
        + 'NeuronxCompile.findInStack finds it), or give this one another artifactRootPrefix.'] : []),
      ...subnetProblems(this, props.vpc, settings.vpcSubnets),
      // The job's imageUri checks the same; here the message names the prop.
      ...regionProblems(this, { image: settings.runtime.toString(), ec2: { instanceType: settings.compileInstance, prop: 'compileInstanceType' } }),
    ]);

    this.bucket = props.bucket;
    this.model = props.model;
    this.runtime = settings.runtime;
    this.servingInstanceType = settings.serving;
    this.compileInstanceType = settings.compileInstance;
    this.compileOptions = { ...settings.options };
    this.tpDegree = settings.options.tpDegree;
    this.nPositions = settings.options.nPositions;
    this.quantDtype = settings.options.quantDtype;
    this.batchSize = settings.options.batchSize;
    this.continuousBatching = settings.options.continuousBatching;
    this.optLevel = settings.options.optLevel;
    this.waitTimeout = settings.waitTimeout;
    this.compiledArtifactS3Prefix = settings.artifactPrefix;
    this.compiledArtifactS3Url = props.bucket.s3UrlForObject(this.compiledArtifactS3Prefix);

    const batchEnvironment = addBatchEnvironment(this, props, settings);
    this.jobQueue = batchEnvironment.jobQueue;
    this.logGroup = batchEnvironment.logGroup;
    const deployWait = addDeployWait(this, props.bucket, settings, batchEnvironment);
    this._lifecycleFunction = deployWait.lifecycleFunction;
    this._deployWait = deployWait.wait;
    compiles(this).register(key, this);
  }
}

/** The compiles of `scope`'s stack (not of its nested stacks, which have their own), by the artifacts they write. */
function compiles(scope: Construct): StackRegistry<NeuronxCompile> {
  return StackRegistry.of<NeuronxCompile>(scope, 'NeuronxCompiles');
}

/** The artifacts' location: the bucket by its name as the template has it (two handles on one bucket are one bucket), and the prefix. */
function artifactsKey(scope: Construct, bucket: s3.IBucket, prefix: string): string {
  return resolvedKey(scope, bucket.bucketName, prefix);
}
