// Synthesizes pairs of apps that differ as real updates do (one prop of the compile, the endpoint or the calm3
// construct at a time, the preset, the revision) and writes each pair's templates for check_updates.py:
//   npx ts-node --prefer-ts-exts tools/update-checks/synth-pairs.ts <out dir>
// writes <out dir>/<pair>/before.template.json and after.template.json. The patterns package is used as an app
// uses it (its compiled lib/), as is the calm3 construct (../../src, which imports that lib).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, Size, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  Model, NeuronxCompile, NeuronxCompileProps, NeuronxInstanceType, NeuronxRuntime, OptLevel, QuantDtype,
  TransformersNeuronxSageMakerInferenceModelData, TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
  TransformersNeuronxSageMakerRealtimeInferenceEndpointProps,
} from 'aws-cdk-neuronx-patterns';
import { calm3chat22b } from '../../src';

const ENV = { account: '111111111111', region: 'us-east-1' };
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const OTHER_REVISION = 'fedcba9876543210fedcba9876543210fedcba98';

/** calm3-22b-chat with its size and shape given (config.json), so that synth needs no lookup. */
function calm3(revision = REVISION): Model {
  return Model.fromHuggingFace('cyberagent/calm3-22b-chat', {
    revision,
    parameterCount: 22.5e9,
    architecture: { numLayers: 48, hiddenSize: 6144, numAttentionHeads: 48, numKeyValueHeads: 48, maxPositionEmbeddings: 16384 },
  });
}

/** A later runtime release (the constructor is private: the library ships one runtime today). */
function otherRuntime(): NeuronxRuntime {
  return Reflect.construct(NeuronxRuntime, ['pytorch-inference-neuronx', '2.5.1-neuronx-py310-sdk2.22.0-ubuntu22.04', '2.22.0']);
}

interface Network {
  readonly vpc: ec2.Vpc;
  readonly bucket: s3.Bucket;
}

type EndpointProps = Partial<TransformersNeuronxSageMakerRealtimeInferenceEndpointProps>;

/** What one side of a patterns pair changes: compile props and endpoint props, made in the app's stack. */
interface PatternsChange {
  readonly compile?: (stack: Stack, net: Network) => Partial<NeuronxCompileProps>;
  readonly endpoint?: (stack: Stack) => EndpointProps;
  /** What the app does with the endpoint once made (alarms, autoscaling). */
  readonly operate?: (endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint) => void;
  /** A code directory of one's own instead of the library's handler (see codeDir). */
  readonly code?: string;
}

// Code directories of one's own, made once per run and removed at its end.
const CODE_ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'update-pairs-code-'));

/** A code directory whose handler says `version`: two versions are two codes (a new hash, a new code prefix). */
function codeDir(version: string): string {
  const dir = path.join(CODE_ROOT, version);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'inference.py'), `VERSION = '${version}'\n\n\ndef handle(data, context):\n    return [VERSION for _ in data]\n`);
  return dir;
}

/** The endpoint scaled as the README's example scales it. */
function autoscale(maxCapacity = 3, minCapacity = 1): (endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint) => void {
  return endpoint => endpoint.autoScaleInstanceCount({ minCapacity, maxCapacity }).scaleOnConcurrentRequests('Concurrency');
}

function stackWithNetwork(): { app: App; stack: Stack; net: Network } {
  const app = new App();
  const stack = new Stack(app, 'UpdateCheck', { env: ENV });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const bucket = new s3.Bucket(stack, 'Artifacts');
  return { app, stack, net: { vpc, bucket } };
}

/** A compile of calm3 as highPerformance compiles it (inf2.24xlarge, tp 4) and the endpoint that serves it. */
function patternsApp(change: PatternsChange): Stack {
  const { stack, net } = stackWithNetwork();
  const compile = new NeuronxCompile(stack, 'Compile', {
    vpc: net.vpc,
    bucket: net.bucket,
    model: calm3(),
    compileInstanceType: NeuronxInstanceType.INF2_24XLARGE,
    servingInstanceType: NeuronxInstanceType.INF2_24XLARGE,
    compileOptions: { tpDegree: 4, optLevel: OptLevel.BEST_EXECUTION },
    ...change.compile?.(stack, net),
  });
  const endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
    modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile, change.code),
    ...change.endpoint?.(stack),
  });
  change.operate?.(endpoint);
  return stack;
}

