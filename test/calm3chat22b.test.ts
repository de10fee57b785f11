import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { calm3chat22b } from '../src';

const PINNED_REVISION = '055922aa0f0fb1fbfbc97a2e31134532485ee99b';

interface Synthesized {
  readonly stack: Stack;
  readonly template: Template;
  readonly construct: calm3chat22b.SageMakerRealtimeInference;
}

function synth(props: Partial<calm3chat22b.SageMakerRealtimeInferenceProps> = {}, app = new App()): Synthesized {
  const stack = new Stack(app, 'Stack', { env: { account: '123456789012', region: 'us-east-1' } });
  const construct = new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3', {
    bucket: new s3.Bucket(stack, 'Bucket'),
    compileVpc: new ec2.Vpc(stack, 'Vpc'),
    instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost,
    ...props,
  });
  return { stack, template: Template.fromStack(stack), construct };
}

/** The compile job's environment, as a name -> value map. */
function jobEnvironment(template: Template): Record<string, unknown> {
  const [definition] = Object.values(template.findResources('AWS::Batch::JobDefinition'));
  return Object.fromEntries(definition.Properties.ContainerProperties.Environment.map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]));
}

function modelEnvironment(template: Template): Record<string, string> {
  const [model] = Object.values(template.findResources('AWS::SageMaker::Model'));
  return model.Properties.PrimaryContainer.Environment;
}

function productionVariant(template: Template): Record<string, unknown> {
  const [config] = Object.values(template.findResources('AWS::SageMaker::EndpointConfig'));
  return config.Properties.ProductionVariants[0];
}

function devices(template: Template): string[] {
  const [definition] = Object.values(template.findResources('AWS::Batch::JobDefinition'));
  return definition.Properties.ContainerProperties.LinuxParameters.Devices.map((d: { HostPath: string }) => d.HostPath);
}

function computeInstanceTypes(template: Template): string[] {
  const [environment] = Object.values(template.findResources('AWS::Batch::ComputeEnvironment'));
  return environment.Properties.ComputeResources.InstanceTypes;
}

describe('InstanceTypeStrategy.lowCost', () => {
  const { template, construct } = synth({ instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost });

  test('serves on ml.trn1.2xlarge with one worker on both NeuronCores', () => {
    expect(productionVariant(template)).toMatchObject({ InstanceType: 'ml.trn1.2xlarge', InitialInstanceCount: 1 });
    expect(modelEnvironment(template)).toMatchObject({
      SAGEMAKER_MODEL_SERVER_WORKERS: '1',
      NEURON_RT_NUM_CORES: '2',
      NEURONX_TP_DEGREE: '2',
      NEURONX_N_POSITIONS: '1024',
      NEURONX_QUANT_DTYPE: 's8',
    });
    expect(construct.endpoint.workersPerInstance).toBe(1);
  });

  test('sets no volume size: trn1 has local NVMe storage and SageMaker rejects one', () => {
    expect(productionVariant(template)).not.toHaveProperty('VolumeSizeInGB');
  });

  test('compiles on inf2.8xlarge for trn1, int8, 1024 positions, tp 2, -O3', () => {
    expect(computeInstanceTypes(template)).toEqual(['inf2.8xlarge']);
    expect(devices(template)).toEqual(['/dev/neuron0']);
    expect(jobEnvironment(template)).toMatchObject({
      NEURONX_MODEL_ID: 'cyberagent/calm3-22b-chat',
      NEURONX_MODEL_REVISION: PINNED_REVISION,
      NEURONX_COMPILER_TARGET: 'trn1',
      NEURONX_TP_DEGREE: '2',
      NEURONX_N_POSITIONS: '1024',
      NEURONX_QUANT_DTYPE: 's8',
      NEURONX_OPT_LEVEL: '3',
    });
  });
});

