/**
 * Every row of the table "What the library checks at synth" (synth-checks.json) is a configuration the library
 * really rejects, with the message it really gives; and docs/synth-checks.md shows exactly that table, as does any
 * other page (README.md, docs/*.md) that has the table's markers.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, Size, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  Model,
  NeuronxCompile,
  NeuronxCompileProps,
  NeuronxInstanceType,
  QuantDtype,
  TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
  TransformersNeuronxSageMakerRealtimeInferenceEndpointProps,
} from 'aws-cdk-neuronx-patterns';
import { calm3chat22b } from '../src';
import { END_MARKER, loadChecks, renderTable, replaceSection, START_MARKER, TABLE_DOCUMENT } from '../tools/template-checks/synth-checks-table';

const ROOT = path.join(__dirname, '..');
/** README.md and every page under docs/, as paths from the root. */
const DOCUMENTS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter(f => f.endsWith('.md')).map(f => `docs/${f}`)];
const checks = loadChecks();

// calm3-22b-chat's facts (src/calm3chat22b/model-facts.ts): 22.5 B parameters, 48 layers, 48 heads.
const calm3 = (): Model => Model.fromHuggingFace('cyberagent/calm3-22b-chat', {
  revision: '055922aa0f0fb1fbfbc97a2e31134532485ee99b',
  parameterCount: 22.5e9,
  architecture: { modelType: 'llama', numLayers: 48, hiddenSize: 6144, numAttentionHeads: 48, numKeyValueHeads: 48, maxPositionEmbeddings: 16384 },
});
const LOW_COST: Partial<NeuronxCompileProps> = {
  servingInstanceType: NeuronxInstanceType.TRN1_2XLARGE,
  compileInstanceType: NeuronxInstanceType.INF2_8XLARGE,
  compileOptions: { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8 },
};
const HIGH_PERFORMANCE: Partial<NeuronxCompileProps> = {
  servingInstanceType: NeuronxInstanceType.INF2_24XLARGE,
  compileInstanceType: NeuronxInstanceType.INF2_24XLARGE,
  compileOptions: { tpDegree: 4 },
};

/** The highPerformance preset as the calm3 construct compiles it: one worker over all 12 NeuronCores, 8 slots. */
const HIGH_PERFORMANCE_CONTINUOUS: Partial<NeuronxCompileProps> = {
  ...HIGH_PERFORMANCE,
  compileOptions: { tpDegree: 12, batchSize: 8, continuousBatching: true },
};

function stack(region = 'us-east-1'): Stack {
  return new Stack(new App(), 'Test', { env: { region } });
}

function compile(props: Partial<NeuronxCompileProps>, scope: Stack = stack()): NeuronxCompile {
  return new NeuronxCompile(scope, 'Compile', {
    vpc: new ec2.Vpc(scope, 'Vpc'),
    bucket: new s3.Bucket(scope, 'Bucket'),
    model: calm3(),
    ...props,
  });
}

function endpoint(props: Partial<TransformersNeuronxSageMakerRealtimeInferenceEndpointProps>, compileProps = HIGH_PERFORMANCE): void {
  const c = compile(compileProps);
  new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(Stack.of(c), 'Endpoint', {
    modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(c),
    ...props,
  });
}

/**
 * A calm3chat22b.SageMakerRealtimeInference (highPerformance) in `scope`, with a default VPC and the stack's one
 * bucket unless `props` says otherwise. Returns the stack.
 */
function calm3Construct(
  props: Partial<Omit<calm3chat22b.SageMakerRealtimeInferenceProps, 'compileVpc'>> & { compileVpc?: (s: Stack) => ec2.IVpc },
  scope: Stack = stack(), id = 'Calm3',
): Stack {
  const { compileVpc, ...rest } = props;
  new calm3chat22b.SageMakerRealtimeInference(scope, id, {
    bucket: (scope.node.tryFindChild('Bucket') as s3.IBucket | undefined) ?? new s3.Bucket(scope, 'Bucket'),
    compileVpc: (scope.node.tryFindChild('Vpc') as ec2.IVpc | undefined) ?? (compileVpc ?? (s => new ec2.Vpc(s, 'Vpc')))(scope),
    instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.highPerformance,
    ...rest,
  });
  return scope;
}

