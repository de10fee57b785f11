import { App, Aspects, Duration, Size, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Model, NeuronxCompile, NeuronxInstanceType, NeuronxRuntime, OptLevel, QuantDtype } from '../src';
import {
  actionsOf, calm3, CALM3_ARCHITECTURE, CALM3_PARAMETERS, CompileFixture, compileFixture, CompileFixtureOptions, ENV, flatten, HIGH_PERFORMANCE,
  HIGH_PERFORMANCE_PROPS, jobEnvironment, logicalId, LOW_COST, network, PINNED_REVISION, resourcesOf, Statement, statementsAllowing, statementsOfRole,
} from './fixtures';
import { compileSettings } from '../src/private/compile-configuration';
import { CONTRACT, compileEnv } from '../src/private/contract';

const NEURON_AMI_PARAMETER = '/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id';
const IMAGE_PATH = '/pytorch-inference-neuronx:2.7.0-neuronx-py310-sdk2.25.0-ubuntu22.04';

function synth(options: CompileFixtureOptions = {}): CompileFixture & { template: Template } {
  const fixture = compileFixture(options);
  return { ...fixture, template: Template.fromStack(fixture.stack) };
}

function onlyResource(template: Template, type: string): { Properties: any; DependsOn?: string[] } {
  const resources = Object.values(template.findResources(type));
  expect(resources).toHaveLength(1);
  return resources[0] as { Properties: any; DependsOn?: string[] };
}

function jobImage(template: Template): string {
  return flatten(onlyResource(template, 'AWS::Batch::JobDefinition').Properties.ContainerProperties.Image);
}

function devicesOf(template: Template): string[] {
  const devices = onlyResource(template, 'AWS::Batch::JobDefinition').Properties.ContainerProperties.LinuxParameters.Devices;
  return devices.map((d: { HostPath: string; ContainerPath: string }) => {
    expect(d.ContainerPath).toBe(d.HostPath);
    return d.HostPath;
  });
}

function waitConditions(template: Template): Record<string, { Properties: { Timeout: string }; DependsOn?: string[] }> {
  return template.findResources('AWS::CloudFormation::WaitCondition') as never;
}

/** The one resource of `type` with its logical id. */
function onlyResourceWithId(template: Template, type: string): [string, { Properties: any; DependsOn?: string[] }] {
  const entries = Object.entries(template.findResources(type));
  expect(entries).toHaveLength(1);
  return entries[0] as [string, { Properties: any; DependsOn?: string[] }];
}

/** The IAM statements of one of the compile's roles, by its construct id. */
function roleStatements(fixture: CompileFixture & { template: Template }, roleId: string): Statement[] {
  return statementsOfRole(fixture.template, logicalId(fixture.stack, fixture.compile.node.findChild(roleId)));
}

/** A grant of every object in a bucket (`<bucket ARN>/*`), as `flatten` renders a resource. */
const WHOLE_BUCKET_OBJECTS = /^(\$\{[A-Za-z0-9]+\.Arn\}|arn:(\$\{AWS::Partition\}|[a-z-]+):s3:::[^/]+)\/\*$/;

/** A second runtime, standing in for a future release of the library: the constructor is private on purpose. */
function otherRuntime(): NeuronxRuntime {
  return Reflect.construct(NeuronxRuntime, ['pytorch-inference-neuronx', '2.1.2-neuronx-py310-sdk2.20.2-ubuntu20.04', '2.20.2']);
}

