import * as crypto from 'crypto';
import { Annotations, CfnWaitCondition, CfnWaitConditionHandle, CustomResource, Duration, Fn, Size, Stack } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { CompileOptions, OptLevel, QuantDtype } from './compile-options';
import { Model } from './model';
import { NeuronxInstanceType } from './neuronx-instance-type';
import { NeuronxRuntime } from './neuronx-runtime';
import { registerCompileFunction } from './private/compile-function';
import { COMPILE_CODE_ZIP, CONTRACT, compileEnv, quantDtypeValue } from './private/contract';
import { HandlerFunction, handlerFunction, LOG_RETENTION } from './private/handler-function';
import { COMPILE_JOB_RESOURCE_TYPE, COMPILE_JOB_TAG_KEY, CompileJobProperties, STATE_HANDLER_ENV } from './private/handler-protocol';
import { suppressNag } from './private/nag';
import { defaultPolicyStatements, nagFinding, suppressWildcardFindings, wildcardFindings, wildcardFindingsOfJson } from './private/nag-finding';
import { grantPrefix } from './private/s3-prefix';
import {
  checkPositiveInteger, checkpointBytes, DEFAULT_N_POSITIONS, GIB, compileHostBytesNeeded, compileInstanceProblems, hostBytes, ModelSizing,
  ResolvedCompileOptions, servingProblems, throwIfProblems,
} from './private/sizing';
import { grantAssetRead, stageAsset } from './private/staged-asset';

// A WaitCondition waits at most 12 hours (AWS::CloudFormation::WaitCondition Timeout: 43200 s). This is the
// longest a deploy can wait for a compile; a custom resource could wait only one hour (ServiceTimeout 3600 s).
const MAX_WAIT = Duration.hours(12);
// Time for the job-state event to reach its Lambda and the signal to land, after the job ends.
const SIGNAL_MARGIN = Duration.minutes(15);
// Batch's job-state time limit action accepts 600 to 86400 seconds.
const MIN_START_TIMEOUT = Duration.minutes(10);
const DEFAULT_START_TIMEOUT = Duration.minutes(30);
const DEFAULT_TIMEOUT = Duration.hours(10);
const DEFAULT_OPT_LEVEL = OptLevel.BEST_BALANCE;
const DEFAULT_ARTIFACT_ROOT = 'neuronx-compile/';
// On Spot, attempts when the instance is reclaimed; any other failure ends the job at once. On-demand: one attempt.
const SPOT_RETRY_ATTEMPTS = 3;
// The status reason of a job whose Spot instance was reclaimed (aws-cdk-lib's batch.Reason.SPOT_INSTANCE_RECLAIMED).
const SPOT_RECLAIMED_STATUS_REASON = 'Host EC2*';
// The ECS agent and the OS keep part of the host memory; the container gets the rest.
const CONTAINER_MEMORY_FRACTION = 0.9;
// Root volume: the bf16 checkpoint twice (download and the copy transformers-neuronx reads while compiling,
// plus the compiled artifacts), and room for the ~20 GiB container image and the compiler's work files.
const VOLUME_CHECKPOINT_FACTOR = 2;
const VOLUME_BASE_GIB = 64;
const MAX_VOLUME_GIB = 16384;
const NEURON_AMI_PARAMETER = '/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id';
const WORK_DIR = '/var/tmp/neuronx';
// Instances big enough to compile, cheapest first (used when no compile instance type is given).
const COMPILE_CANDIDATES = [
  NeuronxInstanceType.INF2_8XLARGE, NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_48XLARGE, NeuronxInstanceType.TRN1_32XLARGE,
];