describe('InstanceTypeStrategy.highPerformance', () => {
  const { template, construct } = synth({ instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.highPerformance });

  test('serves on ml.inf2.24xlarge with one worker over all twelve NeuronCores', () => {
    expect(productionVariant(template)).toMatchObject({ InstanceType: 'ml.inf2.24xlarge', InitialInstanceCount: 1 });
    expect(productionVariant(template)).toHaveProperty('VolumeSizeInGB');
    expect(modelEnvironment(template)).toMatchObject({
      SAGEMAKER_MODEL_SERVER_WORKERS: '1',
      NEURON_RT_NUM_CORES: '12',
      NEURONX_TP_DEGREE: '12',
      NEURONX_N_POSITIONS: '4096',
      NEURONX_QUANT_DTYPE: '',
    });
    expect(construct.endpoint.workersPerInstance).toBe(1);
  });

  test('compiles on inf2.24xlarge for inf2, bf16, the default 4096 positions, tp 12, -O3', () => {
    expect(computeInstanceTypes(template)).toEqual(['inf2.24xlarge']);
    expect(devices(template)).toEqual(['/dev/neuron0', '/dev/neuron1', '/dev/neuron2', '/dev/neuron3', '/dev/neuron4', '/dev/neuron5']);
    expect(jobEnvironment(template)).toMatchObject({
      NEURONX_MODEL_REVISION: PINNED_REVISION,
      NEURONX_COMPILER_TARGET: 'inf2',
      NEURONX_TP_DEGREE: '12',
      NEURONX_N_POSITIONS: '4096',
      NEURONX_QUANT_DTYPE: '',
      NEURONX_OPT_LEVEL: '3',
    });
  });

  test('compiles to a different prefix than lowCost', () => {
    const lowCost = synth({ instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost });
    expect(construct.compile.compiledArtifactS3Prefix).not.toEqual(lowCost.construct.compile.compiledArtifactS3Prefix);
  });
});

describe('SageMakerRealtimeInference', () => {
  test('the same app synthesizes to byte-identical templates, so a redeploy changes nothing and starts no compile', () => {
    const templates = [1, 2].map(() => {
      const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'calm3-'));
      try {
        const app = new App({ outdir });
        synth({ instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.highPerformance }, app);
        const assembly = app.synth();
        return fs.readFileSync(path.join(assembly.directory, assembly.getStackByName('Stack').templateFile));
      } finally {
        fs.rmSync(outdir, { recursive: true, force: true });
      }
    });
    expect(templates[0].length).toBeGreaterThan(0);
    expect(templates[0].equals(templates[1])).toBe(true);
  });

  test('serves what it compiled: the endpoint reads the compile prefix', () => {
    const { template, construct } = synth();
    expect(construct.compile.compiledArtifactS3Prefix).toMatch(/^neuronx-compile\/cyberagent--calm3-22b-chat\/[0-9a-f]{16}\/$/);
    template.hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: {
        ModelDataSource: {
          S3DataSource: {
            S3DataType: 'S3Prefix',
            CompressionType: 'None',
            S3Uri: { 'Fn::Join': ['', ['s3://', Match.anyValue(), `/${construct.compile.compiledArtifactS3Prefix}`]] },
          },
        },
      },
    });
  });

  test('revision compiles another commit to another prefix', () => {
    const pinned = synth();
    const other = synth({ revision: '0123456789abcdef0123456789abcdef01234567' });
    expect(jobEnvironment(other.template)).toMatchObject({ NEURONX_MODEL_REVISION: '0123456789abcdef0123456789abcdef01234567' });
    expect(other.construct.compile.compiledArtifactS3Prefix).not.toEqual(pinned.construct.compile.compiledArtifactS3Prefix);
  });

  test('instanceCount sets the instances behind the endpoint', () => {
    const { template } = synth({ instanceCount: 2 });
    expect(productionVariant(template)).toMatchObject({ InitialInstanceCount: 2 });
  });

  test('the pinned revision gives no unpinned-revision warning (a branch would)', () => {
    const unpinnedWarnings = (revision?: string) => Annotations.fromStack(synth({ revision }).stack)
      .findWarning('*', Match.stringLikeRegexp('unpinnedRevision'));
    expect(unpinnedWarnings()).toHaveLength(0);
    expect(unpinnedWarnings('main')).toHaveLength(1);
  });

  test('calm3 is declared a Llama architecture, the one the compile builds: no unknown-model-type warning', () => {
    const { stack, construct } = synth();
    expect(construct.compile.model.architecture?.modelType).toBe('llama');
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('modelTypeUnknown'))).toHaveLength(0);
  });

  test.each([
    ['lowCost', calm3chat22b.InstanceTypeStrategy.lowCost],
    ['highPerformance', calm3chat22b.InstanceTypeStrategy.highPerformance],
  ])('%s has no unsuppressed cdk-nag AwsSolutions finding in the construct', (_name, instanceTypeStrategy) => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: { account: '123456789012', region: 'us-east-1' } });
    new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3', {
      bucket: new s3.Bucket(stack, 'Bucket'),
      compileVpc: new ec2.Vpc(stack, 'Vpc'),
      instanceTypeStrategy,
    });
    Aspects.of(stack).add(new AwsSolutionsChecks());
    const annotations = Annotations.fromStack(stack);
    // The test's own bucket and VPC are not compliant: only the construct's findings count.
    const findings = [
      ...annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-')),
      ...annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-')),
    ].filter(f => f.id.startsWith('/Stack/Calm3/'));
    expect(findings.map(f => `${f.id}: ${String(f.entry.data).split('\n')[0]}`)).toEqual([]);
  });
});