/** One builder per row of synth-checks.json: each must throw. */
const BUILDERS: Record<string, () => unknown> = {
  'model-id': () => Model.fromHuggingFace('calm3-22b-chat'),
  'model-parameter-count-unknown': () => Model.fromHuggingFace('example-org/my-model'),
  'model-parameter-count-invalid': () => Model.fromHuggingFace('example-org/model-7b', { parameterCount: 0 }),
  'model-type': () => Model.fromHuggingFace('mistralai/Mistral-7B-v0.1', {
    architecture: { modelType: 'mistral', numLayers: 32, hiddenSize: 4096, numAttentionHeads: 32, numKeyValueHeads: 8 },
  }),
  'instance-type-unknown': () => NeuronxInstanceType.of('ml.g5.xlarge'),
  'region-unknown': () => compile(HIGH_PERFORMANCE, stack('us-gov-east-1')),
  'region-compile-instance': () => compile(HIGH_PERFORMANCE, stack('ap-south-2')),
  'region-serving-instance': () => {
    const c = compile(LOW_COST, stack('ap-northeast-1'));
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(Stack.of(c), 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(c),
    });
  },
  'tp-degree-not-positive': () => compile({ ...HIGH_PERFORMANCE, compileOptions: { tpDegree: 0 } }),
  'n-positions-not-positive': () => compile({ ...HIGH_PERFORMANCE, compileOptions: { tpDegree: 4, nPositions: 1.5 } }),
  'tp-degree-exceeds-cores': () => compile({ ...LOW_COST, compileOptions: { ...LOW_COST.compileOptions, tpDegree: 4 } }),
  'tp-degree-unsupported': () => compile({
    servingInstanceType: NeuronxInstanceType.TRN1_32XLARGE, compileInstanceType: NeuronxInstanceType.TRN1_32XLARGE, compileOptions: { tpDegree: 4 },
  }),
  'tp-degree-heads': () => compile({ ...HIGH_PERFORMANCE, compileOptions: { tpDegree: 10 } }),
  'n-positions-exceed-model': () => compile({
    servingInstanceType: NeuronxInstanceType.INF2_48XLARGE,
    compileInstanceType: NeuronxInstanceType.INF2_48XLARGE,
    compileOptions: { tpDegree: 24, nPositions: 32768 },
  }),
  'device-memory': () => compile({ ...LOW_COST, compileOptions: { tpDegree: 2, nPositions: 1024 } }),
  'continuous-batching-workers': () => compile({ ...HIGH_PERFORMANCE, compileOptions: { tpDegree: 4, batchSize: 2, continuousBatching: true } }),
  'continuous-batching-slots': () => compile({ ...HIGH_PERFORMANCE, compileOptions: { tpDegree: 12, batchSize: 1, continuousBatching: true } }),
  'serving-host-memory': () => compile({
    model: Model.fromHuggingFace('example-org/model-7.5b', { revision: 'abc123' }),
    servingInstanceType: NeuronxInstanceType.INF2_XLARGE,
    compileInstanceType: NeuronxInstanceType.INF2_8XLARGE,
    compileOptions: { tpDegree: 1 },
  }),
  'compile-host-memory': () => compile({ ...HIGH_PERFORMANCE, compileInstanceType: NeuronxInstanceType.INF2_XLARGE }),
  'compile-cores': () => compile({ ...HIGH_PERFORMANCE, compileInstanceType: NeuronxInstanceType.INF2_8XLARGE }),
  'start-timeout': () => compile({ ...HIGH_PERFORMANCE, startTimeout: Duration.minutes(5) }),
  'timeout-exceeds-wait': () => compile({ ...HIGH_PERFORMANCE, timeout: Duration.hours(12) }),
  'timeout-too-short': () => compile({ ...HIGH_PERFORMANCE, timeout: Duration.seconds(30) }),
  'vpc-subnets-public': () => compile({ ...HIGH_PERFORMANCE, vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC } }),
  'calm3-compile-vpc-no-private': () => calm3Construct({
    compileVpc: s => new ec2.Vpc(s, 'Vpc', { natGateways: 0, subnetConfiguration: [{ name: 'Public', subnetType: ec2.SubnetType.PUBLIC }] }),
  }),
  'calm3-compile-subnets-none': () => calm3Construct({ compileSubnets: { subnetGroupName: 'Compile' } }),
  'calm3-compile-subnets-public': () => calm3Construct({ compileSubnets: { subnetType: ec2.SubnetType.PUBLIC } }),
  'calm3-same-compile-other-settings': () => {
    const s = calm3Construct({});
    calm3Construct({ compileSpot: true }, s, 'Second');
  },
  'endpoint-instance-type-required': () => {
    const s = stack();
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(s, 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromBucket(new s3.Bucket(s, 'Bucket'), 'compiled/', { model: calm3(), tpDegree: 4 }),
    });
  },
  'endpoint-family': () => endpoint({ instanceType: NeuronxInstanceType.INF2_8XLARGE }, LOW_COST),
  'endpoint-instance-count': () => endpoint({ instanceCount: 0 }),
  'endpoint-download-timeout': () => endpoint({ modelDataDownloadTimeout: Duration.hours(2) }),
  'endpoint-startup-timeout': () => endpoint({ containerStartupHealthCheckTimeout: Duration.seconds(30) }),
  'endpoint-generation-time-limit': () => endpoint({ generationTimeLimit: Duration.seconds(55) }, HIGH_PERFORMANCE_CONTINUOUS),
  'endpoint-generation-time-limit-static': () => endpoint({ generationTimeLimit: Duration.seconds(25) }),
  'endpoint-volume-size-trn1': () => endpoint({ volumeSize: Size.gibibytes(100) }, LOW_COST),
  'endpoint-volume-key-trn1': () => {
    const c = compile(LOW_COST);
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(Stack.of(c), 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(c),
      volumeEncryptionKey: new kms.Key(Stack.of(c), 'Key'),
    });
  },
  'endpoint-volume-size-range': () => endpoint({ volumeSize: Size.gibibytes(1024) }),
  'endpoint-reserved-environment': () => endpoint({ environment: { SAGEMAKER_MODEL_SERVER_WORKERS: '2' } }),
  'endpoint-environment-name': () => endpoint({ environment: { 'my-setting': 'on' } }),
  'endpoint-environment-value-size': () => endpoint({ environment: { MY_SETTING: 'x'.repeat(2000) } }),
  'endpoint-environment-size': () => endpoint({
    environment: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`SETTING_${i}`, 'x'.repeat(1000)])),
  }),
  'inference-code-handler': () => {
    const c = compile(HIGH_PERFORMANCE);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'code-'));
    fs.writeFileSync(path.join(dir, 'handler.py'), '');
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(Stack.of(c), 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(c, dir),
    });
  },
  'inference-code-entry': () => {
    const c = compile(HIGH_PERFORMANCE);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'code-'));
    fs.writeFileSync(path.join(dir, 'inference.py'), 'def model_fn(model_dir):\n    pass\n');
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(Stack.of(c), 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(c, dir),
    });
  },

  'calm3-strategy': () => {
    const s = stack();
    new calm3chat22b.SageMakerRealtimeInference(s, 'Calm3', {
      bucket: new s3.Bucket(s, 'Bucket'),
      compileVpc: new ec2.Vpc(s, 'Vpc'),
      instanceTypeStrategy: new calm3chat22b.InstanceTypeStrategy(
        NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_24XLARGE, { tpDegree: 10 },
      ),
    });
  },
};

