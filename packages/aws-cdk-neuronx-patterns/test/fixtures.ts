// Shared stack setup for the template tests: a VPC and a bucket that pass cdk-nag on their own, and the facts of
// cyberagent/calm3-22b-chat (Hugging Face model card and config.json) that the sizing checks are exercised with.
import { execFileSync } from 'child_process';
import { App, Duration, Environment, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  CompileOptions, HuggingFaceModelOptions, Model, ModelArchitecture, NeuronxCompile, NeuronxCompileProps,
  NeuronxInstanceType, OptLevel, QuantDtype, TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint, TransformersNeuronxSageMakerRealtimeInferenceEndpointProps,
} from '../src';

export const ENV: Environment = { account: '123456789012', region: 'us-east-1' };

export const CALM3_ID = 'cyberagent/calm3-22b-chat';
/** A commit hash, so that synth does not warn about an unpinned branch. */
export const PINNED_REVISION = '0123456789abcdef0123456789abcdef01234567';
export const CALM3_PARAMETERS = 22.5e9;
export const CALM3_ARCHITECTURE: ModelArchitecture = {
  modelType: 'llama', // architectures: LlamaForCausalLM
  numLayers: 48,
  hiddenSize: 6144,
  numAttentionHeads: 48,
  numKeyValueHeads: 48,
  maxPositionEmbeddings: 16384,
};

/** The seed's lowCost preset: int8, 1024 positions, compiled on inf2.8xlarge for trn1.2xlarge. */
export const LOW_COST: { options: CompileOptions; serving: NeuronxInstanceType; compile: NeuronxInstanceType } = {
  options: { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, optLevel: OptLevel.BEST_EXECUTION },
  serving: NeuronxInstanceType.TRN1_2XLARGE,
  compile: NeuronxInstanceType.INF2_8XLARGE,
};

/** The seed's highPerformance preset: bf16, 4096 positions, tp 4 on inf2.24xlarge (3 workers). */
export const HIGH_PERFORMANCE: { options: CompileOptions; serving: NeuronxInstanceType; compile: NeuronxInstanceType } = {
  options: { tpDegree: 4, optLevel: OptLevel.BEST_EXECUTION },
  serving: NeuronxInstanceType.INF2_24XLARGE,
  compile: NeuronxInstanceType.INF2_24XLARGE,
};

/** NeuronxCompile props of the highPerformance preset. */
export const HIGH_PERFORMANCE_PROPS: Partial<NeuronxCompileProps> = {
  compileInstanceType: HIGH_PERFORMANCE.compile,
  servingInstanceType: HIGH_PERFORMANCE.serving,
  compileOptions: HIGH_PERFORMANCE.options,
};

/** calm3-22b-chat from the Hugging Face Hub, pinned, with its parameter count and architecture. */
export function calm3(options: HuggingFaceModelOptions = {}): Model {
  return Model.fromHuggingFace(CALM3_ID, {
    revision: PINNED_REVISION,
    parameterCount: CALM3_PARAMETERS,
    architecture: CALM3_ARCHITECTURE,
    ...options,
  });
}

/**
 * TinyLlama-1.1B-Chat-v1.0 at a fixed commit (config.json: model_type llama, 22 layers, hidden 2048, 32 heads, 4 KV heads,
 * 2048 positions): small enough for the integ apps to compile in minutes on one inf2.8xlarge.
 */
export function tinyLlama(): Model {
  return Model.fromHuggingFace('TinyLlama/TinyLlama-1.1B-Chat-v1.0', {
    revision: 'fe8a4ea1ffedaf415f4da2f062534de366a451e6',
    architecture: { modelType: 'llama', numLayers: 22, hiddenSize: 2048, numAttentionHeads: 32, numKeyValueHeads: 4, maxPositionEmbeddings: 2048 },
  });
}

export interface Network {
  readonly vpc: ec2.Vpc;
  readonly bucket: s3.Bucket;
  readonly accessLogsBucket: s3.Bucket;
}

/**
 * A VPC with flow logs and one NAT gateway, and an encrypted, TLS-only, versioned artifact bucket whose access logs go
 * to a second bucket: the test's own resources are compliant, so every cdk-nag finding belongs to the library.
 * Integ apps set `autoDeleteObjects` so that destroying the stack empties the buckets.
 */