/** The calm3 construct as the example app builds it (autoscaled as the README's example, if asked). */
function calm3App(props: Partial<calm3chat22b.SageMakerRealtimeInferenceProps> = {}, autoscaled = false): Stack {
  const { stack, net } = stackWithNetwork();
  const calm3Chat = new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3Chat', {
    bucket: net.bucket,
    compileVpc: net.vpc,
    instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost,
    ...props,
  });
  if (autoscaled) autoscale()(calm3Chat.endpoint);
  return stack;
}

/** Each pair: its name and the two stacks, the first the app as deployed, the second as the update makes it. */
const PAIRS: Record<string, () => [Stack, Stack]> = {
  // NeuronxCompile props
  'compile-timeout': () => [patternsApp({}), patternsApp({ compile: () => ({ timeout: Duration.hours(6) }) })],
  'compile-startTimeout': () => [patternsApp({}), patternsApp({ compile: () => ({ startTimeout: Duration.hours(1) }) })],
  'compile-timeouts-same-total': () => [patternsApp({}), patternsApp({ compile: () => ({ timeout: Duration.minutes(615), startTimeout: Duration.minutes(15) }) })],
  'compile-volumeSize': () => [patternsApp({}), patternsApp({ compile: () => ({ volumeSize: Size.gibibytes(400) }) })],
  'compile-spot': () => [patternsApp({}), patternsApp({ compile: () => ({ spot: true }) })],
  'compile-vpcSubnets': () => [patternsApp({}), patternsApp({
    compile: (_stack, net) => ({ vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, availabilityZones: [net.vpc.availabilityZones[0]] } }),
  })],
  'compile-optLevel': () => [patternsApp({}), patternsApp({ compile: () => ({ compileOptions: { tpDegree: 4, optLevel: OptLevel.BEST_BALANCE } }) })],
  'compile-nPositions': () => [patternsApp({}), patternsApp({ compile: () => ({ compileOptions: { tpDegree: 4, nPositions: 2048, optLevel: OptLevel.BEST_EXECUTION } }) })],
  'compile-batchSize': () => [patternsApp({}), patternsApp({ compile: () => ({ compileOptions: { tpDegree: 4, optLevel: OptLevel.BEST_EXECUTION, batchSize: 2 } }) })],
  'compile-quantDtype': () => [patternsApp({}), patternsApp({
    compile: () => ({ compileOptions: { tpDegree: 4, quantDtype: QuantDtype.S8, optLevel: OptLevel.BEST_EXECUTION } }),
  })],
  'compile-compileInstanceType': () => [patternsApp({}), patternsApp({ compile: () => ({ compileInstanceType: NeuronxInstanceType.INF2_48XLARGE }) })],
  'compile-servingInstanceType': () => [patternsApp({}), patternsApp({ compile: () => ({ servingInstanceType: NeuronxInstanceType.INF2_48XLARGE }) })],
  'compile-runtime': () => [patternsApp({}), patternsApp({ compile: () => ({ runtime: otherRuntime() }) })],
  'compile-artifactRootPrefix': () => [patternsApp({}), patternsApp({ compile: () => ({ artifactRootPrefix: 'models/' }) })],
  'compile-bucket-new': () => [patternsApp({}), patternsApp({ compile: stack => ({ bucket: new s3.Bucket(stack, 'OtherArtifacts') }) })],
  'compile-bucket-imported': () => [patternsApp({}), patternsApp({ compile: stack => ({ bucket: s3.Bucket.fromBucketName(stack, 'Named', 'my-model-artifacts') }) })],
  'compile-model-revision': () => [patternsApp({}), patternsApp({ compile: () => ({ model: calm3(OTHER_REVISION) }) })],
  // Endpoint props
  'endpoint-instanceCount': () => [patternsApp({}), patternsApp({ endpoint: () => ({ instanceCount: 2 }) })],
  'endpoint-modelDataDownloadTimeout': () => [patternsApp({}), patternsApp({ endpoint: () => ({ modelDataDownloadTimeout: Duration.minutes(30) }) })],
  'endpoint-containerStartupHealthCheckTimeout': () => [patternsApp({}), patternsApp({ endpoint: () => ({ containerStartupHealthCheckTimeout: Duration.minutes(50) }) })],
  'endpoint-environment': () => [patternsApp({}), patternsApp({ endpoint: () => ({ environment: { LOG_LEVEL: 'debug' } }) })],
  'endpoint-volumeSize': () => [patternsApp({}), patternsApp({ endpoint: () => ({ volumeSize: Size.gibibytes(200) }) })],
  'endpoint-volumeEncryptionKey': () => [patternsApp({}), patternsApp({ endpoint: stack => ({ volumeEncryptionKey: new kms.Key(stack, 'VolumeKey') }) })],
  'endpoint-autoscaling': () => [patternsApp({}), patternsApp({
    operate: endpoint => endpoint.autoScaleInstanceCount({ maxCapacity: 2 }).scaleOnConcurrentRequests('Concurrency'),
  })],
  'endpoint-alarms': () => [patternsApp({}), patternsApp({ operate: endpoint => endpoint.addAlarms() })],
  // Endpoint changes while Application Auto Scaling owns the instance count
  'autoscaled-instanceType': () => [patternsApp({ operate: autoscale() }), patternsApp({
    operate: autoscale(), endpoint: () => ({ instanceType: NeuronxInstanceType.INF2_48XLARGE }),
  })],
  'autoscaled-instanceCount': () => [patternsApp({ operate: autoscale() }), patternsApp({ operate: autoscale(), endpoint: () => ({ instanceCount: 2 }) })],
  'autoscaled-code': () => [patternsApp({ operate: autoscale(), code: codeDir('a') }), patternsApp({ operate: autoscale(), code: codeDir('b') })],
  'autoscaled-library-code': () => [patternsApp({ operate: autoscale() }), patternsApp({ operate: autoscale(), code: codeDir('a') })],
  'autoscaled-timeouts': () => [patternsApp({ operate: autoscale() }), patternsApp({
    operate: autoscale(), endpoint: () => ({ containerStartupHealthCheckTimeout: Duration.minutes(50), modelDataDownloadTimeout: Duration.minutes(30) }),
  })],
  'autoscaled-generationTimeLimit': () => [patternsApp({ operate: autoscale() }), patternsApp({
    operate: autoscale(), endpoint: () => ({ generationTimeLimit: Duration.seconds(15) }),
  })],
  'autoscaled-limits': () => [patternsApp({ operate: autoscale(3, 1) }), patternsApp({ operate: autoscale(5, 2) })],
  'autoscaled-model': () => [patternsApp({ operate: autoscale() }), patternsApp({ operate: autoscale(), compile: () => ({ model: calm3(OTHER_REVISION) }) })],
  // The calm3 construct
  'calm3-preset': () => [calm3App(), calm3App({ instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.highPerformance })],
  'calm3-revision': () => [calm3App(), calm3App({ revision: OTHER_REVISION })],
  'calm3-instanceCount': () => [calm3App(), calm3App({ instanceCount: 2 })],
  'calm3-compileSpot': () => [calm3App(), calm3App({ compileSpot: true })],
  'calm3-autoscaled-preset': () => [calm3App({}, true), calm3App({ instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.highPerformance }, true)],
  'calm3-autoscaled-instanceCount': () => [calm3App({}, true), calm3App({ instanceCount: 2 }, true)],
};

function templateOf(stack: Stack): unknown {
  const assembly = App.of(stack)!.synth() as unknown as { getStackArtifact(id: string): { template: unknown } };
  return assembly.getStackArtifact(stack.artifactId).template;
}

function main(outDir: string | undefined): void {
  if (!outDir) throw new Error('usage: synth-pairs.ts <out dir>');
  for (const [name, build] of Object.entries(PAIRS)) {
    const [before, after] = build();
    const dir = path.join(outDir, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'before.template.json'), JSON.stringify(templateOf(before), undefined, 1));
    fs.writeFileSync(path.join(dir, 'after.template.json'), JSON.stringify(templateOf(after), undefined, 1));
  }
  fs.rmSync(CODE_ROOT, { recursive: true, force: true });
  console.log(`${Object.keys(PAIRS).length} update pairs written to ${outDir}`);
}

main(process.argv[2]);