/** Creates a compile with the lowCost defaults and `props` on top, expecting it to fail at synth. */
function compileError(props: CompileFixtureOptions['props']): string {
  try {
    compileFixture({ props });
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected the NeuronxCompile to fail at synth');
}

describe('NeuronxCompile: the Batch environment (lowCost preset: inf2.8xlarge compiling for trn1.2xlarge)', () => {
  let fixture: CompileFixture & { template: Template };
  beforeAll(() => {
    fixture = synth();
  });

  test('a managed EC2 compute environment of only the compile instance type, scaled to zero, in private subnets', () => {
    const { template, stack, vpc } = fixture;
    template.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      Type: 'managed',
      ComputeResources: Match.objectLike({
        Type: 'EC2',
        MinvCpus: 0,
        MaxvCpus: 32,
        InstanceTypes: ['inf2.8xlarge'],
        AllocationStrategy: 'BEST_FIT_PROGRESSIVE',
        Subnets: vpc.privateSubnets.map(s => ({ Ref: logicalId(stack, s.node.defaultChild as never) })),
      }),
    });
    template.resourceCountIs('AWS::Batch::ComputeEnvironment', 1);
  });

  test('the Neuron ECS AMI is an image override resolved by CloudFormation from its public SSM parameter', () => {
    const { template, app } = fixture;
    const parameters = template.findParameters('*', { Default: NEURON_AMI_PARAMETER });
    expect(Object.keys(parameters)).toHaveLength(1);
    const [parameterId, parameter] = Object.entries(parameters)[0];
    expect(parameter.Type).toBe('AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>');
    template.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({ Ec2Configuration: [{ ImageIdOverride: { Ref: parameterId }, ImageType: 'ECS_AL2023' }] }),
    });
    // No AMI or SSM context lookup (the test VPC's own availability-zone lookup aside).
    expect((app.synth().manifest.missing ?? []).filter(m => m.provider !== 'availability-zones')).toEqual([]);
  });

  test('the launch template requires IMDSv2 and encrypts a gp3 root volume sized from the model', () => {
    const { template, stack, compile } = fixture;
    const launchTemplateId = logicalId(stack, compile.node.findChild('LaunchTemplate'));
    // Pinned to the template's latest version: a changed volume size is a new version, so the compute environment
    // changes too and Batch's infrastructure update starts new instances from it (without a version, Batch keeps the
    // version it read at creation).
    template.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({
        LaunchTemplate: { LaunchTemplateId: { Ref: launchTemplateId }, Version: { 'Fn::GetAtt': [launchTemplateId, 'LatestVersionNumber'] } },
      }),
    });
    // calm3, int8: the work dir the job checks for (45 GB = 41.9 GiB bf16 checkpoint x 2.0 + 10 GiB, contract diskSpace) + the
    // 64 GiB allowance for the image, the OS and logs, rounded up.
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        MetadataOptions: Match.objectLike({ HttpTokens: 'required' }),
        BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: Match.objectLike({ Encrypted: true, VolumeType: 'gp3', VolumeSize: 158, DeleteOnTermination: true }) }],
      }),
    });
  });

  test('the job queue cancels a job stuck in RUNNABLE after 30 minutes, for each of the 3 reasons', () => {
    const queue = onlyResource(fixture.template, 'AWS::Batch::JobQueue');
    const actions = queue.Properties.JobStateTimeLimitActions;
    expect(actions).toHaveLength(3);
    expect(actions.map((a: { Reason: string }) => a.Reason).sort()).toEqual([
      'CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY',
      'MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE',
      'MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT',
    ]);
    for (const action of actions) {
      expect(action).toMatchObject({ Action: 'CANCEL', State: 'RUNNABLE', MaxTimeSeconds: 1800 });
    }
  });

  test('the job maps exactly the one /dev/neuron0 of an inf2.8xlarge', () => {
    expect(devicesOf(fixture.template)).toEqual(['/dev/neuron0']);
  });

  test('the job runs the pinned DLC image from the us-east-1 registry account', () => {
    expect(jobImage(fixture.template)).toBe(`763104351884.dkr.ecr.us-east-1.\${AWS::URLSuffix}${IMAGE_PATH}`);
  });

  test('on-demand, the job is not retried (one attempt): a failed compile would fail the same way again', () => {
    const job = onlyResource(fixture.template, 'AWS::Batch::JobDefinition');
    expect(job.Properties.RetryStrategy).toBeUndefined();
    expect(job.Properties.Timeout).toEqual({ AttemptDurationSeconds: 36000 });
  });

  test('the job gets the compile options, and targets the serving family (trn1), not the compile family (inf2)', () => {
    expect(jobEnvironment(fixture.template)).toMatchObject({
      NEURONX_MODEL_ID: 'cyberagent/calm3-22b-chat',
      NEURONX_TP_DEGREE: '2',
      NEURONX_N_POSITIONS: '1024',
      NEURONX_QUANT_DTYPE: 's8',
      NEURONX_OPT_LEVEL: '3',
      NEURONX_COMPILER_TARGET: 'trn1',
    });
  });

  test('the job role writes and reads only its artifact prefix, and lists the bucket only under it', () => {
    const { template, stack, compile, bucket } = fixture;
    const prefix = compile.compiledArtifactS3Prefix;
    const bucketArn = `\${${logicalId(stack, bucket)}.Arn}`;
    const statements = statementsOfRole(template, logicalId(stack, compile.node.findChild('JobRole')));

    for (const action of ['s3:PutObject', 's3:GetObject']) {
      const artifactResources = statementsAllowing(statements, action).flatMap(resourcesOf).filter(r => r.startsWith(bucketArn));
      expect(artifactResources).toEqual([`${bucketArn}/${prefix}*`]);
    }
    const lists = statementsAllowing(statements, 's3:ListBucket');
    expect(lists).toHaveLength(1);
    expect(resourcesOf(lists[0])).toEqual([bucketArn]);
    expect(lists[0].Condition).toEqual({ StringLike: { 's3:prefix': [`${prefix}*`] } });
  });

  test('the job role reads the compile code as one object, not the whole CDK asset bucket', () => {
    const { template, stack, compile, bucket } = fixture;
    const statements = statementsOfRole(template, logicalId(stack, compile.node.findChild('JobRole')));
    const codeUri = jobEnvironment(template).NEURONX_CODE_S3_URI;
    const [, assetBucket, assetKey] = /^s3:\/\/([^/]+)\/(.+)$/.exec(codeUri)!;
    const otherS3 = statements
      .filter(s => actionsOf(s).some(a => a.startsWith('s3:')))
      .flatMap(resourcesOf)
      .filter(r => !r.startsWith(`\${${logicalId(stack, bucket)}.Arn}`));
    expect(otherS3).toEqual([`arn:\${AWS::Partition}:s3:::${assetBucket}/${assetKey}`]);
  });

  test('no policy in the stack gives S3 access to a whole bucket, and none is a managed *FullAccess policy', () => {
    const { template } = fixture;
    expect(JSON.stringify(template.toJSON())).not.toMatch(/FullAccess/);
    const statements: Statement[] = Object.values(template.findResources('AWS::IAM::Policy'))
      .flatMap(p => p.Properties.PolicyDocument.Statement);
    for (const statement of statements.filter(s => actionsOf(s).some(a => a.startsWith('s3:')))) {
      for (const resource of resourcesOf(statement)) {
        expect(resource).not.toBe('*');
        expect(resource).not.toMatch(WHOLE_BUCKET_OBJECTS);
      }
      if (actionsOf(statement).includes('s3:ListBucket')) {
        expect(statement.Condition?.StringLike?.['s3:prefix']).toBeDefined();
      }
    }
  });

  test('the whole-bucket pattern catches every object of a bucket, by GetAtt or by name in any partition, and nothing narrower', () => {
    for (const wholeBucket of [
      '${Artifacts82DD59A1.Arn}/*',
      'arn:${AWS::Partition}:s3:::my-bucket/*',
      'arn:${AWS::Partition}:s3:::${Artifacts82DD59A1}/*',
      'arn:aws:s3:::my-bucket/*',
      'arn:aws-cn:s3:::my-bucket/*',
    ]) {
      expect(wholeBucket).toMatch(WHOLE_BUCKET_OBJECTS);
    }
    for (const narrower of [
      '${Artifacts82DD59A1.Arn}/neuronx-compile/calm3/abcd/*',
      'arn:${AWS::Partition}:s3:::my-bucket/prefix/*',
      'arn:${AWS::Partition}:s3:::cdk-hnb659fds-assets-123456789012-us-east-1/abc.zip',
      '${Artifacts82DD59A1.Arn}',
    ]) {
      expect(narrower).not.toMatch(WHOLE_BUCKET_OBJECTS);
    }
  });

  test('the deploy waits on a WaitCondition of at most 12 hours that follows the job-starting custom resource', () => {
    const { template, stack, compile } = fixture;
    const waits = Object.values(waitConditions(template));
    expect(waits).toHaveLength(1);
    const timeout = Number(waits[0].Properties.Timeout);
    expect(timeout).toBeLessThanOrEqual(43200);
    // 30 min start timeout + 10 h job timeout + 15 min for the signal.
    expect(timeout).toBe(38700);
    expect(compile.waitTimeout.toSeconds()).toBe(38700);
    const jobId = logicalId(stack, compile.node.findChild('CompileJob'));
    template.hasResource('Custom::NeuronxCompileJob', {});
    expect(Object.keys(template.findResources('Custom::NeuronxCompileJob'))).toEqual([jobId]);
    expect(waits[0].DependsOn).toContain(jobId);
  });

  test('the job is submitted only after the job-state rule and its permission to invoke the lifecycle function exist', () => {
    const { template, stack, compile } = fixture;
    const start = template.findResources('Custom::NeuronxCompileJob')[logicalId(stack, compile.node.findChild('CompileJob'))];
    expect(start.DependsOn).toEqual(expect.arrayContaining([
      logicalId(stack, compile.node.findChild('JobStateRule')),
      logicalId(stack, compile.node.findChild('JobStateRulePermission')),
    ]));
    // The rule targets the lifecycle function, so the function (and, through it, its role and policy) comes first too.
    const [, rule] = onlyResourceWithId(template, 'AWS::Events::Rule');
    expect(rule.Properties.Targets[0].Arn).toEqual({ 'Fn::GetAtt': [logicalId(stack, compile.node.findChild('LifecycleFunction')), 'Arn'] });
  });

  test('the job-starting custom resource is deleted before the queue, compute environment and job definition', () => {
    const { template, stack, compile } = fixture;
    const start = template.findResources('Custom::NeuronxCompileJob')[logicalId(stack, compile.node.findChild('CompileJob'))];
    // The compute environment explicitly; the queue and job definition through the references in its properties.
    expect(start.DependsOn).toContain(logicalId(stack, compile.node.findChild('ComputeEnvironment')));
    expect(start.Properties.JobQueueArn).toEqual({ 'Fn::GetAtt': [logicalId(stack, compile.node.findChild('JobQueue')), 'JobQueueArn'] });
    expect(start.Properties.JobDefinitionArn).toEqual({ Ref: logicalId(stack, compile.node.findChild('JobDefinition')) });
  });

  test('the artifact prefix names the model and appears in compiledArtifactS3Prefix and compiledArtifactS3Url', () => {
    const { compile, stack, bucket, template } = fixture;
    expect(compile.compiledArtifactS3Prefix).toMatch(/^neuronx-compile\/cyberagent--calm3-22b-chat\/[0-9a-f]{16}\/$/);
    expect(flatten(stack.resolve(compile.compiledArtifactS3Url)))
      .toBe(`s3://\${${logicalId(stack, bucket)}}/${compile.compiledArtifactS3Prefix}`);
    expect(jobEnvironment(template).NEURONX_ARTIFACT_S3_URI).toBe(flatten(stack.resolve(compile.compiledArtifactS3Url)));
  });

  test('a pinned revision gives no warning', () => {
    Annotations.fromStack(fixture.stack).hasNoWarning('*', Match.stringLikeRegexp('revision'));
  });

  test('the resolved facts are exposed', () => {
    const { compile } = fixture;
    expect(compile.compileInstanceType).toBe(NeuronxInstanceType.INF2_8XLARGE);
    expect(compile.servingInstanceType).toBe(NeuronxInstanceType.TRN1_2XLARGE);
    expect(compile.tpDegree).toBe(2);
    expect(compile.nPositions).toBe(1024);
    expect(compile.quantDtype).toBe(QuantDtype.S8);
    expect(compile.optLevel).toBe(OptLevel.BEST_EXECUTION);
  });
});