function thrown(build: () => unknown): string {
  try {
    build();
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  throw new Error('expected the configuration to be rejected, but it was accepted');
}

test('every row has a builder and every builder a row', () => {
  expect(checks.map(c => c.id).sort()).toEqual(Object.keys(BUILDERS).sort());
  expect(new Set(checks.map(c => c.id)).size).toBe(checks.length);
});

/** `text` contains `excerpt`, where '…' in the excerpt stands for any text. */
function containsExcerpt(text: string, excerpt: string): boolean {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(excerpt.split('…').map(escape).join('[\\s\\S]*')).test(text);
}

test.each(checks.map(c => [c.id, c] as const))('%s is rejected with the message the table shows', (id, check) => {
  const message = thrown(BUILDERS[id]);
  if (!containsExcerpt(message, check.message)) {
    // Shows the real message, to copy into synth-checks.json.
    expect(message).toEqual(check.message);
  }
  // The message names what to change: the prop's last segment ('compileOptions.tpDegree' -> 'tpDegree').
  const squash = (s: string) => s.replace(/\s+/g, '').toLowerCase();
  expect(squash(message)).toContain(squash(check.prop.replace(/^.*\./, '')));
});

test(`${TABLE_DOCUMENT} shows the table between ${START_MARKER} and ${END_MARKER}, and no page shows an older one`, () => {
  const withTable = DOCUMENTS.filter(file => fs.readFileSync(path.join(ROOT, file), 'utf-8').includes(START_MARKER));
  expect(withTable).toContain(TABLE_DOCUMENT);
  for (const file of withTable) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf-8');
    expect({ file, text: replaceSection(text, renderTable(checks)) }).toEqual({ file, text });
  }
});