const OPT_LEVEL_FLAG: Record<OptLevel, number> = {
  [OptLevel.MINIMIZE_COMPILE_TIME]: 1,
  [OptLevel.BEST_BALANCE]: 2,
  [OptLevel.BEST_EXECUTION]: 3,
};

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
   * @default - the compile instance type
   */
  readonly servingInstanceType?: NeuronxInstanceType;

  /**
   * The EC2 instance type the compile job runs on.
   *
   * @default - the cheapest of inf2.8xlarge, inf2.24xlarge, inf2.48xlarge and trn1.32xlarge with enough host memory
   * for the model and at least tpDegree NeuronCores
   */
  readonly instanceType?: NeuronxInstanceType;

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
   * @default 'instanceType'
   */
  readonly instanceType?: string;
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
   * Run the compile on Spot capacity. A job whose instance is reclaimed is retried (up to 3 attempts in all), within
   * the 12 hour wait; any other failure ends it at once. On-demand jobs are not retried.
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
   * @default - twice the bf16 checkpoint plus 64 GiB
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
   * `startTimeout` it must leave the deploy's WaitCondition (at most 12 hours) 15 minutes to receive the signal.
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
 * of what determines them: model and revision, image, compile options and serving family. A prefix that already
 * holds a completion marker needs no new compile. The deploy waits for the compile (up to 12 hours) through a
 * WaitCondition that the job's outcome is signalled to; deleting or rolling back the stack terminates the job.
 */
export class NeuronxCompile extends Construct {
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
  /** The image the artifacts were compiled with. */
  public readonly runtime: NeuronxRuntime;
  /** The instance type the artifacts are compiled for. */
  public readonly servingInstanceType: NeuronxInstanceType;
  /** The instance type the compile job runs on. */
  public readonly instanceType: NeuronxInstanceType;
  /** Effective tensor-parallel degree. */
  public readonly tpDegree: number;
  /** Effective number of positions. */
  public readonly nPositions: number;
  /** Effective weight storage type (undefined: bf16). */
  public readonly quantDtype?: QuantDtype;
  /** Effective optimization level. */
  public readonly optLevel: OptLevel;
  /** The Batch job queue the compile job runs in. */
  public readonly jobQueue: batch.IJobQueue;
  /** The compile job's log group. */
  public readonly logGroup: logs.ILogGroup;
  /** How long the deploy waits for the compile, at most. */
  public readonly waitTimeout: Duration;