describe('NeuronxCompile: sizes and options', () => {
  test.each([
    [NeuronxInstanceType.INF2_8XLARGE, LOW_COST.serving, LOW_COST.options, 1, 32],
    [NeuronxInstanceType.INF2_24XLARGE, HIGH_PERFORMANCE.serving, HIGH_PERFORMANCE.options, 6, 96],
    [NeuronxInstanceType.TRN1_32XLARGE, NeuronxInstanceType.TRN1_32XLARGE, { tpDegree: 16 }, 16, 128],
  ])('%s: the job maps exactly the instance\'s devices, and maxvCpus is its vCPUs', (compileInstanceType, servingInstanceType, compileOptions, devices, vcpus) => {
    const { template } = synth({ props: { compileInstanceType, servingInstanceType, compileOptions } });
    expect(devicesOf(template)).toEqual(Array.from({ length: devices }, (_, i) => `/dev/neuron${i}`));
    template.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({ MaxvCpus: vcpus, InstanceTypes: [compileInstanceType.instanceTypeName] }),
    });
  });

  test('highPerformance: bf16 leaves the quantization variable empty, and the target is inf2', () => {
    const { template } = synth({ props: HIGH_PERFORMANCE_PROPS });
    expect(jobEnvironment(template)).toMatchObject({
      NEURONX_TP_DEGREE: '4', NEURONX_N_POSITIONS: '4096', NEURONX_QUANT_DTYPE: '', NEURONX_OPT_LEVEL: '3', NEURONX_COMPILER_TARGET: 'inf2',
    });
  });

  test.each([
    [OptLevel.MINIMIZE_COMPILE_TIME, '1'],
    [OptLevel.BEST_BALANCE, '2'],
    [OptLevel.BEST_EXECUTION, '3'],
  ])('%s is compiled with -O%s', (optLevel, flag) => {
    const { template } = synth({ props: { compileOptions: { ...LOW_COST.options, optLevel } } });
    expect(jobEnvironment(template).NEURONX_OPT_LEVEL).toBe(flag);
  });

  test('the default optLevel is BEST_BALANCE, nPositions 4096 and tpDegree all cores of the serving instance', () => {
    const { compile, template } = synth({
      props: { compileInstanceType: HIGH_PERFORMANCE.compile, servingInstanceType: undefined, compileOptions: undefined },
    });
    expect(compile.servingInstanceType).toBe(NeuronxInstanceType.INF2_24XLARGE);
    expect(jobEnvironment(template)).toMatchObject({ NEURONX_OPT_LEVEL: '2', NEURONX_N_POSITIONS: '4096', NEURONX_TP_DEGREE: '12' });
  });

  test('without an compileInstanceType the cheapest instance with enough host memory and cores compiles', () => {
    expect(synth({ props: { compileInstanceType: undefined } }).compile.compileInstanceType).toBe(NeuronxInstanceType.INF2_8XLARGE);
    const highPerformance = synth({ props: { ...HIGH_PERFORMANCE_PROPS, compileInstanceType: undefined } });
    expect(highPerformance.compile.compileInstanceType).toBe(NeuronxInstanceType.INF2_24XLARGE);
  });

  test('the root volume follows the model size, or volumeSize', () => {
    const llama8b = Model.fromHuggingFace('meta-llama/Meta-Llama-3-8B', { revision: 'abc' });
    // int8: 14.9 GiB bf16 checkpoint x 2.0 + 10 GiB (contract diskSpace) + 64 GiB allowance, rounded up.
    synth({ props: { model: llama8b } }).template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({ BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ VolumeSize: 104 }) })] }),
    });
    // bf16: x 1.5 instead.
    synth({ props: { model: llama8b, compileOptions: { ...LOW_COST.options, quantDtype: undefined } } }).template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({ BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ VolumeSize: 97 }) })] }),
    });
    synth({ props: { volumeSize: Size.gibibytes(500) } }).template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ VolumeSize: 500, Encrypted: true }) })],
      }),
    });
  });

  test('startTimeout and timeout set the queue\'s RUNNABLE limit, the job timeout and the wait', () => {
    const { template } = synth({ props: { startTimeout: Duration.minutes(45), timeout: Duration.hours(2) } });
    const actions = onlyResource(template, 'AWS::Batch::JobQueue').Properties.JobStateTimeLimitActions;
    expect(actions.map((a: { MaxTimeSeconds: number }) => a.MaxTimeSeconds)).toEqual([2700, 2700, 2700]);
    expect(onlyResource(template, 'AWS::Batch::JobDefinition').Properties.Timeout).toEqual({ AttemptDurationSeconds: 7200 });
    expect(Object.values(waitConditions(template))[0].Properties.Timeout).toBe(String(2700 + 7200 + 900));
  });

  test('the longest timeout that fits the wait budget gives a 12 hour WaitCondition', () => {
    const { template } = synth({ props: { timeout: Duration.minutes(11 * 60 + 15) } });
    expect(Object.values(waitConditions(template))[0].Properties.Timeout).toBe('43200');
  });

  test('spot uses the Spot capacity allocation strategy', () => {
    synth({ props: { spot: true } }).template.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({ Type: 'SPOT', AllocationStrategy: 'SPOT_PRICE_CAPACITY_OPTIMIZED' }),
    });
  });

  test.each([
    // [timeout, startTimeout (minutes), attempts, WaitCondition Timeout]: each attempt up to startTimeout + timeout.
    [Duration.minutes(205), 30, 3, String(3 * (205 + 30) * 60 + 900)],
    [Duration.minutes(206), 30, 2, String(2 * (206 + 30) * 60 + 900)],
    [Duration.minutes(322), 30, 2, String(2 * (322 + 30) * 60 + 900)],
  ])('spot retries a reclaimed job only as often as whole attempts fit in the wait: timeout %s, startTimeout %d min -> %d attempts', (timeout, start, attempts, waitTimeout) => {
    const { template, stack } = synth({ props: { spot: true, timeout, startTimeout: Duration.minutes(start) } });
    expect(onlyResource(template, 'AWS::Batch::JobDefinition').Properties.RetryStrategy).toEqual({
      Attempts: attempts,
      EvaluateOnExit: [
        { Action: 'RETRY', OnStatusReason: 'Host EC2*' },
        { Action: 'EXIT', OnReason: '*' },
      ],
    });
    // The deploy waits for all of them, and never more than 12 hours.
    const wait = Object.values(waitConditions(template))[0].Properties.Timeout;
    expect(wait).toBe(waitTimeout);
    expect(Number(wait)).toBeLessThanOrEqual(43200);
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('only 3 attempts'))).toHaveLength(0);
    if (attempts === 2) {
      Annotations.fromStack(stack).hasWarning('/TestStack/Compile', Match.stringLikeRegexp(
        'only 2 attempts fit in the deploy\'s wait \\(at most 12 hours\\): the job is retried only once. For more, set timeout to at most 3 hours 25 minutes for 3 attempts'));
    }
  });

  test('spot with the default 10 hour timeout: one attempt fits, no retry, and a warning names the timeouts that give more', () => {
    const { template, stack } = synth({ props: { spot: true } });
    expect(onlyResource(template, 'AWS::Batch::JobDefinition').Properties.RetryStrategy).toBeUndefined();
    // 30 min + 10 h + 15 min: the same wait as on demand, not three 10 hour attempts the wait could never hold.
    expect(Object.values(waitConditions(template))[0].Properties.Timeout).toBe(String((30 + 600 + 15) * 60));
    Annotations.fromStack(stack).hasWarning('/TestStack/Compile', Match.stringLikeRegexp(
      '^spot is true, but with timeout 10 hours and startTimeout 30 minutes only 1 attempt fits in the deploy\'s wait \\(at most 12 hours\\): a reclaimed Spot instance fails the deploy. '
      + 'For more, set timeout to at most 5 hours 22 minutes for 2 attempts, or at most 3 hours 25 minutes for 3 attempts\\.'));
    // On demand: one attempt by design, no warning.
    const onDemand = synth({});
    expect(Annotations.fromStack(onDemand.stack).findWarning('*', Match.stringLikeRegexp('attempt'))).toHaveLength(0);
  });

  test('vpcSubnets chooses the subnets', () => {
    const fixture = compileFixture({ props: {} });
    const oneSubnet = fixture.vpc.privateSubnets[1];
    const compile = new NeuronxCompile(fixture.stack, 'OneSubnet', {
      vpc: fixture.vpc,
      bucket: fixture.bucket,
      model: calm3(),
      compileInstanceType: LOW_COST.compile,
      servingInstanceType: LOW_COST.serving,
      compileOptions: LOW_COST.options,
      vpcSubnets: { subnets: [oneSubnet] },
      artifactRootPrefix: 'one-subnet/', // the fixture's compile writes the default prefix
    });
    const environments = Template.fromStack(fixture.stack).findResources('AWS::Batch::ComputeEnvironment');
    const subnets = environments[logicalId(fixture.stack, compile.node.findChild('ComputeEnvironment'))].Properties.ComputeResources.Subnets;
    expect(subnets).toEqual([{ Ref: logicalId(fixture.stack, oneSubnet.node.defaultChild as never) }]);
  });
});

