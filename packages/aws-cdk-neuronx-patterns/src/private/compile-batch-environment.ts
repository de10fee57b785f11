import { Stack } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { Model } from '../model';
import { CompileSettings, spotAttemptsWarning } from './compile-configuration';
import { COMPILE_CODE_ZIP, CONTRACT, compileEnv } from './contract';
import { LOG_RETENTION } from './handler-function';
import { suppressNag } from './nag';
import { defaultPolicyStatements, nagFinding, suppressWildcardFindings, wildcardFindings, wildcardFindingsOfJson } from './nag-finding';
import { grantPrefix } from './s3-prefix';
import { grantAssetRead, stageAsset } from './staged-asset';

/**
 * The AWS Batch side of a NeuronxCompile: where the job runs (one Neuron instance at most, scaled to zero when idle)
 * and what it runs (the pinned image, the compile program, the roles). Made in the NeuronxCompile's own scope, so
 * the logical ids are those of its children.
 */

// The status reason of a job whose Spot instance was reclaimed (aws-cdk-lib's batch.Reason.SPOT_INSTANCE_RECLAIMED).
const SPOT_RECLAIMED_STATUS_REASON = 'Host EC2*';
// The ECS agent and the OS keep part of the host memory; the container gets the rest.
const CONTAINER_MEMORY_FRACTION = 0.9;
const NEURON_AMI_PARAMETER = '/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id';
const WORK_DIR = '/var/tmp/neuronx';

/** Why a grant on the artifact prefix has wildcards (the job's and the lifecycle function's). */
export const ARTIFACT_PREFIX_REASON = 'Object actions are limited to this compile\'s artifact prefix (prefix/*); s3:ListBucket is limited to it by condition.';

/** What the Batch environment is made for, besides the settings (NeuronxCompileProps are one). */
export interface BatchEnvironmentProps {
  /** The VPC the compile instance runs in. */
  readonly vpc: ec2.IVpc;
  /** The bucket the artifacts are written to (under the settings' artifact prefix). */
  readonly bucket: s3.IBucket;
  /** The model the job downloads. */
  readonly model: Model;
  /** Spot capacity. */
  readonly spot?: boolean;
}

/** What the deploy wait needs of the Batch environment. */
export interface CompileBatchEnvironment {
  readonly computeEnvironment: batch.ManagedEc2EcsComputeEnvironment;
  readonly jobQueue: batch.JobQueue;
  readonly jobDefinition: batch.CfnJobDefinition;
  readonly logGroup: logs.LogGroup;
}

/** Adds the compute environment, queue, roles, log group and job definition of a compile to `compile`, with their nag suppressions. */
export function addBatchEnvironment(compile: Construct, props: BatchEnvironmentProps, settings: CompileSettings): CompileBatchEnvironment {
  const { computeEnvironment, jobQueue } = addComputeEnvironment(compile, props, settings);
  const { jobDefinition, logGroup } = addJobDefinition(compile, props, settings);
  spotAttemptsWarning(compile, props.spot, settings);
  return { computeEnvironment, jobQueue, jobDefinition, logGroup };
}