  constructor(scope: Construct, id: string, props: NeuronxCompileProps) {
    super(scope, id);
    this.bucket = props.bucket;
    this.model = props.model;
    this.runtime = props.runtime ?? NeuronxRuntime.DEFAULT;
    const sizing = modelSizing(props.model);

    // Resolve the instance types and the options, then check them all before building anything.
    const { compileInstance, serving, resolved, problems } = resolveConfiguration(props, {});
    const quantDtype = resolved.quantDtype;
    const startTimeout = props.startTimeout ?? DEFAULT_START_TIMEOUT;
    const timeout = props.timeout ?? DEFAULT_TIMEOUT;
    const vpcSubnets = props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
    throwIfProblems(`NeuronxCompile '${this.node.path}'`, [
      ...problems,
      ...timeoutProblems(timeout, startTimeout),
      ...this.subnetProblems(props.vpc, vpcSubnets),
    ]);

    this.servingInstanceType = serving;
    this.instanceType = compileInstance;
    this.tpDegree = resolved.tpDegree;
    this.nPositions = resolved.nPositions;
    this.quantDtype = quantDtype;
    this.optLevel = props.compileOptions?.optLevel ?? DEFAULT_OPT_LEVEL;
    this.waitTimeout = Duration.seconds(Math.min(MAX_WAIT.toSeconds(), startTimeout.toSeconds() + timeout.toSeconds() + SIGNAL_MARGIN.toSeconds()));

    const jobEnvironment: Record<string, string> = {
      [compileEnv('tpDegree')]: String(this.tpDegree),
      [compileEnv('nPositions')]: String(this.nPositions),
      [compileEnv('batchSize')]: String(resolved.batchSize),
      [compileEnv('amp')]: CONTRACT.defaults.amp,
      [compileEnv('quantDtype')]: quantDtypeValue(quantDtype),
      [compileEnv('optLevel')]: String(OPT_LEVEL_FLAG[this.optLevel]),
      [compileEnv('compilerTarget')]: serving.family,
      [compileEnv('imageUri')]: this.runtime.toString(),
    };
    const fingerprint = artifactFingerprint(props.model, this.runtime, jobEnvironment);
    this.compiledArtifactS3Prefix = `${normalizePrefix(props.artifactRootPrefix ?? DEFAULT_ARTIFACT_ROOT)}${slug(props.model.modelId)}/${fingerprint}/`;
    this.compiledArtifactS3Url = props.bucket.s3UrlForObject(this.compiledArtifactS3Prefix);
    const markerKey = `${this.compiledArtifactS3Prefix}${CONTRACT.layout.marker}`;

    // --- The Batch environment: one Neuron instance at most, scaled to zero when idle.
    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Neuron compile worker: no inbound, outbound to Hugging Face, S3 and ECR',
      allowAllOutbound: true,
    });
    const volumeSize = props.volumeSize ?? Size.gibibytes(Math.min(MAX_VOLUME_GIB,
      Math.ceil(checkpointBytes(sizing) / GIB * VOLUME_CHECKPOINT_FACTOR) + VOLUME_BASE_GIB));
    const launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      requireImdsv2: true,
      blockDevices: [{
        deviceName: '/dev/xvda', // root device of the Amazon Linux 2023 ECS AMIs
        volume: ec2.BlockDeviceVolume.ebs(volumeSize.toGibibytes(), {
          encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3, deleteOnTermination: true,
        }),
      }],
    });
    const computeEnvironment = new batch.ManagedEc2EcsComputeEnvironment(this, 'ComputeEnvironment', {
      vpc: props.vpc,
      vpcSubnets,
      securityGroups: [securityGroup],
      instanceTypes: [compileInstance.ec2InstanceType],
      useOptimalInstanceClasses: false,
      minvCpus: 0,
      maxvCpus: compileInstance.vcpus,
      spot: props.spot ?? false,
      allocationStrategy: props.spot ? batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED : batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
      launchTemplate,
      images: [{
        // The Neuron ECS-optimized AMI, resolved by CloudFormation from its public SSM parameter (no lookup).
        image: ec2.MachineImage.fromSsmParameter(NEURON_AMI_PARAMETER),
        imageType: batch.EcsMachineImageType.ECS_AL2023,
      }],
    });
    // Pin the launch template version. Without one Batch uses the template's default version, read when the
    // compute environment was created; CloudFormation updates the template in place (a new version) and leaves the
    // compute environment's properties as they were, so a new volume size would never reach an instance. A changed
    // version is a changed property: CloudFormation updates the compute environment, and Batch's infrastructure
    // update takes the new version (AWS Batch API reference, LaunchTemplateSpecification: "changing the launch
    // template requires an infrastructure update of the compute environment"). Infrastructure updates need the Batch
    // service-linked role (no ServiceRole set) and BEST_FIT_PROGRESSIVE or SPOT_PRICE_CAPACITY_OPTIMIZED, as here
    // (AWS Batch user guide, "Perform infrastructure updates"). aws-cdk-lib renders only the id.
    (computeEnvironment.node.defaultChild as batch.CfnComputeEnvironment)
      .addPropertyOverride('ComputeResources.LaunchTemplate.Version', launchTemplate.latestVersionNumber);
    const jobQueue = new batch.JobQueue(this, 'JobQueue', {
      computeEnvironments: [{ computeEnvironment, order: 1 }],
      jobStateTimeLimitActions: [
        batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
        batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
        batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
      ].map(reason => ({
        action: batch.JobStateTimeLimitActionsAction.CANCEL, maxTime: startTimeout, reason, state: batch.JobStateTimeLimitActionsState.RUNNABLE,
      })),
    });
    this.jobQueue = jobQueue;

    // --- The job: the pinned image as it is, the compile program from a small file asset.
    const logGroup = new logs.LogGroup(this, 'JobLogs', { retention: LOG_RETENTION });
    this.logGroup = logGroup;
    // compile/ and the handler, whose model-building function the compile job imports (see neuronx_compile.py).
    const code = stageAsset(this, 'CompileCode', { path: COMPILE_CODE_ZIP });
    const jobRole = new iam.Role(this, 'JobRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Neuron compile job: reads the model, writes its own artifact prefix',
    });
    const jobPrefixFindings = wildcardFindings(this, grantPrefix(props.bucket, this.compiledArtifactS3Prefix, jobRole, 'readWrite'));
    grantAssetRead(code, jobRole);
    // What the model grants (its weights' prefix, its token secret) is the model's to scope: the wildcards it grants
    // are listed in the job role's cdk-nag suppression as they are granted.
    const { result: modelConfig, findings: modelFindings } = withWildcardFindings(this, jobRole, () => props.model.bind(this, jobRole));
    const executionRole = new iam.Role(this, 'ExecutionRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Neuron compile job: pulls the Neuron DLC image and writes its logs',
    });
    this.runtime.grantPull(this, executionRole);
    logGroup.grantWrite(executionRole);

    const script = [
      'set -euo pipefail',
      `mkdir -p "$${compileEnv('workDir')}/code" && cd "$${compileEnv('workDir')}"`,
      `aws s3 cp --only-show-errors "$${compileEnv('codeS3Uri')}" code.zip`,
      'python3 -m zipfile -e code.zip code',
      `exec python3 code/compile/${CONTRACT.compileJob.entrypointScript}`,
    ].join('\n');
    const environment: Record<string, string> = {
      ...modelConfig.environment,
      ...jobEnvironment,
      [compileEnv('artifactS3Uri')]: this.compiledArtifactS3Url,
      [compileEnv('codeS3Uri')]: code.s3ObjectUrl,
      [compileEnv('workDir')]: WORK_DIR,
      [compileEnv('releaseEntrypoint')]: '1',
    };
    // An L1 job definition: its properties are the documented ones one to one, and the L2 would load aws-ecs,
    // which on its own costs more synth time than everything else this construct does.
    const jobDefinition = new batch.CfnJobDefinition(this, 'JobDefinition', {
      type: 'container',
      platformCapabilities: ['EC2'],
      timeout: { attemptDurationSeconds: timeout.toSeconds() },
      // Spot only: retry when the instance was reclaimed, exit on anything else. On-demand: Batch's default of one
      // attempt (a failed compile is not retried: it would fail the same way, on a Neuron instance billed by the hour).
      retryStrategy: props.spot ? {
        attempts: SPOT_RETRY_ATTEMPTS,
        evaluateOnExit: [
          { onStatusReason: SPOT_RECLAIMED_STATUS_REASON, action: 'RETRY' },
          { onReason: '*', action: 'EXIT' },
        ],
      } : undefined,
      containerProperties: {
        image: this.runtime.imageUri(this, { ec2InstanceType: compileInstance }),
        command: this.runtime.containerCommand(['bash', '-c', script]),
        environment: Object.entries(environment).map(([name, value]) => ({ name, value })),
        jobRoleArn: jobRole.roleArn,
        executionRoleArn: executionRole.roleArn,
        resourceRequirements: [
          { type: 'VCPU', value: String(compileInstance.vcpus) },
          { type: 'MEMORY', value: String(Math.floor(compileInstance.memory.toMebibytes() * CONTAINER_MEMORY_FRACTION)) },
        ],
        // Batch has no Neuron resource type: expose exactly the instance's devices (a missing one fails the start).
        linuxParameters: {
          devices: compileInstance.devicePaths.map(p => ({ hostPath: p, containerPath: p, permissions: ['READ', 'WRITE'] })),
        },
        logConfiguration: {
          logDriver: 'awslogs',
          options: {
            'awslogs-group': logGroup.logGroupName,
            'awslogs-region': Stack.of(this).region,
            'awslogs-stream-prefix': 'compile',
          },
        },
      },
    });

    // --- The wait, signalled with the outcome. CloudFormation cannot update a WaitCondition (Count, Handle and
    // Timeout: "Updates aren't supported"), and a WaitCondition added in an update needs a new handle: it evaluates
    // the signals its handle already holds, an earlier deploy's too (AWS::CloudFormation::WaitCondition reference,
    // Handle). So whatever the deploy waits for (the artifacts' bucket and prefix) and the wait's own Timeout name a
    // new WaitCondition with a new handle; nothing else does (no needless re-waits). The custom resource signals the
    // handle before the WaitCondition exists (it depends on the custom resource): the signal waits at the handle.
    const waitId = waitIdentity(Stack.of(this).resolve(props.bucket.bucketName), this.compiledArtifactS3Prefix, this.waitTimeout);
    const handle = new CfnWaitConditionHandle(this, `WaitHandle${waitId}`);

    // One function for everything that happens to the prefix during a deploy (see compile-lifecycle.lambda.ts):
    // CloudFormation's requests start the job (or find it compiled already) and stop it; the job-state rule's
    // events signal the deploy when it ends; model data made from this compile has it place the inference code.
    // What the events need (describe jobs, read the artifact prefix) the requests need too: one role serves all.
    const lifecycleFunction = handlerFunction(this, 'LifecycleFunction', {
      handler: 'compileLifecycle',
      description: 'Starts and stops the Neuron compile job, signals the deploy when it ends, and places the inference code',
      timeout: Duration.minutes(2),
      environment: {
        [STATE_HANDLER_ENV.artifactUriEnvName]: compileEnv('artifactS3Uri'),
        [STATE_HANDLER_ENV.markerName]: CONTRACT.layout.marker,
        [STATE_HANDLER_ENV.runnableTimeoutSeconds]: String(startTimeout.toSeconds()),
        [STATE_HANDLER_ENV.logGroupName]: logGroup.logGroupName,
      },
    });
    const lifecycleRole = lifecycleFunction.role;
    registerCompileFunction(this, lifecycleFunction);

    // The job's end is signalled by a rule on the queue's job-state events. The rule and its permission to invoke
    // the function exist before the job is submitted (the custom resource below depends on them): a job that
    // ended before them would signal nothing, and the deploy would wait out the whole WaitCondition timeout.
    // An L1 rule and permission: aws-events-targets would load most of aws-cdk-lib for one Lambda target.
    const rule = new events.CfnRule(this, 'JobStateRule', {
      description: 'Neuron compile job ended',
      eventPattern: {
        'source': ['aws.batch'],
        'detail-type': ['Batch Job State Change'],
        'detail': { jobQueue: [jobQueue.jobQueueArn], status: ['SUCCEEDED', 'FAILED'] },
      },
      targets: [{
        id: 'LifecycleFunction',
        arn: lifecycleFunction.functionArn,
        retryPolicy: { maximumRetryAttempts: 10, maximumEventAgeInSeconds: Duration.hours(1).toSeconds() },
      }],
    });
    const rulePermission = new lambda.CfnPermission(this, 'JobStateRulePermission', {
      action: 'lambda:InvokeFunction',
      functionName: lifecycleFunction.functionArn,
      principal: 'events.amazonaws.com',
      sourceArn: rule.attrArn,
    });

    // The function may stop only jobs it tagged as this compile's: it submits each job with the tag
    // `neuronx-compile: <this construct's id>` (Batch authorizes tagging on submit as batch:TagResource), and may
    // terminate a job only when it carries that tag. The value names the construct, not the artifact prefix, so
    // that after a replacement (a new prefix, a new job) the old job still carries a tag the policy allows.
    const jobTagValue = compileTagValue(this);
    const jobArns = Stack.of(this).formatArn({ service: 'batch', resource: 'job', resourceName: '*' });
    const jobDefinitionArns = jobDefinitionArnAnyRevision(this, jobDefinition);
    lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({
      actions: ['batch:SubmitJob'],
      resources: [jobQueue.jobQueueArn, jobDefinitionArns],
    }));
    lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({
      actions: ['batch:SubmitJob', 'batch:TagResource'],
      resources: [jobArns],
      conditions: {
        'StringEquals': { [`aws:RequestTag/${COMPILE_JOB_TAG_KEY}`]: jobTagValue },
        'ForAllValues:StringEquals': { 'aws:TagKeys': [COMPILE_JOB_TAG_KEY] },
      },
    }));
    lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({
      actions: ['batch:TerminateJob'],
      resources: [jobArns],
      conditions: { StringEquals: { [`aws:ResourceTag/${COMPILE_JOB_TAG_KEY}`]: jobTagValue } },
    }));
    // Stopping a job on delete, and reading a failed job's details when the event lacks them.
    lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['batch:DescribeJobs'], resources: ['*'] }));
    // The completion marker: whether to start a job at all, and whether a job that succeeded wrote everything.
    const lifecyclePrefixFindings = wildcardFindings(this, grantPrefix(props.bucket, this.compiledArtifactS3Prefix, lifecycleRole, 'read'));
    const compileJobProperties: CompileJobProperties = {
      JobQueueArn: jobQueue.jobQueueArn,
      JobDefinitionArn: jobDefinition.ref,
      JobName: `neuronx-compile-${waitId}`,
      JobTagValue: jobTagValue,
      ArtifactBucket: props.bucket.bucketName,
      ArtifactPrefix: this.compiledArtifactS3Prefix,
      MarkerKey: markerKey,
      WaitHandleUrl: handle.ref,
    };
    const start = new CustomResource(this, 'CompileJob', {
      serviceToken: lifecycleFunction.functionArn,
      resourceType: COMPILE_JOB_RESOURCE_TYPE,
      serviceTimeout: Duration.minutes(5),
      properties: { ...compileJobProperties },
    });
    // Create order: the job-state rule and its permission before the job (see above). Delete order: the job is
    // terminated before its compute environment goes (the queue and job definition are referenced in the
    // properties, so CloudFormation orders those already).
    start.node.addDependency(computeEnvironment, rule, rulePermission);

    const wait = new CfnWaitCondition(this, `Wait${waitId}`, {
      handle: handle.ref,
      count: 1,
      timeout: String(this.waitTimeout.toSeconds()),
    });
    wait.node.addDependency(start);

    this.suppressNagFindings(computeEnvironment, {
      jobRole,
      executionRole,
      lifecycleFunction,
      jobArns,
      jobDefinitionArns,
      jobFindings: [...jobPrefixFindings, ...modelFindings],
      lifecycleFindings: lifecyclePrefixFindings,
    });
  }

  /**
   * Batch launches the compile instance without a public IP: in a public subnet it can reach neither ECS nor
   * Hugging Face and the job never starts. Isolated subnets work only with VPC endpoints (ECS, ECR, S3, logs)
   * and weights in S3.
   */
  private subnetProblems(vpc: ec2.IVpc, selection: ec2.SubnetSelection): string[] {
    const selected = vpc.selectSubnets(selection).subnets;
    const isolated = new Set(vpc.isolatedSubnets.map(s => s.node.path));
    const publicSubnets = new Set(vpc.publicSubnets.map(s => s.node.path));
    if (selected.some(s => publicSubnets.has(s.node.path))) {
      return ['vpcSubnets selects public subnets, where the compile instance gets no public IP and can reach neither ECS nor Hugging Face: '
        + 'select private subnets with egress (a NAT gateway), e.g. { subnetType: SubnetType.PRIVATE_WITH_EGRESS }.'];
    }
    if (selected.length > 0 && selected.every(s => isolated.has(s.node.path))) {
      Annotations.of(this).addWarningV2('aws-cdk-neuronx-patterns:isolatedSubnets',
        'vpcSubnets selects isolated subnets: the compile job needs VPC endpoints for ECS, ECR, S3 and CloudWatch Logs, and cannot download from Hugging Face (use Model.fromBucket).');
    }
    return [];
  }

  /**
   * Each suppression lists exactly the wildcard findings it is for (cdk-nag's `Resource::`/`Action::` ids), so a
   * wildcard added later is reported, not hidden.
   */
  private suppressNagFindings(computeEnvironment: batch.ManagedEc2EcsComputeEnvironment, grants: NagGrants) {
    const instanceRole = computeEnvironment.instanceRole;
    if (instanceRole) {
      suppressNag(instanceRole, [{
        id: 'AwsSolutions-IAM4',
        reason: 'AmazonEC2ContainerServiceforEC2Role is the policy the ECS agent on Batch instances needs; AWS maintains it as the agent changes.',
        appliesTo: ['Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role'],
      }]);
    }
    const anyResource = nagFinding(this, 'Resource', '*');
    const prefixReason = 'Object actions are limited to this compile\'s artifact prefix (prefix/*); s3:ListBucket is limited to it by condition.';
    // On a KMS-encrypted bucket the prefix grant adds the key's data-key and re-encrypt actions, on that key only.
    const kmsReason = grants.jobFindings.some(f => f.startsWith('Action::kms:')) ? ' kms:ReEncrypt* and kms:GenerateDataKey* are on the bucket\'s key only.' : '';
    suppressWildcardFindings(grants.jobRole, grants.jobFindings,
      `${prefixReason} Weights in S3 are read under their own prefix, the same way; the compile code is read with s3:GetObject `
      + `on its one asset object.${kmsReason}`);
    suppressWildcardFindings(grants.executionRole, [anyResource],
      'ecr:GetAuthorizationToken has no resource type; the image is pulled from its one repository and logs go to this job\'s log group only.');
    suppressWildcardFindings(grants.lifecycleFunction.role, [
      ...grants.lifecycleFindings, anyResource, nagFinding(this, 'Resource', grants.jobArns), nagFinding(this, 'Resource', grants.jobDefinitionArns),
    ], `${prefixReason} batch:DescribeJobs supports no resource-level permissions. batch:SubmitJob is on this compile's queue and `
      + 'any revision of its job definition (job-definition/<name>:*). Job ids are known only at run time (job/*), so batch:SubmitJob '
      + `and batch:TagResource on jobs require the request tag ${COMPILE_JOB_TAG_KEY}=<this compile> and no other tag, and `
      + 'batch:TerminateJob requires that tag on the job: the function can stop only the jobs it started for this compile.');
  }
}

