import * as fs from 'fs';
import * as path from 'path';
import { App, Duration, Lazy, Size, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as ts from 'typescript';
import {
  Model, NeuronxInstanceType, QuantDtype, TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint, TransformersNeuronxSageMakerRealtimeInferenceEndpointProps,
} from '../src';
import {
  calm3, CompileFixtureOptions, ENV, EndpointFixture, endpointFixture, flatten, HIGH_PERFORMANCE_PROPS, logicalId, resourcesOf,
  statementsAllowing, statementsOfRole,
} from './fixtures';
import { CONTRACT } from '../src/private/contract';
import {
  INVOCATION_LIMIT, MAX_GENERATION_TIME_LIMIT, MAX_STATIC_GENERATION_TIME_LIMIT, RESERVED_ENVIRONMENT,
} from '../src/private/endpoint-configuration';

type Synthesized = EndpointFixture & { template: Template };

function synth(compile: CompileFixtureOptions = {}, endpoint: Partial<TransformersNeuronxSageMakerRealtimeInferenceEndpointProps> = {}): Synthesized {
  const fixture = endpointFixture(compile, endpoint);
  return { ...fixture, template: Template.fromStack(fixture.stack) };
}

const HIGH_PERFORMANCE_COMPILE: CompileFixtureOptions = { props: HIGH_PERFORMANCE_PROPS };
/** The lowCost compile with continuous batching over 6 slots, as the calm3 preset has it. */
const CONTINUOUS_COMPILE: CompileFixtureOptions = {
  props: { compileOptions: { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, batchSize: 6, continuousBatching: true } },
};

function only(template: Template, type: string): any {
  const resources = Object.values(template.findResources(type));
  expect(resources).toHaveLength(1);
  return resources[0];
}

function variant(template: Template): Record<string, unknown> {
  const variants = only(template, 'AWS::SageMaker::EndpointConfig').Properties.ProductionVariants;
  expect(variants).toHaveLength(1);
  return variants[0];
}

function containerEnv(template: Template): Record<string, string> {
  return only(template, 'AWS::SageMaker::Model').Properties.PrimaryContainer.Environment;
}

/** Expects the endpoint construction to fail at synth and returns the message. */
function endpointError(endpoint: Partial<TransformersNeuronxSageMakerRealtimeInferenceEndpointProps>, compile: CompileFixtureOptions = {}): string {
  try {
    endpointFixture(compile, endpoint);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected the endpoint to fail at synth');
}

describe('Endpoint serving the lowCost compile (trn1.2xlarge, tp 2, int8)', () => {
  let s: Synthesized;
  beforeAll(() => {
    s = synth();
  });

  test('the model reads the compile\'s prefix uncompressed, in network isolation, with the job\'s image', () => {
    const { template, stack, compile } = s;
    const model = only(template, 'AWS::SageMaker::Model');
    expect(model.Properties.EnableNetworkIsolation).toBe(true);
    const source = model.Properties.PrimaryContainer.ModelDataSource.S3DataSource;
    expect(source.S3DataType).toBe('S3Prefix');
    expect(source.CompressionType).toBe('None');
    expect(flatten(source.S3Uri)).toBe(flatten(stack.resolve(compile.compiledArtifactS3Url)));
    expect(flatten(source.S3Uri).endsWith(`/${compile.compiledArtifactS3Prefix}`)).toBe(true);
    const jobImage = only(template, 'AWS::Batch::JobDefinition').Properties.ContainerProperties.Image;
    expect(flatten(model.Properties.PrimaryContainer.Image)).toBe(flatten(jobImage));
  });

  test('the production variant runs on ml.trn1.2xlarge without a volume size (trn1 rejects one)', () => {
    const v = variant(s.template);
    expect(v).toMatchObject({ InstanceType: 'ml.trn1.2xlarge', InitialInstanceCount: 1, VariantName: 'AllTraffic' });
    expect(v).not.toHaveProperty('VolumeSizeInGB');
    expect(only(s.template, 'AWS::SageMaker::EndpointConfig').Properties).not.toHaveProperty('KmsKeyId');
  });

  test('the timeouts are derived from the model size, within SageMaker\'s 60 to 3600 seconds', () => {
    const v = variant(s.template) as { ModelDataDownloadTimeoutInSeconds: number; ContainerStartupHealthCheckTimeoutInSeconds: number };
    // 300 s + 20 s/GiB x 41.9 GiB of bf16 checkpoint; 600 s + 30 s/GiB x 21.0 GiB of int8 weights.
    expect(v.ModelDataDownloadTimeoutInSeconds).toBe(1138);
    expect(v.ContainerStartupHealthCheckTimeoutInSeconds).toBe(1229);
  });

  test('one worker on the 2 NeuronCores, with tpDegree cores each', () => {
    expect(s.endpoint.workersPerInstance).toBe(1);
    expect(containerEnv(s.template)).toMatchObject({
      SAGEMAKER_MODEL_SERVER_WORKERS: '1',
      NEURON_RT_NUM_CORES: '2',
      NEURONX_TP_DEGREE: '2',
      NEURONX_N_POSITIONS: '1024',
      NEURONX_QUANT_DTYPE: 's8',
    });
  });

  test('at batch size 1 TorchServe runs as it always did: none of the toolkit\'s SAGEMAKER_TS_* batching variables', () => {
    const environment = containerEnv(s.template);
    expect(environment.NEURONX_BATCH_SIZE).toBe('1');
    expect(Object.keys(environment).filter(name => name.startsWith('SAGEMAKER_TS_'))).toEqual([]);
  });

  test('TorchServe gives a worker the whole startup health-check time to load the model, not 60 s', () => {
    // TorchServe 0.11.0 waits for a worker's model load with the response timeout: at 60 s a load of 20 minutes
    // would be killed and restarted for ever.
    expect(containerEnv(s.template).TS_DEFAULT_RESPONSE_TIMEOUT).toBe('1229');
    expect(variant(s.template).ContainerStartupHealthCheckTimeoutInSeconds).toBe(1229);
  });

  test('TorchServe calls the entry of exactly the code the model data placed, and a request that waited for a busy worker still ends within the invocation limit', () => {
    const hash = containerEnv(s.template).NEURONX_CODE_HASH;
    expect(hash).toMatch(/^[0-9a-f]{16}$/);
    // Without continuous batching the handler cannot see a request's wait in TorchServe's queue: the queue holds at
    // most what the workers run (one worker, batch 1: 1), and the limit (20 s) fits a wait for one whole generation,
    // then its own, each with 10 s for the prefill, the last token and the answer, in SageMaker's 60 s.
    expect(containerEnv(s.template)).toMatchObject({
      TS_DEFAULT_SERVICE_HANDLER: `neuronx_code_${hash}:handle`,
      NEURONX_GENERATION_TIME_LIMIT_SECONDS: '20',
      TS_JOB_QUEUE_SIZE: '1',
    });
    // The entry is placed as code/neuronx_code_<hash>.py, beside the code's folder code/<hash>/ that holds inference.py.
    const [code] = Object.values(s.template.findResources('Custom::NeuronxInferenceCode'));
    expect(code.Properties.Files.map((f: { Name: string }) => f.Name)).toEqual(expect.arrayContaining([`neuronx_code_${hash}.py`, `${hash}/inference.py`]));
    expect(2 * (Number(containerEnv(s.template).NEURONX_GENERATION_TIME_LIMIT_SECONDS) + 10)).toBeLessThanOrEqual(60);
  });

  test('/ping answers only once the model has loaded: the JVM loads the library\'s plugin from the placed code/<hash>/', () => {
    // TorchServe 0.11.0's own /ping answers 200 while a worker still loads (tools/model-server test_readiness_ping.py):
    // the plugin, placed in code/<hash>/ beside the handler, replaces it. SageMaker copies the prefix to /opt/ml/model.
    const hash = containerEnv(s.template).NEURONX_CODE_HASH;
    expect(containerEnv(s.template).JDK_JAVA_OPTIONS).toBe(`-javaagent:/opt/ml/model/code/${hash}/readiness-ping.jar`);
    const [code] = Object.values(s.template.findResources('Custom::NeuronxInferenceCode'));
    expect(code.Properties.Files.map((f: { Name: string }) => f.Name)).toContain(`${hash}/readiness-ping.jar`);
  });

  test('no SAGEMAKER_PROGRAM: only the toolkit\'s own handler service reads it, and TorchServe does not call that service', () => {
    expect(containerEnv(s.template)).not.toHaveProperty('SAGEMAKER_PROGRAM');
  });

  test('the model role reads only its prefix and pulls only the pytorch-inference-neuronx repository', () => {
    const { template, stack, endpoint, compile, bucket } = s;
    const statements = statementsOfRole(template, logicalId(stack, endpoint.role));
    const bucketArn = `\${${logicalId(stack, bucket)}.Arn}`;
    expect(statementsAllowing(statements, 's3:GetObject').flatMap(resourcesOf)).toEqual([`${bucketArn}/${compile.compiledArtifactS3Prefix}*`]);
    expect(statements.filter(st => [st.Action].flat().some(a => a.startsWith('s3:Put') || a.startsWith('s3:Delete')))).toEqual([]);
    expect(statementsAllowing(statements, 's3:ListBucket').map(st => st.Condition))
      .toEqual([{ StringLike: { 's3:prefix': [`${compile.compiledArtifactS3Prefix}*`] } }]);
    expect(statementsAllowing(statements, 'ecr:BatchGetImage').flatMap(resourcesOf))
      .toEqual(['arn:${AWS::Partition}:ecr:us-east-1:763104351884:repository/pytorch-inference-neuronx']);
    expect(JSON.stringify(template.toJSON())).not.toMatch(/FullAccess/);
  });

  test('the SageMaker model is created only after the compile has finished (it depends on the WaitCondition)', () => {
    const { template, stack, endpoint } = s;
    const waitIds = Object.keys(template.findResources('AWS::CloudFormation::WaitCondition'));
    expect(waitIds).toHaveLength(1);
    const model = template.findResources('AWS::SageMaker::Model')[logicalId(stack, endpoint.node.findChild('Model'))];
    expect(model.DependsOn).toEqual(expect.arrayContaining([...waitIds, logicalId(stack, endpoint.role.node.findChild('DefaultPolicy'))]));
  });

  test('after the WaitCondition, the code placement checks the completion marker; the model comes after that check', () => {
    const { template, stack, endpoint, compile } = s;
    const [waitId] = Object.keys(template.findResources('AWS::CloudFormation::WaitCondition'));
    const placements = Object.entries(template.findResources('Custom::NeuronxInferenceCode'));
    expect(placements).toHaveLength(1);
    const [placementId, placement] = placements[0];
    // The check: the marker of the prefix the model serves, after this wait (and again after every new one).
    expect(placement.Properties.MarkerKey).toBe(`${compile.compiledArtifactS3Prefix}${CONTRACT.layout.marker}`);
    expect(placement.Properties.CompileWait).toBe(waitId);
    expect(placement.DependsOn).toContain(waitId);
    const model = template.findResources('AWS::SageMaker::Model')[logicalId(stack, endpoint.node.findChild('Model'))];
    expect(model.DependsOn).toContain(placementId);
  });

  test('the endpoint uses the endpoint config', () => {
    const { template, stack, endpoint } = s;
    template.hasResourceProperties('AWS::SageMaker::Endpoint', {
      EndpointConfigName: { 'Fn::GetAtt': [logicalId(stack, endpoint.endpointConfig), 'EndpointConfigName'] },
    });
  });
});

describe('Endpoint serving the highPerformance compile (inf2.24xlarge, tp 4, bf16)', () => {
  let s: Synthesized;
  beforeAll(() => {
    s = synth(HIGH_PERFORMANCE_COMPILE);
  });

  test('3 workers of 4 NeuronCores on the 12 cores', () => {
    expect(s.endpoint.workersPerInstance).toBe(3);
    expect(containerEnv(s.template)).toMatchObject({
      SAGEMAKER_MODEL_SERVER_WORKERS: '3', NEURON_RT_NUM_CORES: '4', NEURONX_QUANT_DTYPE: '', TS_DEFAULT_RESPONSE_TIMEOUT: '1857',
    });
  });

  test('inf2 gets a volume sized from the model, and longer timeouts for bf16 weights', () => {
    // ceil(1.25 x 41.9 GiB) + 16 GiB; 600 s + 30 s/GiB x 41.9 GiB.
    expect(variant(s.template)).toMatchObject({
      InstanceType: 'ml.inf2.24xlarge',
      VolumeSizeInGB: 69,
      ModelDataDownloadTimeoutInSeconds: 1138,
      ContainerStartupHealthCheckTimeoutInSeconds: 1857,
    });
  });
});

describe('Endpoint options', () => {
  test('a smaller model gets shorter timeouts and a smaller volume', () => {
    const llama8b = Model.fromHuggingFace('meta-llama/Meta-Llama-3-8B', { revision: 'abc' });
    const { template } = synth({ props: { ...HIGH_PERFORMANCE_PROPS, model: llama8b } });
    // 16 GB = 14.9 GiB: 300 + 298 s, 600 + 447 s, ceil(18.6) + 16 GiB.
    expect(variant(template)).toMatchObject({
      ModelDataDownloadTimeoutInSeconds: 598, ContainerStartupHealthCheckTimeoutInSeconds: 1047, VolumeSizeInGB: 35,
    });
  });

  test('explicit timeouts, volume, count, key and extra environment are used', () => {
    const fixture = endpointFixture(HIGH_PERFORMANCE_COMPILE);
    const key = new kms.Key(fixture.stack, 'VolumeKey', { enableKeyRotation: true });
    const endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(fixture.stack, 'Tuned', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(fixture.compile),
      instanceCount: 2,
      volumeSize: Size.gibibytes(200),
      volumeEncryptionKey: key,
      modelDataDownloadTimeout: Duration.minutes(60),
      containerStartupHealthCheckTimeout: Duration.minutes(45),
      environment: { HF_HUB_OFFLINE: '1' },
    });
    const template = Template.fromStack(fixture.stack);
    const configs = template.findResources('AWS::SageMaker::EndpointConfig');
    const config = configs[logicalId(fixture.stack, endpoint.endpointConfig)].Properties;
    expect(config.KmsKeyId).toEqual({ 'Fn::GetAtt': [logicalId(fixture.stack, key), 'Arn'] });
    expect(config.ProductionVariants[0]).toMatchObject({
      InitialInstanceCount: 2, VolumeSizeInGB: 200, ModelDataDownloadTimeoutInSeconds: 3600, ContainerStartupHealthCheckTimeoutInSeconds: 2700,
    });
    const models = template.findResources('AWS::SageMaker::Model');
    const environment = models[logicalId(fixture.stack, endpoint.node.findChild('Model'))].Properties.PrimaryContainer.Environment;
    expect(environment.HF_HUB_OFFLINE).toBe('1');
    // The model load may take as long as the given startup health-check timeout.
    expect(environment.TS_DEFAULT_RESPONSE_TIMEOUT).toBe('2700');
  });

  test('grantInvoke allows sagemaker:InvokeEndpoint on this endpoint only', () => {
    const { stack, endpoint } = endpointFixture();
    const caller = new iam.Role(stack, 'Caller', { assumedBy: new iam.AccountRootPrincipal() });
    endpoint.grantInvoke(caller);
    const statements = statementsOfRole(Template.fromStack(stack), logicalId(stack, caller));
    expect(statements).toEqual([{
      Action: 'sagemaker:InvokeEndpoint',
      Effect: 'Allow',
      Resource: { Ref: logicalId(stack, endpoint.node.findChild('Endpoint')) },
    }]);
  });

  test('artifacts compiled earlier (fromBucket) serve on an explicit instance type', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B', { enforceSSL: true });
    const endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'compiled/calm3-lowcost', {
        model: calm3(), tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8,
      }),
      instanceType: NeuronxInstanceType.TRN1_2XLARGE,
    });
    const template = Template.fromStack(stack);
    expect(endpoint.instanceType).toBe(NeuronxInstanceType.TRN1_2XLARGE);
    template.hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: Match.objectLike({
        ModelDataSource: { S3DataSource: { S3DataType: 'S3Prefix', CompressionType: 'None', S3Uri: Match.anyValue() } },
      }),
    });
    expect(flatten(only(template, 'AWS::SageMaker::Model').Properties.PrimaryContainer.ModelDataSource.S3DataSource.S3Uri))
      .toBe(`s3://\${${logicalId(stack, bucket)}}/compiled/calm3-lowcost/`);
    expect(variant(template)).toMatchObject({ InstanceType: 'ml.trn1.2xlarge' });
    template.resourceCountIs('AWS::CloudFormation::WaitCondition', 0);
    // No compile, no wait: the marker is still checked before the model is made.
    const [[placementId, placement]] = Object.entries(template.findResources('Custom::NeuronxInferenceCode'));
    expect(placement.Properties.MarkerKey).toBe(`compiled/calm3-lowcost/${CONTRACT.layout.marker}`);
    expect(placement.Properties).not.toHaveProperty('CompileWait');
    expect(only(template, 'AWS::SageMaker::Model').DependsOn).toContain(placementId);
  });

  test('fromBucket without an instanceType fails: nothing says what the artifacts were compiled for', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B');
    expect(() => new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'p/', { model: calm3(), tpDegree: 2, quantDtype: QuantDtype.S8, nPositions: 1024 }),
    })).toThrow(/instanceType is required when the model data does not say what it was compiled for/);
  });
});