function addComputeEnvironment(compile: Construct, props: BatchEnvironmentProps, settings: CompileSettings) {
  const { compileInstance, startTimeout } = settings;
  const securityGroup = new ec2.SecurityGroup(compile, 'SecurityGroup', {
    vpc: props.vpc,
    description: 'Neuron compile worker: no inbound, outbound to Hugging Face, S3 and ECR',
    allowAllOutbound: true,
  });
  const launchTemplate = new ec2.LaunchTemplate(compile, 'LaunchTemplate', {
    requireImdsv2: true,
    blockDevices: [{
      deviceName: '/dev/xvda', // root device of the Amazon Linux 2023 ECS AMIs
      volume: ec2.BlockDeviceVolume.ebs(settings.volumeSize.toGibibytes(), {
        encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3, deleteOnTermination: true,
      }),
    }],
  });
  const computeEnvironment = new batch.ManagedEc2EcsComputeEnvironment(compile, 'ComputeEnvironment', {
    vpc: props.vpc,
    vpcSubnets: settings.vpcSubnets,
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
  const jobQueue = new batch.JobQueue(compile, 'JobQueue', {
    computeEnvironments: [{ computeEnvironment, order: 1 }],
    jobStateTimeLimitActions: [
      batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
      batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
      batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
    ].map(reason => ({
      action: batch.JobStateTimeLimitActionsAction.CANCEL, maxTime: startTimeout, reason, state: batch.JobStateTimeLimitActionsState.RUNNABLE,
    })),
  });
  if (computeEnvironment.instanceRole) {
    suppressNag(computeEnvironment.instanceRole, [{
      id: 'AwsSolutions-IAM4',
      reason: 'AmazonEC2ContainerServiceforEC2Role is the policy the ECS agent on Batch instances needs; AWS maintains it as the agent changes.',
      appliesTo: ['Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role'],
    }]);
  }
  return { computeEnvironment, jobQueue };
}

/** The job: the pinned image as it is, the compile program from a small file asset. */
function addJobDefinition(compile: Construct, props: BatchEnvironmentProps, settings: CompileSettings) {
  const { compileInstance, runtime } = settings;
  const logGroup = new logs.LogGroup(compile, 'JobLogs', { retention: LOG_RETENTION });
  // runtime/compile/, the contract, and the module the job shares with the inference handler (common/neuronx_common.py,
  // whose model-building arguments the job imports): one zip, built by build-tools/compile-code-zip.js.
  const code = stageAsset(compile, 'CompileCode', { path: COMPILE_CODE_ZIP });
  const jobRole = new iam.Role(compile, 'JobRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: 'Neuron compile job: reads the model, writes its own artifact prefix',
  });
  const jobPrefixFindings = wildcardFindings(compile, grantPrefix(props.bucket, settings.artifactPrefix, jobRole, 'readWrite'));
  grantAssetRead(code, jobRole);
  // What the model grants (its weights' prefix, its token secret) is the model's to scope: the wildcards it grants
  // are listed in the job role's cdk-nag suppression as they are granted.
  const { result: modelConfig, findings: modelFindings } = withWildcardFindings(compile, jobRole, () => props.model.bind(compile, jobRole));
  const executionRole = new iam.Role(compile, 'ExecutionRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: 'Neuron compile job: pulls the Neuron DLC image and writes its logs',
  });
  runtime.grantPull(compile, executionRole);
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
    ...settings.jobEnvironment,
    [compileEnv('artifactS3Uri')]: props.bucket.s3UrlForObject(settings.artifactPrefix),
    [compileEnv('codeS3Uri')]: code.s3ObjectUrl,
    [compileEnv('workDir')]: WORK_DIR,
    [compileEnv('releaseEntrypoint')]: CONTRACT.compileJob.enabledValue,
  };
  // An L1 job definition: its properties are the documented ones one to one, and the L2 would load aws-ecs,
  // which on its own costs more synth time than everything else this construct does.
  const jobDefinition = new batch.CfnJobDefinition(compile, 'JobDefinition', {
    type: 'container',
    platformCapabilities: ['EC2'],
    timeout: { attemptDurationSeconds: settings.timeout.toSeconds() },
    // Spot only: retry when the instance was reclaimed, exit on anything else, as many attempts as fit in the
    // deploy's wait (settings.attempts). On-demand: Batch's default of one attempt (a failed compile is not retried:
    // it would fail the same way, on a Neuron instance billed by the hour).
    retryStrategy: settings.attempts > 1 ? {
      attempts: settings.attempts,
      evaluateOnExit: [
        { onStatusReason: SPOT_RECLAIMED_STATUS_REASON, action: 'RETRY' },
        { onReason: '*', action: 'EXIT' },
      ],
    } : undefined,
    containerProperties: {
      image: runtime.imageUri(compile, { ec2InstanceType: compileInstance }),
      command: runtime.containerCommand(['bash', '-c', script]),
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
          'awslogs-region': Stack.of(compile).region,
          'awslogs-stream-prefix': 'compile',
        },
      },
    },
  });
  suppressRoleFindings(compile, jobRole, executionRole, [...jobPrefixFindings, ...modelFindings]);
  return { jobDefinition, logGroup };
}

/**
 * Each suppression lists exactly the wildcard findings it is for (cdk-nag's `Resource::`/`Action::` ids), so a
 * wildcard added later is reported, not hidden. `jobFindings`: those of the job role's grants, its artifact prefix
 * and what the model's bind granted.
 */
function suppressRoleFindings(compile: Construct, jobRole: iam.Role, executionRole: iam.Role, jobFindings: string[]) {
  // On a KMS-encrypted bucket the prefix grant adds the key's data-key and re-encrypt actions, on that key only.
  const kmsReason = jobFindings.some(f => f.startsWith('Action::kms:')) ? ' kms:ReEncrypt* and kms:GenerateDataKey* are on the bucket\'s key only.' : '';
  suppressWildcardFindings(jobRole, jobFindings,
    `${ARTIFACT_PREFIX_REASON} Weights in S3 are read under their own prefix, the same way; the compile code is read with s3:GetObject `
    + `on its one asset object.${kmsReason}`);
  suppressWildcardFindings(executionRole, [nagFinding(compile, 'Resource', '*')],
    'ecr:GetAuthorizationToken has no resource type; the image is pulled from its one repository and logs go to this job\'s log group only.');
}

/** Runs `grant` and returns its result with the wildcard findings of the statements it added to the role's default policy. */
function withWildcardFindings<T>(compile: Construct, role: iam.Role, grant: () => T): { result: T; findings: string[] } {
  const before = defaultPolicyStatements(role).length;
  const result = grant();
  const added = Stack.of(compile).resolve(defaultPolicyStatements(role).slice(before)) as Array<Record<string, unknown>>;
  return { result, findings: added.flatMap(wildcardFindingsOfJson) };
}