interface NagGrants {
  readonly jobRole: iam.Role;
  readonly executionRole: iam.Role;
  readonly lifecycleFunction: HandlerFunction;
  readonly jobArns: string;
  readonly jobDefinitionArns: string;
  /** The wildcard findings of the job role's grants: its artifact prefix and what the model's bind granted. */
  readonly jobFindings: string[];
  /** The wildcard findings of the lifecycle function's artifact prefix read. */
  readonly lifecycleFindings: string[];
}

/** Runs `grant` and returns its result with the wildcard findings of the statements it added to the role's default policy. */
function withWildcardFindings<T>(scope: Construct, role: iam.Role, grant: () => T): { result: T; findings: string[] } {
  const before = defaultPolicyStatements(role).length;
  const result = grant();
  const added = Stack.of(scope).resolve(defaultPolicyStatements(role).slice(before)) as Array<Record<string, unknown>>;
  return { result, findings: added.flatMap(wildcardFindingsOfJson) };
}

/**
 * Identifies one NeuronxCompile in its stack (stack name and construct path, hashed), the same for every compile
 * it runs: the value of the tag its jobs carry.
 */
function compileTagValue(compile: Construct): string {
  return crypto.createHash('sha256').update(`${Stack.of(compile).stackName}\n${compile.node.path}`).digest('hex').slice(0, 16);
}