describe('Endpoint configurations that cannot work fail at synth, naming the prop, the value and a fix', () => {
  test('volumeSize on trn1', () => {
    expect(endpointError({ volumeSize: Size.gibibytes(100) }))
      .toMatch(/volumeSize is set but ml\.trn1\.2xlarge has local NVMe storage and SageMaker rejects a volume size for it: remove volumeSize/);
  });

  test('volumeEncryptionKey on trn1', () => {
    const fixture = endpointFixture();
    expect(() => new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(fixture.stack, 'Keyed', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(fixture.compile),
      volumeEncryptionKey: new kms.Key(fixture.stack, 'K'),
    })).toThrow(/volumeEncryptionKey is set but ml\.trn1\.2xlarge has local NVMe storage.*remove volumeEncryptionKey/);
  });

  test('a volume size outside 1 to 512 GB on inf2', () => {
    expect(endpointError({ volumeSize: Size.gibibytes(600) }, HIGH_PERFORMANCE_COMPILE))
      .toMatch(/volumeSize is 600 GB: SageMaker accepts 1 to 512 GB; choose a size in that range/);
  });

  test.each([
    ['modelDataDownloadTimeout', Duration.seconds(30), /modelDataDownloadTimeout is 30 seconds: SageMaker accepts 60 to 3600 seconds/],
    ['modelDataDownloadTimeout', Duration.hours(2), /modelDataDownloadTimeout is 2 hours: SageMaker accepts 60 to 3600 seconds/],
    ['containerStartupHealthCheckTimeout', Duration.seconds(59), /containerStartupHealthCheckTimeout is 59 seconds: SageMaker accepts 60 to 3600 seconds/],
    ['containerStartupHealthCheckTimeout', Duration.seconds(3601), /containerStartupHealthCheckTimeout is .*: SageMaker accepts 60 to 3600 seconds/],
  ])('%s of %s', (prop, value, message) => {
    expect(endpointError({ [prop]: value })).toMatch(message);
  });

  test.each([0, 1.5])('instanceCount %s', (count) => {
    expect(endpointError({ instanceCount: count })).toMatch(new RegExp(`instanceCount is ${count}: it must be a positive whole number`));
  });

  test('a serving family different from the one compiled for', () => {
    const message = endpointError({ instanceType: NeuronxInstanceType.INF2_8XLARGE });
    expect(message).toMatch(/instanceType is ml\.inf2\.8xlarge but the model data was compiled for trn1: Neuron artifacts load only on the family they were compiled for; use a trn1 instance type or compile for inf2/);
  });

  test.each([
    ['my-setting', 'my_setting'],
    ['1ST_SETTING', '_1ST_SETTING'],
    ['MY SETTING', 'MY_SETTING'],
  ])('an environment name SageMaker rejects: %s', (name, suggestion) => {
    expect(endpointError({ environment: { [name]: 'on' } })).toContain(
      `environment name '${name}' is not one SageMaker accepts: use letters, digits and '_', not starting with a digit, e.g. '${suggestion}'.`);
  });

  test('an environment value over 1024 bytes (counted in bytes, not characters)', () => {
    // 342 three-byte characters: 342 characters, 1026 bytes.
    expect(endpointError({ environment: { GREETING: 'あ'.repeat(342) } }))
      .toContain('environment GREETING is 1026 bytes: SageMaker accepts at most 1024 bytes per value');
  });

  test('an environment over 32 KiB in all, counting the library\'s own variables', () => {
    // Names and values of 32700 bytes in all, each value within the per-value limit: the caller's map alone fits,
    // the library's variables take it over 32768 bytes.
    const environment: Record<string, string> = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`S${String(i).padStart(2, '0')}`, 'x'.repeat(1000)]));
    environment.S32 = 'x'.repeat(32700 - 32 * 1003 - 3);
    const callerBytes = Object.entries(environment).reduce((sum, [k, v]) => sum + k.length + v.length, 0);
    expect(callerBytes).toBe(32700);
    expect(endpointError({ environment })).toMatch(/environment is \d+ bytes with the library's own variables: SageMaker accepts at most 32768 bytes/);
  });

  test('generationTimeLimit reaches the handler\'s variable in seconds; without it, 50 with continuous batching and 20 without', () => {
    expect(containerEnv(synth(CONTINUOUS_COMPILE).template).NEURONX_GENERATION_TIME_LIMIT_SECONDS).toBe('50');
    expect(containerEnv(synth().template).NEURONX_GENERATION_TIME_LIMIT_SECONDS).toBe('20');
    const { template, endpoint } = synth(CONTINUOUS_COMPILE, { generationTimeLimit: Duration.seconds(25) });
    expect(containerEnv(template).NEURONX_GENERATION_TIME_LIMIT_SECONDS).toBe('25');
    expect(endpoint.generationTimeLimit.toSeconds()).toBe(25);
    expect(containerEnv(synth(CONTINUOUS_COMPILE, { generationTimeLimit: Duration.millis(1500) }).template).NEURONX_GENERATION_TIME_LIMIT_SECONDS).toBe('1.5');
    expect(containerEnv(synth(CONTINUOUS_COMPILE, { generationTimeLimit: Duration.seconds(50) }).template).NEURONX_GENERATION_TIME_LIMIT_SECONDS).toBe('50');
    expect(containerEnv(synth(CONTINUOUS_COMPILE, { generationTimeLimit: Duration.seconds(1) }).template).NEURONX_GENERATION_TIME_LIMIT_SECONDS).toBe('1');
    expect(containerEnv(synth({}, { generationTimeLimit: Duration.seconds(20) }).template).NEURONX_GENERATION_TIME_LIMIT_SECONDS).toBe('20');
  });

  test('without continuous batching, a limit that would not fit a wait for a whole batch is refused, naming the way to 50 s', () => {
    expect(endpointError({ generationTimeLimit: Duration.seconds(25) })).toContain(
      'generationTimeLimit is 25 seconds: use 1 second to 20 seconds. Without continuous batching a request may wait in TorchServe\'s queue for a whole '
      + 'batch before its own generation, and both must fit SageMaker\'s 1 minute with 10 seconds each for the prefill, the last token and the answer '
      + '(model data compiled with continuousBatching allows up to 50 seconds); below 1 second not even one token of this model data (tpDegree 2, batchSize 1) fits.');
  });

  test('valid names and values, also tokens, reach the container as given', () => {
    const { template, stack } = synth({}, { environment: { MY_SETTING: 'on', _PRIVATE: '', REGION: Stack.of(new Stack()).region } });
    const env = containerEnv(template);
    expect(env.MY_SETTING).toBe('on');
    expect(env._PRIVATE).toBe('');
    expect(stack.resolve(env.REGION)).toEqual({ Ref: 'AWS::Region' });
  });

  // Each message says what the variable is and where the library takes it from (issue 23: the generation time
  // limit was called a compile option).
  test.each([
    ['NEURON_RT_NUM_CORES', 'the NeuronCores each worker takes, which the library sets from the model data\'s tpDegree (compileOptions.tpDegree): remove it.'],
    ['SAGEMAKER_MODEL_SERVER_WORKERS', 'the model server\'s workers per instance, which the library sets from instanceType and the model data\'s tpDegree (one worker per tpDegree NeuronCores): remove it.'],
    ['NEURONX_TP_DEGREE', 'the tensor-parallel degree the model data was compiled with, which the library sets from the model data\'s tpDegree (compileOptions.tpDegree): remove it.'],
    ['TS_DEFAULT_RESPONSE_TIMEOUT', 'TorchServe\'s response timeout, which also bounds the model load, which the library sets from the startup health-check timeout: remove it and set containerStartupHealthCheckTimeout instead.'],
    ['TS_DEFAULT_SERVICE_HANDLER', 'the handler TorchServe calls for every batch (the inference code\'s handle), which the library sets itself: remove it.'],
    ['NEURONX_GENERATION_TIME_LIMIT_SECONDS', 'the seconds the handler generates before it answers with the text so far, which the library sets from the generation time limit: remove it and set generationTimeLimit instead.'],
    ['JDK_JAVA_OPTIONS', 'the model server\'s JVM options, which load the readiness check of /ping, which the library sets itself: remove it.'],
  ])('environment overriding %s', (name, message) => {
    expect(endpointError({ environment: { [name]: '1' } })).toContain(`environment sets ${name}, ${message}`);
  });

  test('generationTimeLimit from a token cannot be checked: refused, naming the prop', () => {
    const fixture = () => endpointFixture({}, { generationTimeLimit: Duration.seconds(Lazy.number({ produce: () => 25 })) });
    expect(() => fixture()).toThrow(/generationTimeLimit is a token: the handler's limit must be known at synth/);
  });

  test('the static limit in the contract fits twice in the invocation limit, each time with the allowance', () => {
    // A wait behind one whole batch, then the request's own generation (contract endpoint.batching.staticAdmission).
    const allowance = INVOCATION_LIMIT.toSeconds() - MAX_GENERATION_TIME_LIMIT.toSeconds();
    expect(2 * (MAX_STATIC_GENERATION_TIME_LIMIT.toSeconds() + allowance)).toBeLessThanOrEqual(INVOCATION_LIMIT.toSeconds());
  });

  test('every variable of the contract has a message of its own', () => {
    expect(Object.keys(RESERVED_ENVIRONMENT).sort()).toEqual(Object.keys(CONTRACT.endpoint.environment).sort());
  });

  test.each([
    [Duration.seconds(55), '55 seconds'],
    [Duration.seconds(60), '1 minute'],
    [Duration.seconds(0), '0 seconds'],
    [Duration.millis(500), '500 millis'],
  ])('generationTimeLimit %s', (limit, shown) => {
    expect(endpointError({ generationTimeLimit: limit }, CONTINUOUS_COMPILE)).toContain(
      `generationTimeLimit is ${shown}: use 1 second to 50 seconds. SageMaker ends an invocation after 1 minute, and the prompt's prefill, `
      + 'the last token and the answer need the last 10 seconds; below 1 second not even one token of this model data (tpDegree 2, batchSize 6) fits.');
  });

  test('serving on an instance where the compiled tpDegree does not fit', () => {
    // Compiled for tp 4 on inf2, served on inf2.8xlarge with 2 cores.
    expect(endpointError({ instanceType: NeuronxInstanceType.INF2_8XLARGE }, HIGH_PERFORMANCE_COMPILE))
      .toMatch(/modelData\.tpDegree is 4 but ml\.inf2\.8xlarge has 2 NeuronCores/);
  });

  test('the error names the endpoint and collects every problem', () => {
    const message = endpointError({ instanceCount: 0, volumeSize: Size.gibibytes(10), environment: { NEURON_RT_NUM_CORES: '8' } });
    expect(message).toMatch(/^TransformersNeuronxSageMakerRealtimeInferenceEndpoint 'TestStack\/Endpoint' cannot work:\n/);
    expect(message.split('\n- ')).toHaveLength(4);
  });
});