export function network(stack: Stack, options: { autoDeleteObjects?: boolean } = {}): Network {
  const vpc = new ec2.Vpc(stack, 'Vpc', {
    maxAzs: 2,
    natGateways: 1,
    flowLogs: { All: { trafficType: ec2.FlowLogTrafficType.ALL } },
  });
  const accessLogsBucket = new s3.Bucket(stack, 'AccessLogs', {
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
    versioned: true,
    removalPolicy: RemovalPolicy.DESTROY,
    autoDeleteObjects: options.autoDeleteObjects,
  });
  const bucket = new s3.Bucket(stack, 'Artifacts', {
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    versioned: true,
    serverAccessLogsBucket: accessLogsBucket,
    serverAccessLogsPrefix: 'artifacts/',
    removalPolicy: RemovalPolicy.DESTROY,
    autoDeleteObjects: options.autoDeleteObjects,
  });
  return { vpc, bucket, accessLogsBucket };
}

export interface CompileFixture extends Network {
  readonly app: App;
  readonly stack: Stack;
  readonly compile: NeuronxCompile;
}

export interface CompileFixtureOptions {
  /** Stack environment; `null` for an environment-agnostic stack. */
  readonly env?: Environment | null;
  /** Props on top of the lowCost-like defaults (vpc, bucket and model are filled in). */
  readonly props?: Partial<NeuronxCompileProps>;
}

/** One stack with the network and a NeuronxCompile of calm3 (by default the lowCost preset). */
export function compileFixture(options: CompileFixtureOptions = {}): CompileFixture {
  const app = new App();
  const stack = new Stack(app, 'TestStack', options.env === null ? {} : { env: options.env ?? ENV });
  const net = network(stack);
  const compile = new NeuronxCompile(stack, 'Compile', {
    vpc: net.vpc,
    bucket: net.bucket,
    model: calm3(),
    compileInstanceType: LOW_COST.compile,
    servingInstanceType: LOW_COST.serving,
    compileOptions: LOW_COST.options,
    ...options.props,
  });
  return { app, stack, compile, ...net };
}

export interface EndpointFixture extends CompileFixture {
  readonly endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint;
}

/** A compile plus the endpoint that serves it. */
export function endpointFixture(
  compileOptions: CompileFixtureOptions = {},
  endpointProps: Partial<TransformersNeuronxSageMakerRealtimeInferenceEndpointProps> = {},
): EndpointFixture {
  const fixture = compileFixture(compileOptions);
  const endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(fixture.stack, 'Endpoint', {
    modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(fixture.compile),
    ...endpointProps,
  });
  return { ...fixture, endpoint };
}

/**
 * An endpoint on KMS-encrypted artifacts already in S3, with a volume key, in an environment-agnostic stack: the
 * stack's own resources pass cdk-nag, so every finding belongs to the library.
 */
export function kmsEndpointFixture(): { stack: Stack; endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint } {
  const stack = new Stack(new App(), 'Kms');
  const { accessLogsBucket } = network(stack);
  const bucket = new s3.Bucket(stack, 'Encrypted', {
    encryptionKey: new kms.Key(stack, 'Key', { enableKeyRotation: true }),
    enforceSSL: true,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    serverAccessLogsBucket: accessLogsBucket,
    serverAccessLogsPrefix: 'encrypted/',
  });
  const endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
    modelData: TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'compiled/calm3', { model: calm3(), tpDegree: 4 }),
    instanceType: NeuronxInstanceType.INF2_24XLARGE,
    volumeEncryptionKey: new kms.Key(stack, 'VolumeKey', { enableKeyRotation: true }),
  });
  return { stack, endpoint };
}

/** The logical id of a construct's CloudFormation resource (the construct itself or its default child). */
export function logicalId(stack: Stack, construct: { node: { defaultChild?: unknown } } | object): string {
  const target = ((construct as { node?: { defaultChild?: unknown } }).node?.defaultChild ?? construct) as { logicalId: string };
  // The element's logicalId, not stack.getLogicalId: that is the allocated id, blind to overrideLogicalId.
  return stack.resolve(target.logicalId);
}