function jobDefinitionArnAnyRevision(scope: Construct, jobDefinition: batch.CfnJobDefinition): string {
  // The Ref is the ARN with its revision (name:N); SubmitJob is authorized on the job definition with or
  // without it, and a new revision must not need a new policy.
  const name = Fn.select(0, Fn.split(':', Fn.select(1, Fn.split('job-definition/', jobDefinition.ref))));
  return Stack.of(scope).formatArn({ service: 'batch', resource: 'job-definition', resourceName: `${name}:*` });
}

/** The configuration with its defaults applied, and every reason it cannot work. */
function resolveConfiguration(config: NeuronxCompileConfiguration, names: NeuronxCompileConfigurationNames) {
  const optionsName = names.compileOptions ?? 'compileOptions';
  const instanceTypeName = names.instanceType ?? 'instanceType';
  const sizing = modelSizing(config.model);
  const options = config.compileOptions ?? {};
  const compileInstance = config.instanceType
    ?? COMPILE_CANDIDATES.find(t => hostBytes(t) >= compileHostBytesNeeded(sizing, options.quantDtype)
      && t.neuronCores >= (options.tpDegree ?? config.servingInstanceType?.neuronCores ?? 1))
    ?? NeuronxInstanceType.INF2_48XLARGE;
  const serving = config.servingInstanceType ?? compileInstance;
  const resolved: ResolvedCompileOptions = {
    tpDegree: options.tpDegree ?? serving.neuronCores,
    nPositions: options.nPositions ?? DEFAULT_N_POSITIONS,
    quantDtype: options.quantDtype,
    batchSize: CONTRACT.defaults.batchSize,
  };
  const notIntegers = [
    ...checkPositiveInteger(`${optionsName}.tpDegree`, options.tpDegree),
    ...checkPositiveInteger(`${optionsName}.nPositions`, options.nPositions),
  ];
  const problems = notIntegers.length > 0 ? notIntegers : [
    ...servingProblems(optionsName, sizing, serving, resolved),
    ...compileInstanceProblems(instanceTypeName, sizing, compileInstance, resolved),
  ];
  return { compileInstance, serving, resolved, problems };
}