describe('Endpoint regions', () => {
  test('a region without SageMaker trn1 fails at synth, naming the region, the instance type and the regions that have it', () => {
    // Tokyo serves the image and has inf2 (the compile passes), but not trn1 (the lowCost serving instance).
    const message = endpointError({ instanceCount: 0 }, { env: { account: '123456789012', region: 'ap-northeast-1' } });
    expect(message).toMatch(/^TransformersNeuronxSageMakerRealtimeInferenceEndpoint 'TestStack\/Endpoint' cannot work:\n/);
    expect(message).toContain('- Region \'ap-northeast-1\' has no SageMaker ml.trn1.2xlarge instances (instanceType): '
      + 'deploy the stack to one of us-east-1, us-east-2, us-west-2, or choose another instance type.');
    expect(message).toContain('- instanceCount is 0'); // reported with the other problems
  });

  test('the same endpoint on inf2 in that region synthesizes', () => {
    const { template } = synth({ env: { account: '123456789012', region: 'ap-northeast-1' }, props: HIGH_PERFORMANCE_PROPS });
    expect(variant(template)).toMatchObject({ InstanceType: 'ml.inf2.24xlarge' });
    expect(template.toJSON().Rules.NeuronxRegions).toBeUndefined();
  });

  test('an environment-agnostic stack with a compile and two endpoints gets one rule, with the serving instance in it', () => {
    const fixture = endpointFixture({ env: null });
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(fixture.stack, 'Second', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(fixture.compile),
    });
    const rules = Template.fromStack(fixture.stack).toJSON().Rules;
    expect(Object.keys(rules).filter(id => id !== 'CheckBootstrapVersion')).toEqual(['NeuronxRegions']);
    const assertions: Array<{ Assert: { 'Fn::Contains': [string[], unknown] }; AssertDescription: string }> = rules.NeuronxRegions.Assertions;
    const serving = assertions.filter(a => a.AssertDescription.includes('SageMaker ml.trn1.2xlarge'));
    expect(serving).toHaveLength(1);
    expect(serving[0].Assert).toEqual({ 'Fn::Contains': [['us-east-1', 'us-east-2', 'us-west-2'], { Ref: 'AWS::Region' }] });
    expect(serving[0].AssertDescription).toMatch(/^The stack's region has no SageMaker ml\.trn1\.2xlarge instances \(instanceType\): deploy the stack to one of us-east-1, us-east-2, us-west-2, /);
    expect(assertions.filter(a => a.AssertDescription.includes('Neuron image'))).toHaveLength(1);
  });
});