/**
 * Renders a CloudFormation value as one string: Fn::Join parts joined, `{Ref: X}` as `${X}`, `Fn::GetAtt` as
 * `${X.Attr}`, `Fn::FindInMap` as `${FindInMap:...}`. For asserting ARNs and URIs that contain pseudo parameters.
 */
export function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value)) return value.map(flatten).join(',');
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    if ('Fn::Join' in obj) {
      const [sep, parts] = obj['Fn::Join'] as [string, unknown[]];
      return parts.map(flatten).join(sep);
    }
    if ('Ref' in obj) return `\${${String(obj.Ref)}}`;
    if ('Fn::GetAtt' in obj) return `\${${(obj['Fn::GetAtt'] as string[]).join('.')}}`;
    if ('Fn::FindInMap' in obj) return `\${FindInMap:${(obj['Fn::FindInMap'] as unknown[]).map(flatten).join(':')}}`;
    return JSON.stringify(obj);
  }
  return String(value);
}

export interface Statement {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: Record<string, Record<string, unknown>>;
}

/** Every IAM statement of the inline policies attached to a role (by the role's logical id). */
export function statementsOfRole(template: Template, roleLogicalId: string): Statement[] {
  const policies = template.findResources('AWS::IAM::Policy');
  const statements: Statement[] = [];
  for (const policy of Object.values(policies)) {
    const roles = (policy.Properties.Roles ?? []) as Array<{ Ref?: string }>;
    if (roles.some(r => r.Ref === roleLogicalId)) {
      statements.push(...policy.Properties.PolicyDocument.Statement);
    }
  }
  const role = template.findResources('AWS::IAM::Role')[roleLogicalId];
  for (const inline of (role?.Properties?.Policies ?? []) as Array<{ PolicyDocument: { Statement: Statement[] } }>) {
    statements.push(...inline.PolicyDocument.Statement);
  }
  return statements;
}

export function actionsOf(statement: Statement): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}

export function resourcesOf(statement: Statement): string[] {
  return (Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource]).map(flatten);
}

/** The statements that allow `action` (exactly that action name). */
export function statementsAllowing(statements: Statement[], action: string): Statement[] {
  return statements.filter(s => s.Effect === 'Allow' && actionsOf(s).includes(action));
}

/** The environment of the one Batch job definition, as a name-value map. */
export function jobEnvironment(template: Template): Record<string, string> {
  const definitions = Object.values(template.findResources('AWS::Batch::JobDefinition'));
  expect(definitions).toHaveLength(1);
  const env = definitions[0].Properties.ContainerProperties.Environment as Array<{ Name: string; Value: unknown }>;
  return Object.fromEntries(env.map(e => [e.Name, flatten(e.Value)]));
}

/**
 * The integ apps' compile: TinyLlama for inf2 on an inf2.8xlarge at -O1, served on ml.inf2.xlarge, so a real
 * deployment compiles in minutes.
 */
export function tinyLlamaCompile(stack: Stack, vpc: ec2.IVpc, bucket: s3.IBucket): NeuronxCompile {
  return new NeuronxCompile(stack, 'Compile', {
    vpc,
    bucket,
    model: tinyLlama(),
    compileInstanceType: NeuronxInstanceType.INF2_8XLARGE,
    servingInstanceType: NeuronxInstanceType.INF2_XLARGE,
    compileOptions: { tpDegree: 2, nPositions: 2048, optLevel: OptLevel.MINIMIZE_COMPILE_TIME },
    timeout: Duration.hours(2),
  });
}

/**
 * Each entry of a zip and its bytes, as Python's zipfile (what the compile job unpacks code.zip with) reads them,
 * after it has checked every CRC.
 */
export function readZip(file: string): Record<string, Buffer> {
  const script = [
    'import base64, json, sys, zipfile',
    'z = zipfile.ZipFile(sys.argv[1])',
    'assert z.testzip() is None',
    'print(json.dumps({n: base64.b64encode(z.read(n)).decode() for n in z.namelist()}))',
  ].join('\n');
  const entries: Record<string, string> = JSON.parse(execFileSync('python3', ['-c', script, file], { encoding: 'utf-8', maxBuffer: 16 * 1024 * 1024 }));
  return Object.fromEntries(Object.entries(entries).map(([name, base64]) => [name, Buffer.from(base64, 'base64')]));
}