function modelSizing(model: Model): ModelSizing {
  return { parameterCount: model.parameterCount, ...model.architecture };
}

function timeoutProblems(timeout: Duration, startTimeout: Duration): string[] {
  const problems: string[] = [];
  if (startTimeout.toSeconds() < MIN_START_TIMEOUT.toSeconds()) {
    problems.push(`startTimeout is ${startTimeout.toHumanString()}: Batch needs at least ${MIN_START_TIMEOUT.toHumanString()}.`);
  }
  const budget = MAX_WAIT.toSeconds() - SIGNAL_MARGIN.toSeconds() - startTimeout.toSeconds();
  if (timeout.toSeconds() > budget) {
    problems.push(`timeout is ${timeout.toHumanString()}: with startTimeout ${startTimeout.toHumanString()} the deploy cannot wait for it `
      + `(a WaitCondition waits at most ${MAX_WAIT.toHumanString()}); use at most ${Duration.seconds(budget).toHumanString()}.`);
  }
  if (timeout.toSeconds() < 60) {
    problems.push(`timeout is ${timeout.toHumanString()}: Batch needs at least 60 seconds.`);
  }
  return problems;
}

/**
 * Identifies one wait: the artifacts' location (the bucket as the template names it, a token's resolved form being
 * the same in every synth) and the wait's Timeout. 8 hex digits, as the logical id suffix of the WaitCondition and
 * its handle.
 */
function waitIdentity(bucket: unknown, prefix: string, timeout: Duration): string {
  const inputs = { bucket, prefix, timeoutSeconds: timeout.toSeconds() };
  return crypto.createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 8);
}

/** Everything that determines the artifacts, hashed: the same inputs give the same prefix. */
function artifactFingerprint(model: Model, runtime: NeuronxRuntime, jobEnvironment: Record<string, string>): string {
  const inputs = {
    contract: CONTRACT.version,
    modelId: model.modelId,
    revision: model.revision,
    image: runtime.toString(),
    // Sorted by code unit (localeCompare would load ICU collation for ASCII names: measurable at synth).
    ...Object.fromEntries(Object.entries(jobEnvironment).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
  return crypto.createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

function slug(modelId: string): string {
  return modelId.replace(/\//g, '--').replace(/[^A-Za-z0-9._-]/g, '-');
}