describe('NeuronxCompile: image registry by region', () => {
  test('ap-east-1 serves no Neuron image: the compile fails at synth, naming the regions that do', () => {
    expect(() => synth({ env: { account: '123456789012', region: 'ap-east-1' } }))
      .toThrow(/Region 'ap-east-1' has no AWS Deep Learning Container registry serving the Neuron image .*: deploy the stack to one of ap-northeast-1, /);
  });

  test('a region with the image but without EC2 inf2 fails at synth, naming the compileInstanceType prop', () => {
    expect(() => synth({ env: { account: '123456789012', region: 'ap-south-2' } }))
      .toThrow(/Region 'ap-south-2' has no EC2 inf2\.8xlarge instances \(compileInstanceType\): deploy the stack to one of ap-northeast-1, ap-south-1, ap-southeast-1, eu-central-1, eu-west-1, us-east-1, us-east-2, us-west-2, /);
  });

  test('ap-northeast-1 pulls from the DLC registry account 763104351884', () => {
    const { template } = synth({ env: { account: '123456789012', region: 'ap-northeast-1' } });
    expect(jobImage(template)).toBe(`763104351884.dkr.ecr.ap-northeast-1.\${AWS::URLSuffix}${IMAGE_PATH}`);
  });

  test('an environment-agnostic stack resolves the account from a mapping at deploy time', () => {
    const { template } = synth({ env: null });
    expect(jobImage(template)).toBe(`\${FindInMap:NeuronxDlcRegistryAccounts:\${AWS::Region}:account}.dkr.ecr.\${AWS::Region}.\${AWS::URLSuffix}${IMAGE_PATH}`);
    expect(template.toJSON().Mappings.NeuronxDlcRegistryAccounts['us-east-1']).toEqual({ account: '763104351884' });
    // The deploy fails before any resource where the image or the compile instance is missing.
    const assertions: Array<{ AssertDescription: string }> = template.toJSON().Rules.NeuronxRegions.Assertions;
    expect(assertions.map(a => a.AssertDescription)).toEqual(expect.arrayContaining([
      expect.stringMatching(/^The stack's region has no AWS Deep Learning Container registry serving the Neuron image /),
      expect.stringMatching(/^The stack's region has no EC2 inf2\.8xlarge instances \(compileInstanceType\): /),
    ]));
  });
});

describe('NeuronxCompile: the artifact prefix is a pure function of what determines the artifacts', () => {
  function prefixAndWait(options: CompileFixtureOptions = {}): { prefix: string; waitIds: string[] } {
    const { compile, template } = synth(options);
    return { prefix: compile.compiledArtifactS3Prefix, waitIds: Object.keys(waitConditions(template)) };
  }

  test('the same inputs synthesize byte-identical templates', () => {
    const a = JSON.stringify(synth().template.toJSON());
    const b = JSON.stringify(synth().template.toJSON());
    expect(a).toEqual(b);
  });

  test.each([
    ['optLevel', { compileOptions: { ...LOW_COST.options, optLevel: OptLevel.BEST_BALANCE } }],
    ['nPositions', { compileOptions: { ...LOW_COST.options, nPositions: 2048 } }],
    ['batchSize', { compileOptions: { ...LOW_COST.options, batchSize: 5 } }],
    ['quantDtype', { compileInstanceType: HIGH_PERFORMANCE.compile, servingInstanceType: NeuronxInstanceType.INF2_24XLARGE, compileOptions: { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8 } }],
    ['the serving family', { servingInstanceType: NeuronxInstanceType.INF2_8XLARGE }],
    ['the revision', { model: calm3({ revision: 'fedcba9876543210fedcba9876543210fedcba98' }) }],
    ['the runtime image', { runtime: otherRuntime() }],
  ])('a change of %s changes the prefix and the WaitCondition (a new compile, a new wait)', (_what, props) => {
    const base = prefixAndWait();
    const changed = prefixAndWait({ props });
    expect(changed.prefix).not.toEqual(base.prefix);
    expect(changed.waitIds).toHaveLength(1);
    expect(changed.waitIds[0]).not.toEqual(base.waitIds[0]);
  });

  /** The hash part of an artifact prefix (`<root>/<model>/<hash>/`). */
  function hashOf(prefix: string): string {
    return prefix.split('/').slice(-2)[0];
  }

  test('a change of tpDegree changes the prefix (highPerformance, tp 4 and tp 6 on inf2.24xlarge)', () => {
    const tp4 = prefixAndWait({ props: HIGH_PERFORMANCE_PROPS });
    const tp6 = prefixAndWait({ props: { ...HIGH_PERFORMANCE_PROPS, compileOptions: { ...HIGH_PERFORMANCE.options, tpDegree: 6 } } });
    expect(hashOf(tp6.prefix)).not.toEqual(hashOf(tp4.prefix));
    expect(tp6.waitIds[0]).not.toEqual(tp4.waitIds[0]);
  });

  test('a change of modelId changes the prefix: its model segment and its hash', () => {
    const base = prefixAndWait();
    const other = prefixAndWait({
      props: {
        model: Model.fromHuggingFace('example-org/other-22b-chat', {
          revision: PINNED_REVISION, parameterCount: CALM3_PARAMETERS, architecture: CALM3_ARCHITECTURE,
        }),
      },
    });
    expect(other.prefix).toMatch(/^neuronx-compile\/example-org--other-22b-chat\/[0-9a-f]{16}\/$/);
    expect(hashOf(other.prefix)).not.toEqual(hashOf(base.prefix));
  });

  test('the runtime image changes the hash too, and is the image the job runs', () => {
    const other = synth({ props: { runtime: otherRuntime() } });
    expect(hashOf(other.compile.compiledArtifactS3Prefix)).not.toEqual(hashOf(prefixAndWait().prefix));
    expect(jobImage(other.template)).toMatch(/:2\.1\.2-neuronx-py310-sdk2\.20\.2-ubuntu20\.04$/);
  });

  test('the same inputs give the same prefix, in another app, stack and construct id', () => {
    const base = prefixAndWait();
    expect(prefixAndWait().prefix).toEqual(base.prefix);
    const stack = new Stack(new App(), 'ElsewhereStack', { env: ENV });
    const { vpc, bucket } = network(stack);
    const elsewhere = new NeuronxCompile(stack, 'Elsewhere', {
      vpc,
      bucket,
      model: calm3(),
      compileInstanceType: LOW_COST.compile,
      servingInstanceType: LOW_COST.serving,
      compileOptions: { ...LOW_COST.options },
    });
    expect(elsewhere.compiledArtifactS3Prefix).toEqual(base.prefix);
  });

  test('what does not change the artifacts does not change the prefix: timeouts, spot, the compile instance type', () => {
    const base = prefixAndWait();
    const props = { timeout: Duration.hours(3), spot: true, compileInstanceType: NeuronxInstanceType.INF2_24XLARGE };
    expect(prefixAndWait({ props }).prefix).toEqual(base.prefix);
  });

  /** The one WaitCondition, its handle, and the handle the job-starting custom resource signals. */
  function theWait(options: CompileFixtureOptions = {}): { waitId: string; handleId: string; signalledHandle: unknown; timeout: string } {
    const { template } = synth(options);
    const [waitId, wait] = onlyResourceWithId(template, 'AWS::CloudFormation::WaitCondition');
    const [handleId] = onlyResourceWithId(template, 'AWS::CloudFormation::WaitConditionHandle');
    expect(wait.Properties.Handle).toEqual({ Ref: handleId });
    const [, start] = onlyResourceWithId(template, 'Custom::NeuronxCompileJob');
    return { waitId, handleId, signalledHandle: start.Properties.WaitHandleUrl, timeout: wait.Properties.Timeout };
  }

  // CloudFormation cannot update a WaitCondition ("Updates aren't supported"), and an old handle may hold an earlier
  // deploy's signal: a new location or a new Timeout is a new WaitCondition with a new handle.
  test.each([
    ['timeout (the wait\'s Timeout)', { timeout: Duration.hours(3) }],
    ['startTimeout (the wait\'s Timeout)', { startTimeout: Duration.minutes(45) }],
    ['artifactRootPrefix (the artifacts\' location)', { artifactRootPrefix: 'models/' }],
  ])('a change of %s gives a new WaitCondition and a new handle, which the custom resource signals', (_what, props) => {
    const base = theWait();
    const changed = theWait({ props });
    expect(changed.waitId).not.toEqual(base.waitId);
    expect(changed.handleId).not.toEqual(base.handleId);
    expect(changed.signalledHandle).toEqual({ Ref: changed.handleId });
  });

  test('another bucket (same prefix) gives a new WaitCondition and a new handle', () => {
    const base = theWait();
    const app = new App();
    const stack = new Stack(app, 'TestStack', { env: ENV });
    const { vpc } = network(stack);
    const other = s3.Bucket.fromBucketName(stack, 'Other', 'other-artifact-bucket');
    new NeuronxCompile(stack, 'Compile', {
      vpc,
      bucket: other,
      model: calm3(),
      compileInstanceType: LOW_COST.compile,
      servingInstanceType: LOW_COST.serving,
      compileOptions: LOW_COST.options,
    });
    const template = Template.fromStack(stack);
    const [waitId] = onlyResourceWithId(template, 'AWS::CloudFormation::WaitCondition');
    const [handleId] = onlyResourceWithId(template, 'AWS::CloudFormation::WaitConditionHandle');
    expect(waitId).not.toEqual(base.waitId);
    expect(handleId).not.toEqual(base.handleId);
  });

  test('what changes neither the location nor the Timeout keeps the WaitCondition (no needless re-wait)', () => {
    const base = theWait();
    const props = {
      spot: true,
      volumeSize: Size.gibibytes(500),
      compileInstanceType: NeuronxInstanceType.INF2_24XLARGE,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, onePerAz: true },
    };
    expect(theWait({ props })).toEqual(base);
    // 15 minutes moved from startTimeout to timeout: the same Timeout (10 h 30 min + 15 min margin), the same wait.
    expect(theWait({ props: { timeout: Duration.minutes(615), startTimeout: Duration.minutes(15) } })).toEqual(base);
  });

  test('artifactRootPrefix moves the artifacts', () => {
    expect(prefixAndWait({ props: { artifactRootPrefix: '/models' } }).prefix).toMatch(/^models\/cyberagent--calm3-22b-chat\/[0-9a-f]{16}\/$/);
  });
});

describe('NeuronxCompile: Hugging Face revision and token', () => {
  test('revision main warns that the deployment is not reproducible', () => {
    const { stack } = synth({ props: { model: calm3({ revision: undefined }) } });
    Annotations.fromStack(stack).hasWarning('/TestStack/Compile', Match.stringLikeRegexp("uses revision 'main', a branch.*Pin a commit hash"));
  });

  test('a tokenSecret lets the job read that secret only, and passes its ARN, never its value', () => {
    const fixture = compileFixture({ props: {} });
    const secret = new secretsmanager.Secret(fixture.stack, 'HfToken');
    const compile = new NeuronxCompile(fixture.stack, 'Gated', {
      vpc: fixture.vpc,
      bucket: fixture.bucket,
      model: calm3({ tokenSecret: secret }),
      compileInstanceType: LOW_COST.compile,
      servingInstanceType: LOW_COST.serving,
      compileOptions: LOW_COST.options,
      artifactRootPrefix: 'gated/', // the fixture's compile writes the default prefix
    });
    const template = Template.fromStack(fixture.stack);
    const secretId = logicalId(fixture.stack, secret);
    const statements = statementsOfRole(template, logicalId(fixture.stack, compile.node.findChild('JobRole')));
    const reads = statementsAllowing(statements, 'secretsmanager:GetSecretValue');
    expect(reads).toHaveLength(1);
    expect(reads[0].Resource).toEqual({ Ref: secretId });
    // The other compile in the stack (no token) gets no secret access at all.
    const other = statementsOfRole(template, logicalId(fixture.stack, fixture.compile.node.findChild('JobRole')));
    expect(other.flatMap(actionsOf).filter(a => a.startsWith('secretsmanager:'))).toEqual([]);
    const definitions = Object.values(template.findResources('AWS::Batch::JobDefinition'))
      .map(d => d.Properties.ContainerProperties.Environment as Array<{ Name: string; Value: unknown }>);
    const tokenEnv = definitions.flat().filter(e => e.Name === 'NEURONX_HF_TOKEN_SECRET_ARN');
    expect(tokenEnv).toEqual([{ Name: 'NEURONX_HF_TOKEN_SECRET_ARN', Value: { Ref: secretId } }]);
  });
});

describe('NeuronxCompile: configurations that cannot work fail at synth, naming the prop, the value and a fix', () => {
  const HP = { compileInstanceType: HIGH_PERFORMANCE.compile, servingInstanceType: HIGH_PERFORMANCE.serving };
  const TRN1_32 = { compileInstanceType: NeuronxInstanceType.TRN1_32XLARGE, servingInstanceType: NeuronxInstanceType.TRN1_32XLARGE };

  test('public subnets: the compile instance would get no public IP and the job would never start', () => {
    expect(compileError({ vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC } }))
      .toMatch(/vpcSubnets selects public subnets, where the compile instance gets no public IP .*select private subnets with egress/);
  });

  test('tpDegree greater than the serving instance\'s NeuronCores', () => {
    expect(compileError({ compileOptions: { ...LOW_COST.options, tpDegree: 4 } }))
      .toMatch(/compileOptions\.tpDegree is 4 but ml\.trn1\.2xlarge has 2 NeuronCores: use tpDegree 2/);
  });

  test('an odd tpDegree on inf2', () => {
    expect(compileError({ ...HP, compileOptions: { tpDegree: 3 } }))
      .toMatch(/compileOptions\.tpDegree is 3, which the Neuron runtime does not support on inf2 \(it supports 1 or an even number\): use tpDegree 4 or 6 or 8 or 12/);
  });

  test('tpDegree 4 on trn1.32xlarge', () => {
    expect(compileError({ ...TRN1_32, compileOptions: { tpDegree: 4 } }))
      .toMatch(/compileOptions\.tpDegree is 4, which the Neuron runtime does not support on trn1 \(it supports 1, 2, 8, 16 or 32\): use tpDegree 8 or 16/);
  });

  test('tpDegree that does not divide the 48 attention heads', () => {
    expect(compileError({ ...TRN1_32, compileOptions: { tpDegree: 32 } }))
      .toMatch(/compileOptions\.tpDegree is 32, which does not divide the model's 48 attention heads: use tpDegree 8 or 16/);
    const five = compileError({ ...HP, compileOptions: { tpDegree: 5 } });
    expect(five).toMatch(/compileOptions\.tpDegree is 5, which does not divide the model's 48 attention heads/);
    expect(five).toMatch(/compileOptions\.tpDegree is 5, which the Neuron runtime does not support on inf2/);
  });

  test('the default tpDegree (all 32 cores of a trn1.32xlarge) is checked too', () => {
    expect(compileError({ ...TRN1_32, compileOptions: undefined })).toMatch(/compileOptions\.tpDegree is 32, which does not divide the model's 48 attention heads/);
  });

  test('weights plus KV cache that do not fit the NeuronCores of one worker', () => {
    expect(compileError({ ...HP, compileOptions: { tpDegree: 2 } }))
      .toMatch(/compileOptions: the model needs 46\.4 GiB of accelerator memory per worker \(weights 41\.9 GiB \+ KV cache 4\.5 GiB for 4096 positions\) but tpDegree 2 on ml\.inf2\.24xlarge gives 28\.8 GiB: use tpDegree 4 or 6 or 8 or 12/);
  });

  test('a batch whose KV caches do not fit fails naming batchSize, the need and the batch size that fits', () => {
    // lowCost: 28.8 GiB on two cores; int8 weights 21.0 GiB; 1.125 GiB of KV cache per sequence at 1024 positions.
    // Batch 6 keeps 7 caches (batch 1 is compiled too): 28.8 GiB and a little more.
    expect(compileError({ compileOptions: { ...LOW_COST.options, batchSize: 6 } }))
      .toMatch(/compileOptions\.batchSize is 6: the model needs 28\.8 GiB of accelerator memory per worker \(weights 21\.0 GiB \+ 7 KV caches of 1\.1 GiB for 1024 positions: batch 6 and batch 1\) but tpDegree 2 on ml\.trn1\.2xlarge gives 28\.8 GiB: use batchSize 5 or less/);
    expect(compileFixture({ props: { compileOptions: { ...LOW_COST.options, batchSize: 5 } } }).compile.batchSize).toBe(5);
  });

  test.each([0, 2.5, -1])('batchSize %p is refused as not a positive whole number', (batchSize) => {
    expect(compileError({ compileOptions: { ...LOW_COST.options, batchSize } }))
      .toMatch(new RegExp(`compileOptions\\.batchSize is ${batchSize}: it must be a positive whole number`));
  });

  test('the KV cache counts only when the architecture is known', () => {
    const weightsOnly = Model.fromHuggingFace('cyberagent/calm3-22b-chat', { revision: 'abc', parameterCount: 22.5e9 });
    // 41.9 GiB of weights alone still do not fit 28.8 GiB.
    expect(compileError({ ...HP, model: weightsOnly, compileOptions: { tpDegree: 2 } })).toMatch(/weights 41\.9 GiB \+ KV cache 0\.0 GiB/);
  });

  test.each([
    [{ nPositions: 0 }, /compileOptions\.nPositions is 0: it must be a positive whole number/],
    [{ nPositions: 1.5 }, /compileOptions\.nPositions is 1\.5: it must be a positive whole number/],
    [{ tpDegree: -2 }, /compileOptions\.tpDegree is -2: it must be a positive whole number/],
  ])('compileOptions %j', (options, message) => {
    expect(compileError({ compileOptions: { ...LOW_COST.options, ...options } })).toMatch(message);
  });

  test('several problems are reported together', () => {
    const message = compileError({ compileOptions: { ...LOW_COST.options, tpDegree: -2, nPositions: 1.5 } });
    expect(message).toMatch(/^NeuronxCompile 'TestStack\/Compile' cannot work:\n- /);
    expect(message).toMatch(/tpDegree is -2/);
    expect(message).toMatch(/nPositions is 1\.5/);
  });

  test('nPositions beyond the model\'s 16384 position embeddings', () => {
    expect(compileError({ ...HP, compileOptions: { tpDegree: 12, nPositions: 20000 } }))
      .toMatch(/compileOptions\.nPositions is 20000 but the model has 16384 position embeddings: use at most 16384/);
  });

  test('a compile instance with too little host memory for the checkpoint', () => {
    expect(compileError({ compileInstanceType: NeuronxInstanceType.INF2_XLARGE }))
      .toMatch(/compileInstanceType is inf2\.xlarge, whose 16\.0 GiB of host memory cannot hold the 62\.9 GiB the compile needs \(bf16 checkpoint plus int8 copy\): use inf2\.8xlarge or inf2\.24xlarge or inf2\.48xlarge or trn1\.32xlarge/);
  });

  test('a timeout longer than the 12 hour wait allows', () => {
    expect(compileError({ timeout: Duration.hours(12) }))
      .toMatch(/timeout is 12 hours: with startTimeout 30 minutes the deploy cannot wait for it \(a WaitCondition waits at most 12 hours\); use at most 11 hours 15 minutes/);
    expect(compileError({ timeout: Duration.hours(11), startTimeout: Duration.hours(1) })).toMatch(/use at most 10 hours 45 minutes/);
  });

  test('a startTimeout under 10 minutes', () => {
    expect(compileError({ startTimeout: Duration.minutes(5) })).toMatch(/startTimeout is 5 minutes: Batch needs at least 10 minutes/);
  });

  test('the architecture of the fixture is calm3\'s', () => {
    // Guards the error expectations above: they assume 48 heads and 48 layers of width 6144.
    expect(CALM3_ARCHITECTURE).toMatchObject({ numAttentionHeads: 48, numLayers: 48, hiddenSize: 6144 });
  });
});

describe('NeuronxCompile: subnets', () => {
  test('isolated subnets are allowed with a warning that names what they need', () => {
    const app = new App();
    const stack = new Stack(app, 'Isolated', { env: { account: '123456789012', region: 'us-east-1' } });
    const vpc = new ec2.Vpc(stack, 'Vpc', { subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    new NeuronxCompile(stack, 'Compile', {
      vpc,
      bucket: new s3.Bucket(stack, 'Bucket'),
      model: calm3(),
      compileInstanceType: LOW_COST.compile,
      servingInstanceType: LOW_COST.serving,
      compileOptions: LOW_COST.options,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
    });
    Annotations.fromStack(stack).hasWarning('/Isolated/Compile', Match.stringLikeRegexp('isolated subnets: the compile job needs VPC endpoints'));
  });

  test('the default private subnets with egress get no subnet warning', () => {
    const { stack } = compileFixture();
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('isolated subnets'))).toEqual([]);
  });
});

describe('NeuronxCompile: the function that starts and stops the job and signals its end', () => {
  let fixture: CompileFixture & { template: Template };
  let ids: { queue: string; jobDefinition: string; bucketArn: string; lifecycleFunction: string; rule: string };
  const JOB_ARNS = 'arn:${AWS::Partition}:batch:us-east-1:123456789012:job/*';
  beforeAll(() => {
    fixture = synth();
    const { stack, compile, bucket } = fixture;
    const id = (child: string) => logicalId(stack, compile.node.findChild(child));
    ids = {
      queue: id('JobQueue'),
      jobDefinition: id('JobDefinition'),
      bucketArn: `\${${logicalId(stack, bucket)}.Arn}`,
      lifecycleFunction: id('LifecycleFunction'),
      rule: id('JobStateRule'),
    };
  });

  function jobTagValue(): string {
    const [, start] = onlyResourceWithId(fixture.template, 'Custom::NeuronxCompileJob');
    return start.Properties.JobTagValue;
  }

  test('the lifecycle function submits jobs to this queue and any revision of this job definition only', () => {
    const submits = statementsAllowing(roleStatements(fixture, 'LifecycleFunctionRole'), 'batch:SubmitJob');
    const [onQueue, onJobs] = [submits.filter(s => !s.Condition), submits.filter(s => s.Condition)];
    expect(onQueue).toHaveLength(1);
    expect(actionsOf(onQueue[0])).toEqual(['batch:SubmitJob']);
    const [queue, definition] = resourcesOf(onQueue[0]);
    expect(resourcesOf(onQueue[0])).toHaveLength(2);
    expect(queue).toBe(`\${${ids.queue}.JobQueueArn}`);
    // job-definition/<the name in the Ref, split out of the ARN>:* (any revision, no other definition).
    expect(definition).toMatch(new RegExp(`^arn:\\$\\{AWS::Partition\\}:batch:us-east-1:123456789012:job-definition/\\{"Fn::Select":\\[0,.*"Ref":"${ids.jobDefinition}".*\\}:\\*$`));
    expect(onJobs).toHaveLength(1);
  });

  test('the lifecycle function may tag a job only while submitting it with this compile\'s tag and no other', () => {
    const tagging = statementsAllowing(roleStatements(fixture, 'LifecycleFunctionRole'), 'batch:TagResource');
    expect(tagging).toHaveLength(1);
    expect(actionsOf(tagging[0]).sort()).toEqual(['batch:SubmitJob', 'batch:TagResource']);
    expect(resourcesOf(tagging[0])).toEqual([JOB_ARNS]);
    expect(tagging[0].Condition).toEqual({
      'StringEquals': { 'aws:RequestTag/neuronx-compile': jobTagValue() },
      'ForAllValues:StringEquals': { 'aws:TagKeys': ['neuronx-compile'] },
    });
  });

  test('the lifecycle function may terminate only jobs that carry this compile\'s tag', () => {
    const statements = roleStatements(fixture, 'LifecycleFunctionRole');
    const terminates = statementsAllowing(statements, 'batch:TerminateJob');
    expect(terminates).toHaveLength(1);
    expect(actionsOf(terminates[0])).toEqual(['batch:TerminateJob']);
    expect(resourcesOf(terminates[0])).toEqual([JOB_ARNS]);
    expect(terminates[0].Condition).toEqual({ StringEquals: { 'aws:ResourceTag/neuronx-compile': jobTagValue() } });
    expect(jobTagValue()).toMatch(/^[0-9a-f]{16}$/);
    // No other statement of the role allows a Batch write without a condition on a job.
    const unconditionalOnJobs = statements.filter(s => !s.Condition && resourcesOf(s).includes(JOB_ARNS));
    expect(unconditionalOnJobs).toEqual([]);
  });

  test('the tag names the construct, not the compile: a new prefix keeps it (so the old job can still be stopped), another construct does not', () => {
    const tagsOf = (f: CompileFixture) => Object.values(Template.fromStack(f.stack).findResources('Custom::NeuronxCompileJob'))
      .map(r => r.Properties.JobTagValue as string);
    const base = compileFixture();
    new NeuronxCompile(base.stack, 'Second', {
      vpc: base.vpc,
      bucket: base.bucket,
      model: calm3(),
      compileInstanceType: LOW_COST.compile,
      servingInstanceType: LOW_COST.serving,
      compileOptions: LOW_COST.options,
      artifactRootPrefix: 'second/', // the base compile writes the default prefix
    });
    const newPrefix = compileFixture({ props: { compileOptions: { ...LOW_COST.options, nPositions: 2048 } } });
    expect(newPrefix.compile.compiledArtifactS3Prefix).not.toEqual(base.compile.compiledArtifactS3Prefix);
    const [first, second] = tagsOf(base);
    expect(tagsOf(newPrefix)).toEqual([first]);
    expect(second).not.toEqual(first);
  });

  test('the lifecycle function describes jobs (no resource-level permission exists for it), reads only the artifact prefix and aborts only its uploads', () => {
    const statements = roleStatements(fixture, 'LifecycleFunctionRole');
    const describes = statementsAllowing(statements, 'batch:DescribeJobs');
    expect(describes).toHaveLength(1);
    expect(actionsOf(describes[0])).toEqual(['batch:DescribeJobs']);
    expect(describes[0].Resource).toBe('*');
    const s3Actions = statements.flatMap(actionsOf).filter(a => a.startsWith('s3:')).sort();
    expect(s3Actions).toEqual(['s3:AbortMultipartUpload', 's3:GetObject', 's3:ListBucket', 's3:ListBucketMultipartUploads']);
    expect(statementsAllowing(statements, 's3:AbortMultipartUpload').flatMap(resourcesOf)).toEqual([`${ids.bucketArn}/${fixture.compile.compiledArtifactS3Prefix}*`]);
    // S3 authorizes listing uploads in progress on the bucket only (no s3:prefix key): the bucket, no object, no wildcard.
    expect(statementsAllowing(statements, 's3:ListBucketMultipartUploads').flatMap(resourcesOf)).toEqual([ids.bucketArn]);
    expect(statementsAllowing(statements, 's3:GetObject').flatMap(resourcesOf)).toEqual([`${ids.bucketArn}/${fixture.compile.compiledArtifactS3Prefix}*`]);
    const lists = statementsAllowing(statements, 's3:ListBucket');
    expect(lists.flatMap(resourcesOf)).toEqual([ids.bucketArn]);
    expect(lists[0].Condition).toEqual({ StringLike: { 's3:prefix': [`${fixture.compile.compiledArtifactS3Prefix}*`] } });
  });

  test('the lifecycle function reads the wait handle\'s URL from this stack only: DescribeStackResource on the stack\'s own id', () => {
    const statements = roleStatements(fixture, 'LifecycleFunctionRole');
    const reads = statementsAllowing(statements, 'cloudformation:DescribeStackResource');
    expect(reads).toHaveLength(1);
    expect(actionsOf(reads[0])).toEqual(['cloudformation:DescribeStackResource']);
    expect(reads[0].Resource).toEqual({ Ref: 'AWS::StackId' });
    expect(reads[0].Condition).toBeUndefined();
    // No other CloudFormation right: it cannot signal a resource, read a template, or describe another stack.
    expect(statements.flatMap(actionsOf).filter(a => a.startsWith('cloudformation:'))).toEqual(['cloudformation:DescribeStackResource']);
  });

  test('the job carries the handle\'s logical id; its URL goes only to the job-starting custom resource and the WaitCondition', () => {
    const { template, stack, compile } = fixture;
    const [handleId] = onlyResourceWithId(template, 'AWS::CloudFormation::WaitConditionHandle');
    const [, start] = onlyResourceWithId(template, 'Custom::NeuronxCompileJob');
    expect(start.Properties.WaitHandleLogicalId).toBe(handleId);
    expect(start.Properties.WaitHandleUrl).toEqual({ Ref: handleId });
    // Every reference to the handle (its URL): the custom resource's WaitHandleUrl and the WaitCondition's Handle.
    const referrers = Object.entries(template.toJSON().Resources as Record<string, unknown>)
      .filter(([, resource]) => JSON.stringify(resource).includes(JSON.stringify({ Ref: handleId })))
      .map(([id]) => id).sort();
    const [waitId] = onlyResourceWithId(template, 'AWS::CloudFormation::WaitCondition');
    expect(referrers).toEqual([logicalId(stack, compile.node.findChild('CompileJob')), waitId].sort());
    // The function is told which stack to read it from.
    const fn = template.findResources('AWS::Lambda::Function')[ids.lifecycleFunction];
    expect(fn.Properties.Environment.Variables.STACK_ID).toEqual({ Ref: 'AWS::StackId' });
  });

  test('the lifecycle function\'s Batch rights are the four it calls, and nothing else', () => {
    const batchActions = new Set(roleStatements(fixture, 'LifecycleFunctionRole').flatMap(actionsOf).filter(a => a.startsWith('batch:')));
    expect([...batchActions].sort()).toEqual(['batch:DescribeJobs', 'batch:SubmitJob', 'batch:TagResource', 'batch:TerminateJob']);
  });

  test('the compile has one Lambda function, whose role is the only one that may start or stop jobs', () => {
    const { template, stack, compile } = fixture;
    expect(Object.keys(template.findResources('AWS::Lambda::Function'))).toEqual([ids.lifecycleFunction]);
    const roleIds = Object.keys(template.findResources('AWS::IAM::Role'));
    const mayStartOrStop = roleIds.filter(roleId => Object.values(template.findResources('AWS::IAM::Policy'))
      .filter(p => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
      .flatMap(p => p.Properties.PolicyDocument.Statement as Array<{ Action: string | string[] }>)
      .some(st => [st.Action].flat().some(a => a === 'batch:SubmitJob' || a === 'batch:TerminateJob')));
    expect(mayStartOrStop).toEqual([logicalId(stack, compile.node.findChild('LifecycleFunctionRole'))]);
  });

  test('the rule matches the end (SUCCEEDED or FAILED) of jobs in this queue only, and targets the lifecycle function', () => {
    const [, rule] = onlyResourceWithId(fixture.template, 'AWS::Events::Rule');
    expect(rule.Properties.EventPattern).toEqual({
      'source': ['aws.batch'],
      'detail-type': ['Batch Job State Change'],
      'detail': { jobQueue: [{ 'Fn::GetAtt': [ids.queue, 'JobQueueArn'] }], status: ['SUCCEEDED', 'FAILED'] },
    });
    expect(rule.Properties.Targets).toEqual([{
      Id: 'LifecycleFunction',
      Arn: { 'Fn::GetAtt': [ids.lifecycleFunction, 'Arn'] },
      RetryPolicy: { MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 3600 },
    }]);
  });

  test('only this rule may invoke the lifecycle function', () => {
    const [, permission] = onlyResourceWithId(fixture.template, 'AWS::Lambda::Permission');
    expect(permission.Properties).toEqual({
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [ids.lifecycleFunction, 'Arn'] },
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [ids.rule, 'Arn'] },
    });
  });

  test.each([
    ['LifecycleFunction', 'index.compileLifecycle', 120],
  ])('%s runs on nodejs24.x with its timeout (%s, %i s) and logs to its own log group, kept 30 days', (id, handler, timeout) => {
    const { template, stack, compile } = fixture;
    const fn = template.findResources('AWS::Lambda::Function')[logicalId(stack, compile.node.findChild(id))];
    expect(fn.Properties).toMatchObject({ Runtime: 'nodejs24.x', Handler: handler, Timeout: timeout });
    const logGroupId = logicalId(stack, compile.node.findChild(`${id}Logs`));
    expect(fn.Properties.LoggingConfig).toEqual({ LogGroup: { Ref: logGroupId } });
    expect(template.findResources('AWS::Logs::LogGroup')[logGroupId].Properties).toEqual({ RetentionInDays: 30 });
  });

  test('the compile job\'s log group is kept 30 days too', () => {
    const { template, stack, compile } = fixture;
    expect(template.findResources('AWS::Logs::LogGroup')[logicalId(stack, compile.node.findChild('JobLogs'))].Properties).toEqual({ RetentionInDays: 30 });
  });
});

describe('NeuronxCompile: each cdk-nag suppression names the wildcards it is for', () => {
  interface Suppression { id: string; reason: string; applies_to?: string[] }

  function suppressionsOf(fixture: CompileFixture, child: string): Suppression[] {
    const policy = fixture.compile.node.findChild(child).node.findChild('DefaultPolicy');
    const resource = Template.fromStack(fixture.stack).findResources('AWS::IAM::Policy')[logicalId(fixture.stack, policy)];
    return resource.Metadata?.cdk_nag?.rules_to_suppress ?? [];
  }

  function unsuppressedNagFindings(stack: Stack): string[] {
    Aspects.of(stack).add(new AwsSolutionsChecks());
    const rule = Match.stringLikeRegexp('AwsSolutions-.*');
    const annotations = Annotations.fromStack(stack);
    return [...annotations.findError('*', rule), ...annotations.findWarning('*', rule)].map(m => `${m.id} ${String(m.entry.data)}`);
  }

  test('every IAM5 suppression lists the findings it covers, exactly', () => {
    const fixture = compileFixture();
    const bucketArn = `<${logicalId(fixture.stack, fixture.bucket)}.Arn>`;
    const prefixObjects = `Resource::${bucketArn}/${fixture.compile.compiledArtifactS3Prefix}*`;
    const jobDefinition = logicalId(fixture.stack, fixture.compile.node.findChild('JobDefinition'));
    const iam5 = (child: string) => suppressionsOf(fixture, child).filter(s => s.id === 'AwsSolutions-IAM5');
    const expected: Record<string, string[]> = {
      JobRole: [prefixObjects],
      ExecutionRole: ['Resource::*'],
      LifecycleFunctionRole: [
        prefixObjects,
        'Resource::*',
        'Resource::arn:<AWS::Partition>:batch:us-east-1:123456789012:job/*',
        'Resource::arn:<AWS::Partition>:batch:us-east-1:123456789012:job-definition/{"Fn::Select":[0,{"Fn::Split":[":",{"Fn::Select":[1,'
          + `{"Fn::Split":["job-definition/",{"Ref":"${jobDefinition}"}]}]}]}]}:*`,
      ],
    };
    for (const [child, appliesTo] of Object.entries(expected)) {
      const suppressions = iam5(child);
      expect(suppressions).toHaveLength(1);
      expect([...suppressions[0].applies_to ?? []].sort()).toEqual([...appliesTo].sort());
    }
    expect(iam5('LifecycleFunctionRole')[0].reason).toMatch(/batch:TerminateJob requires that tag on the job/);
  });

  test('a wildcard granted to a role later is reported, not hidden by the construct\'s suppression', () => {
    const fixture = compileFixture();
    const jobRole = fixture.compile.node.findChild('JobRole') as iam.Role;
    jobRole.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:Get*'], resources: [fixture.bucket.arnForObjects('*')] }));
    const findings = unsuppressedNagFindings(fixture.stack);
    expect(findings).toEqual(expect.arrayContaining([
      expect.stringMatching(/^\/TestStack\/Compile\/JobRole\/DefaultPolicy\/Resource AwsSolutions-IAM5\[Action::s3:Get\*\]/),
      expect.stringMatching(/^\/TestStack\/Compile\/JobRole\/DefaultPolicy\/Resource AwsSolutions-IAM5\[Resource::<Artifacts[0-9A-F]+\.Arn>\/\*\]/),
    ]));
    expect(findings).toHaveLength(2);
  });

  test('weights in S3, a KMS-encrypted bucket and an environment-agnostic stack leave no unsuppressed finding', () => {
    const stack = new Stack(new App(), 'Agnostic');
    const { vpc, accessLogsBucket } = network(stack);
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    const bucket = new s3.Bucket(stack, 'Encrypted', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: key,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      versioned: true,
      serverAccessLogsBucket: accessLogsBucket,
      serverAccessLogsPrefix: 'encrypted/',
    });
    const weights = Model.fromBucket(bucket, 'weights/calm3', { parameterCount: CALM3_PARAMETERS, architecture: CALM3_ARCHITECTURE });
    new NeuronxCompile(stack, 'Compile', {
      vpc, bucket, model: weights, compileInstanceType: LOW_COST.compile, servingInstanceType: LOW_COST.serving, compileOptions: LOW_COST.options,
    });
    expect(unsuppressedNagFindings(stack)).toEqual([]);
  });
});

describe('the job environment comes from the contract by option name, and the prefixes compiled before stay (issue 22)', () => {
  const model = Model.fromHuggingFace('cyberagent/calm3-22b-chat', {
    revision: 'abc',
    parameterCount: 22.5e9,
    architecture: { numLayers: 48, hiddenSize: 6144, numAttentionHeads: 48, numKeyValueHeads: 48, maxPositionEmbeddings: 16384 },
  });
  // Prefixes and variables as main computed them (c0787d9) before the environment was derived from the contract.
  test.each([
    [{}, 'neuronx-compile/cyberagent--calm3-22b-chat/bcdf5224904c5370/'],
    [{ compileOptions: { continuousBatching: false } }, 'neuronx-compile/cyberagent--calm3-22b-chat/bcdf5224904c5370/'],
    [{
      compileOptions: {
        tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, optLevel: OptLevel.BEST_EXECUTION, batchSize: 6, continuousBatching: true,
      },
    }, 'neuronx-compile/cyberagent--calm3-22b-chat/f7c947f54592e103/'],
    [{
      compileOptions: { tpDegree: 12, optLevel: OptLevel.MINIMIZE_COMPILE_TIME, batchSize: 4 },
      servingInstanceType: NeuronxInstanceType.INF2_24XLARGE,
    }, 'neuronx-compile/cyberagent--calm3-22b-chat/d26f1f5177007146/'],
    [{
      compileOptions: { batchSize: 1, optLevel: OptLevel.BEST_BALANCE }, servingInstanceType: NeuronxInstanceType.TRN1_32XLARGE, artifactRootPrefix: 'x',
    }, 'x/cyberagent--calm3-22b-chat/5f987deb0f7db101/'],
  ])('%j keeps its prefix', (props, prefix) => {
    expect(compileSettings({ model, ...props }).artifactPrefix).toBe(prefix);
  });

  test('the variables keep their names, values and order; continuousBatching only when on', () => {
    const env = (options: object) =>
      compileSettings({ model, compileOptions: options, servingInstanceType: NeuronxInstanceType.INF2_24XLARGE }).jobEnvironment;
    const always = ['tpDegree', 'nPositions', 'batchSize', 'amp', 'quantDtype', 'optLevel', 'compilerTarget', 'imageUri'].map(compileEnv);
    expect(Object.keys(env({}))).toEqual(always);
    expect(Object.keys(env({ continuousBatching: false, batchSize: 2 }))).toEqual(always);
    expect(env({ continuousBatching: true, batchSize: 2, quantDtype: QuantDtype.S8 })).toEqual({
      [compileEnv('tpDegree')]: '12',
      [compileEnv('nPositions')]: '4096',
      [compileEnv('batchSize')]: '2',
      [compileEnv('amp')]: 'bf16',
      [compileEnv('quantDtype')]: 's8',
      [compileEnv('optLevel')]: '2',
      [compileEnv('compilerTarget')]: 'inf2',
      [compileEnv('imageUri')]: NeuronxRuntime.DEFAULT.toString(),
      [compileEnv('continuousBatching')]: CONTRACT.compileJob.enabledValue,
    });
  });

  test('a key of the options that names another job variable (model, locations) is not written', () => {
    const options = { modelId: 'other/model', artifactS3Uri: 's3://other/' };
    expect(Object.keys(compileSettings({ model, compileOptions: options }).jobEnvironment))
      .toEqual(['tpDegree', 'nPositions', 'batchSize', 'amp', 'quantDtype', 'optLevel', 'compilerTarget', 'imageUri'].map(compileEnv));
  });

  test('a compile\'s compileOptions hold every option resolved', () => {
    const settings = compileSettings({ model, servingInstanceType: NeuronxInstanceType.INF2_24XLARGE });
    // toMatchObject: an option added later with a contract default is in them too.
    expect(settings.options).toMatchObject({
      tpDegree: 12, nPositions: 4096, batchSize: 1, optLevel: OptLevel.BEST_BALANCE, continuousBatching: false,
    });
    expect(settings.options.quantDtype).toBeUndefined();
  });
});
