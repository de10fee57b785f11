/**
 * The optional props of calm3chat22b.SageMakerRealtimeInference reach the template, bad values fail at synth with
 * this library's message, and constructs that compile the same artifacts in one stack share one compile.
 */
import { App, Aspects, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { calm3chat22b } from '../src';

type Props = calm3chat22b.SageMakerRealtimeInferenceProps;

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '123456789012', region: 'us-east-1' } });
}

/** One construct `Calm3` in a new stack with a default VPC and bucket, plus `props`. */
function build(props: Partial<Props> = {}, stack = newStack()) {
  const construct = new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3', {
    bucket: new s3.Bucket(stack, 'Bucket'),
    compileVpc: props.compileVpc ?? new ec2.Vpc(stack, 'Vpc'),
    instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.highPerformance,
    ...props,
  });
  return { stack, construct, template: () => Template.fromStack(stack) };
}

function productionVariant(template: Template): Record<string, unknown> {
  const [config] = Object.values(template.findResources('AWS::SageMaker::EndpointConfig'));
  return config.Properties.ProductionVariants[0];
}

describe('optional props reach the template', () => {
  test('compileSubnets chooses the subnets of the compile instance', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', {
      subnetConfiguration: [
        { name: 'Public', subnetType: ec2.SubnetType.PUBLIC },
        { name: 'App', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
        { name: 'Compile', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      ],
    });
    const compileSubnets = vpc.selectSubnets({ subnetGroupName: 'Compile' }).subnetIds;
    const { template } = build({ compileVpc: vpc, compileSubnets: { subnetGroupName: 'Compile' } }, stack);
    template().hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: { Subnets: stack.resolve(compileSubnets) },
    });
  });

  test('compileSpot runs the compile on Spot capacity; no retry fits the wait after a 10-hour attempt, and a warning says so', () => {
    const { stack, template } = build({ compileSpot: true });
    const spot = template();
    spot.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: { Type: 'SPOT', AllocationStrategy: 'SPOT_PRICE_CAPACITY_OPTIMIZED' },
    });
    spot.hasResourceProperties('AWS::Batch::JobDefinition', { RetryStrategy: Match.absent() });
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('^spot is true, but .* only 1 attempt fits .*a reclaimed Spot instance fails the deploy'));
    build().template().hasResourceProperties('AWS::Batch::ComputeEnvironment', { ComputeResources: { Type: 'EC2' } });
  });

  test('artifactRootPrefix moves the artifacts, and the endpoint reads them there', () => {
    const { construct, template } = build({ artifactRootPrefix: 'models/' });
    expect(construct.compile.compiledArtifactS3Prefix).toMatch(/^models\/cyberagent--calm3-22b-chat\/[0-9a-f]{16}\/$/);
    template().hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: { ModelDataSource: { S3DataSource: { S3Uri: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith([`/${construct.compile.compiledArtifactS3Prefix}`])] }) } } },
    });
  });

  test('environment is added to the serving container', () => {
    const { template } = build({ environment: { MY_SETTING: 'on' } });
    template().hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: { Environment: Match.objectLike({ MY_SETTING: 'on', SAGEMAKER_MODEL_SERVER_WORKERS: '1' }) },
    });
  });

  test('volumeEncryptionKey encrypts the endpoint volume (inf2)', () => {
    const stack = newStack();
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    build({ volumeEncryptionKey: key }, stack).template().hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      KmsKeyId: stack.resolve(key.keyArn),
    });
  });

  test('the endpoint timeouts reach the production variant', () => {
    const { template } = build({
      modelDataDownloadTimeout: Duration.minutes(20),
      containerStartupHealthCheckTimeout: Duration.minutes(50),
    });
    expect(productionVariant(template())).toMatchObject({
      ModelDataDownloadTimeoutInSeconds: 1200,
      ContainerStartupHealthCheckTimeoutInSeconds: 3000,
    });
  });

  const generationTimeLimitOf = (template: Template) =>
    (Object.values(template.findResources('AWS::SageMaker::Model'))[0] as any).Properties.PrimaryContainer.Environment.NEURONX_GENERATION_TIME_LIMIT_SECONDS;

  test('generationTimeLimit reaches the handler\'s variable; without it the handler keeps its 50 s', () => {
    expect(generationTimeLimitOf(build().template())).toBe('50');
    const { construct, template } = build({ generationTimeLimit: Duration.seconds(25) });
    expect(generationTimeLimitOf(template())).toBe('25');
    expect(construct.endpoint.generationTimeLimit.toSeconds()).toBe(25);
  });
});