test('the README example composes Model, NeuronxCompile, the model data and the endpoint, and synthesizes', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf-8');
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(example).toBeDefined();
  const source = example!.replace(/from 'aws-cdk-neuronx-patterns'/g, 'from \'../src\'');
  const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const run = new Function('require', 'exports', `${js}\nreturn { stack, endpoint };`);
  const { stack, endpoint } = run(require, {}) as { stack: Stack; endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint };
  expect(endpoint).toBeInstanceOf(TransformersNeuronxSageMakerRealtimeInferenceEndpoint);
  const template = Template.fromStack(stack);
  template.resourceCountIs('AWS::SageMaker::Endpoint', 1);
  template.resourceCountIs('AWS::Batch::JobDefinition', 1);
  // The example declares what the compile needs: no warning for the reader to copy along.
  expect(Annotations.fromStack(stack).findWarning('*', Match.anyValue())).toEqual([]);
});

describe('Endpoint serving a batched compile', () => {
  test.each([
    ['lowCost, batch 5, one worker', { compileOptions: { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, batchSize: 5 } }, '5', '1', '1229', '5'],
    ['highPerformance, batch 2, three workers', { ...HIGH_PERFORMANCE_PROPS, compileOptions: { ...HIGH_PERFORMANCE_PROPS.compileOptions, batchSize: 2 } }, '2', '3', '1857', '6'],
  ])('%s: TorchServe batches through the toolkit, keeping every worker and the long load timeout, and lets one batch per worker wait', (_what, props, batch, workers, timeout, queue) => {
    const { template } = synth({ props });
    const environment = containerEnv(template);
    expect(environment).toMatchObject({
      NEURONX_BATCH_SIZE: batch,
      SAGEMAKER_MODEL_SERVER_WORKERS: workers,
      // The toolkit (2.0.25, as 2.0.21) writes a per-model config as soon as one SAGEMAKER_TS_* is set, whose workers
      // default to 1 and response timeout to 60 s: all five are set.
      SAGEMAKER_TS_BATCH_SIZE: batch,
      SAGEMAKER_TS_MAX_BATCH_DELAY: '20',
      SAGEMAKER_TS_MIN_WORKERS: workers,
      SAGEMAKER_TS_MAX_WORKERS: workers,
      SAGEMAKER_TS_RESPONSE_TIMEOUT: timeout,
      TS_DEFAULT_RESPONSE_TIMEOUT: timeout,
      // Past workers x batch size waiting, TorchServe refuses at once (503): a request waits for one batch at most.
      TS_JOB_QUEUE_SIZE: queue,
      NEURONX_GENERATION_TIME_LIMIT_SECONDS: '20',
    });
    expect(variant(template).ContainerStartupHealthCheckTimeoutInSeconds).toBe(Number(timeout));
  });

  test('the caller cannot set the toolkit\'s batching variables itself', () => {
    expect(endpointError({ environment: { SAGEMAKER_TS_BATCH_SIZE: '8' } }))
      .toMatch(/environment sets SAGEMAKER_TS_BATCH_SIZE, TorchServe's batch size, which the library sets from the model data's batchSize \(compileOptions\.batchSize\): remove it\./);
  });

  test('continuous batching: no TorchServe batching variables (the placed model config holds them), and the placement may write only code/* and MAR-INF/MANIFEST.json', () => {
    const compileOptions = { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, batchSize: 6, continuousBatching: true };
    const { template, compile, stack } = synth({ props: { compileOptions } });
    const environment = containerEnv(template);
    expect(environment).toMatchObject({ NEURONX_BATCH_SIZE: '6', SAGEMAKER_MODEL_SERVER_WORKERS: '1' });
    expect(Object.keys(environment).filter(name => name.startsWith('SAGEMAKER_TS_'))).toEqual([]);
    // The handler sees every waiting request and refuses what cannot start in time: TorchServe's queue is left alone.
    expect(environment.TS_JOB_QUEUE_SIZE).toBeUndefined();
    const code = only(template, 'Custom::NeuronxInferenceCode').Properties;
    // The model config is in the code's own folder; the manifest, at the one path TorchServe reads, names it.
    const hash = environment.NEURONX_CODE_HASH;
    expect(code.Objects.map((o: { Key: string }) => o.Key)).toEqual([
      `${compile.compiledArtifactS3Prefix}code/${hash}/model-config.yaml`, `${compile.compiledArtifactS3Prefix}MAR-INF/MANIFEST.json`,
    ]);
    expect(code.Objects[0].Body).toContain('batchSize: 38\n');
    expect(JSON.parse(code.Objects[1].Body).model.configFile).toBe(`code/${hash}/model-config.yaml`);
    const statements = statementsOfRole(template, logicalId(stack, compile.node.findChild('LifecycleFunctionRole')));
    expect(statementsAllowing(statements, 's3:PutObject').flatMap(resourcesOf)).toEqual([
      `\${${logicalId(stack, compile.bucket)}.Arn}/${compile.compiledArtifactS3Prefix}code/*`,
      `\${${logicalId(stack, compile.bucket)}.Arn}/${compile.compiledArtifactS3Prefix}MAR-INF/MANIFEST.json`,
    ]);
  });

  test('artifacts from a bucket compiled for continuous batching are refused on an instance where they would run several workers', () => {
    const stack = new Stack(new App(), 'S', { env: { account: '111111111111', region: 'us-east-1' } });
    const bucket = s3.Bucket.fromBucketName(stack, 'B', 'artifacts');
    const data = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'calm3/', {
      model: calm3(), tpDegree: 4, batchSize: 2, continuousBatching: true, compiledFor: NeuronxInstanceType.INF2_24XLARGE,
    });
    expect(() => new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'E', {
      modelData: data, instanceType: NeuronxInstanceType.INF2_24XLARGE,
    })).toThrow(/modelData\.continuousBatching is true but tpDegree 4 on ml\.inf2\.24xlarge makes 3 workers: .*set continuousBatching to false/);
  });

  test('artifacts from a bucket declare their batch size, which the endpoint checks against the instance', () => {
    const app = new App();
    const stack = new Stack(app, 'S', { env: { account: '111111111111', region: 'us-east-1' } });
    const bucket = s3.Bucket.fromBucketName(stack, 'B', 'artifacts');
    const data = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'calm3/', {
      model: calm3(), tpDegree: 4, batchSize: 3, compiledFor: NeuronxInstanceType.INF2_24XLARGE,
    });
    expect(() => new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'E', {
      modelData: data, instanceType: NeuronxInstanceType.INF2_24XLARGE,
    })).toThrow(/modelData\.batchSize is 3: .* use batchSize 2 or less/);
  });
});