describe('bad optional props fail at synth, naming the prop', () => {
  test.each<[string, (stack: Stack) => Partial<Props>, RegExp]>([
    ['a volume key on trn1 (lowCost)', stack => ({
      instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost, volumeEncryptionKey: new kms.Key(stack, 'Key'),
    }), /volumeEncryptionKey is set but ml\.trn1\.2xlarge has local NVMe storage/],
    ['a download timeout over 1 hour', () => ({ modelDataDownloadTimeout: Duration.hours(2) }), /modelDataDownloadTimeout is 2 hours: SageMaker accepts 60 to 3600 seconds/],
    ['a startup timeout under 60 s', () => ({ containerStartupHealthCheckTimeout: Duration.seconds(30) }), /containerStartupHealthCheckTimeout is 30 seconds/],
    ['an environment variable the library sets', () => ({ environment: { SAGEMAKER_MODEL_SERVER_WORKERS: '8' } }), /environment sets SAGEMAKER_MODEL_SERVER_WORKERS/],
    ['an instance count of 0', () => ({ instanceCount: 0 }), /instanceCount is 0/],
    ['a generation time limit past SageMaker\'s invocation limit', () => ({ generationTimeLimit: Duration.seconds(59) }),
      /generationTimeLimit is 59 seconds: use 1 second to 50 seconds\. SageMaker ends an invocation after 1 minute/],
    ['a generation time limit with no room for one token', () => ({ generationTimeLimit: Duration.millis(100) }),
      /generationTimeLimit is 100 millis: use 1 second to 50 seconds\..*below 1 second not even one token of this model data \(tpDegree 12, batchSize 8\) fits/],
    ['the generation time limit in environment: says what it is and which prop sets it', () => ({ environment: { NEURONX_GENERATION_TIME_LIMIT_SECONDS: '25' } }),
      /environment sets NEURONX_GENERATION_TIME_LIMIT_SECONDS, the seconds the handler generates before it answers with the text so far, which the library sets from the generation time limit: remove it and set generationTimeLimit instead\./],
  ])('%s', (_name, props, message) => {
    const stack = newStack();
    expect(() => build(props(stack), stack)).toThrow(message);
  });
});

describe('a VPC without a usable subnet fails with this library\'s message', () => {
  test('no private subnets with egress: names compileVpc, what it has and what works', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', {
      natGateways: 0,
      subnetConfiguration: [
        { name: 'Public', subnetType: ec2.SubnetType.PUBLIC },
        { name: 'Isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
      ],
    });
    expect(() => build({ compileVpc: vpc }, stack)).toThrow(
      "SageMakerRealtimeInference 'Stack/Calm3': compileVpc has no private subnets with egress (it has 3 public, 3 isolated subnets), "
      + 'where the compile instance runs by default: give it private subnets with egress (a NAT gateway)');
  });

  test('compileSubnets that select none: names compileSubnets', () => {
    expect(() => build({ compileSubnets: { subnetGroupName: 'Compile' } }))
      .toThrow(/^SageMakerRealtimeInference 'Stack\/Calm3': compileSubnets selects no subnet of compileVpc \(which has 3 public, 3 private with egress subnets\): the compile instance needs private subnets with egress/);
  });

  test('compileSubnets that select public subnets: names compileSubnets', () => {
    expect(() => build({ compileSubnets: { subnetType: ec2.SubnetType.PUBLIC } }))
      .toThrow(/^SageMakerRealtimeInference 'Stack\/Calm3': compileSubnets selects public subnets, where AWS Batch gives the compile instance no public IP/);
  });
});

describe('the same compile twice in one stack', () => {
  /** Two constructs in one stack sharing a VPC and a bucket. */
  function twice(first: Partial<Props>, second: Partial<Props>) {
    const stack = newStack();
    const shared = { bucket: new s3.Bucket(stack, 'Bucket'), compileVpc: new ec2.Vpc(stack, 'Vpc') };
    const strategy = calm3chat22b.InstanceTypeStrategy.highPerformance;
    const a = new calm3chat22b.SageMakerRealtimeInference(stack, 'A', { ...shared, instanceTypeStrategy: strategy, ...first });
    const b = new calm3chat22b.SageMakerRealtimeInference(stack, 'B', { ...shared, instanceTypeStrategy: strategy, ...second });
    return { stack, a, b, template: Template.fromStack(stack) };
  }

  test('the same strategy shares one compile: one Batch job, two endpoints serving its prefix', () => {
    const { a, b, template } = twice({}, {});
    expect(b.compile).toBe(a.compile);
    template.resourceCountIs('AWS::Batch::JobDefinition', 1);
    template.resourceCountIs('AWS::Batch::ComputeEnvironment', 1);
    template.resourceCountIs('AWS::CloudFormation::WaitCondition', 1);
    template.resourceCountIs('AWS::SageMaker::Endpoint', 2);
    const uris = Object.values(template.findResources('AWS::SageMaker::Model'))
      .map(m => JSON.stringify(m.Properties.PrimaryContainer.ModelDataSource.S3DataSource.S3Uri));
    expect(uris).toHaveLength(2);
    expect(uris[1]).toEqual(uris[0]);
  });

  test('sharing keeps the first construct\'s logical IDs: a stack that adds a second construct does not replace the first', () => {
    const stack = newStack();
    const shared = { bucket: new s3.Bucket(stack, 'Bucket'), compileVpc: new ec2.Vpc(stack, 'Vpc') };
    new calm3chat22b.SageMakerRealtimeInference(stack, 'A', { ...shared, instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.highPerformance });
    const alone = Template.fromStack(stack).toJSON().Resources;
    const { template } = twice({}, {});
    const together = template.toJSON().Resources;
    for (const [logicalId, resource] of Object.entries(alone)) {
      expect(together[logicalId]?.Type).toEqual((resource as { Type: string }).Type);
    }
  });

  test('the second endpoint, reading the first construct\'s compile, has no unsuppressed cdk-nag finding', () => {
    const { stack } = twice({}, {});
    Aspects.of(stack).add(new AwsSolutionsChecks());
    const annotations = Annotations.fromStack(stack);
    const findings = [
      ...annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-')),
      ...annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-')),
    ].filter(f => /^\/Stack\/(A|B)\//.test(f.id));
    expect(findings.map(f => `${f.id}: ${String(f.entry.data).split('\n')[0]}`)).toEqual([]);
  });

  test('different strategies compile twice, into two prefixes', () => {
    const { a, b, template } = twice({}, { instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost });
    expect(b.compile).not.toBe(a.compile);
    expect(b.compile.compiledArtifactS3Prefix).not.toEqual(a.compile.compiledArtifactS3Prefix);
    template.resourceCountIs('AWS::Batch::JobDefinition', 2);
  });

  test('another artifactRootPrefix compiles its own copy', () => {
    const { a, b, template } = twice({}, { artifactRootPrefix: 'copy/' });
    expect(b.compile).not.toBe(a.compile);
    template.resourceCountIs('AWS::Batch::JobDefinition', 2);
  });

  test('the same artifacts with different compile settings fail, saying how to share or separate them', () => {
    expect(() => twice({}, { compileSpot: true })).toThrow(
      /^SageMakerRealtimeInference 'Stack\/B' compiles the same artifacts as 'Stack\/A' \(same model, revision, strategy and bucket: prefix neuronx-compile\/cyberagent--calm3-22b-chat\/[0-9a-f]{16}\/\), .* but compileSpot differ: give both the same compileSpot to share the compile, or give this one another artifactRootPrefix/);
  });
});
