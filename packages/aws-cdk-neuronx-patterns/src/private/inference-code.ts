// Placing the inference code (the handler, or a custom code directory, plus the library's files it imports) under
// the model data's code/ prefix, and the synth checks on it.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CustomResource, Duration, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { NeuronxCompile } from '../neuronx-compile';
import { CONTRACT, RUNTIME_DIR } from './contract';
import { handlerFunction } from './handler-function';
import { INFERENCE_CODE_RESOURCE_TYPE, InferenceCodeProperties } from './handler-protocol';
import { suppressWildcardFindings, wildcardFindings } from './nag-finding';
import { throwIfProblems } from './problems';
import { READINESS_JAR, SERVICE_HANDLER } from './service-handler';
import { resolvedKey, StackRegistry } from './stack-registry';
import { grantAssetRead, stageAsset } from './staged-asset';

const HANDLER_SCRIPT = CONTRACT.endpoint.handlerScript;
const HANDLE = CONTRACT.endpoint.serviceHandlerFunction;
// A function definition at the start of a line (not nested in a class or another function).
const HANDLE_DEFINITION = new RegExp(`^def ${HANDLE}\\s*\\(`, 'm');
const HANDLER_DIR = path.join(RUNTIME_DIR, 'inference');
/**
 * The library handler's modules besides its entry script (the request contract, the chat prompt, the answer, the
 * scheduler, loading): every other .py in runtime/inference, sorted so that the assets keep their order.
 */
const HANDLER_MODULES = fs.readdirSync(HANDLER_DIR).filter(f => f.endsWith('.py') && f !== HANDLER_SCRIPT).sort()
  .map(f => path.join(HANDLER_DIR, f));
// The library's files every code/ gets: the contract, the module the handler imports (shared with the compile job),
// the handler's modules (so that a handler started from the library's imports them as it does), and the /ping plugin
// TorchServe loads (whatever the handler).
const LIBRARY_CODE_FILES = [
  path.join(RUNTIME_DIR, 'contract.json'),
  path.join(RUNTIME_DIR, 'common', 'neuronx_common.py'),
  ...HANDLER_MODULES,
  READINESS_JAR,
];
const DEFAULT_HANDLER = path.join(HANDLER_DIR, HANDLER_SCRIPT);
const CONTINUOUS_BATCHING = CONTRACT.endpoint.continuousBatching;
/** Names under code/ the library may write besides the files above. */
const LIBRARY_WRITTEN_NAMES = [path.posix.basename(CONTINUOUS_BATCHING.modelConfigKey)];

/**
 * What TorchServe 0.11.0 needs in the model dir to batch continuously (contract `endpoint.continuousBatching`): the
 * model config YAML and MAR-INF/MANIFEST.json naming it, as keys under the prefix and their text. Only what the
 * artifacts decide goes in them (the prefix is shared by every endpoint that serves it).
 */
export function continuousBatchingObjects(slots: number): { key: string; body: string }[] {
  const settings: Record<string, string | number | boolean> = {
    minWorkers: CONTINUOUS_BATCHING.workers,
    maxWorkers: CONTINUOUS_BATCHING.workers,
    batchSize: slots + CONTINUOUS_BATCHING.jobsBeyondSlots,
    maxBatchDelay: CONTRACT.endpoint.batching.maxBatchDelayMilliseconds,
    responseTimeout: CONTINUOUS_BATCHING.responseTimeoutSeconds,
    continuousBatching: true,
  };
  const manifest = {
    ...CONTINUOUS_BATCHING.manifest,
    model: { ...CONTINUOUS_BATCHING.manifest.model, configFile: CONTINUOUS_BATCHING.modelConfigKey },
  };
  return [
    { key: CONTINUOUS_BATCHING.modelConfigKey, body: Object.entries(settings).map(([k, v]) => `${k}: ${v}\n`).join('') },
    { key: CONTINUOUS_BATCHING.manifestKey, body: `${JSON.stringify(manifest, undefined, 2)}\n` },
  ];
}

// The code placed under each prefix of a stack, by the bucket's name as the template has it and the literal prefix.
interface PlacedCode { readonly hash: string; readonly scope: string; readonly code?: string }
const PLACED_CODE_ID = 'NeuronxPlacedInferenceCode';

/**
 * Endpoints that serve one prefix share its `code/`: a second, different code directory would overwrite the first at
 * deploy, and one of the endpoints would serve code it was not given. (A token prefix is not compared.)
 */
export function checkOneCodePerPrefix(bucket: s3.IBucket, prefix: string, hash: string, scope: Construct, code?: string): void {
  if (Token.isUnresolved(prefix)) return;
  const placed = StackRegistry.of<PlacedCode>(scope, PLACED_CODE_ID);
  const key = resolvedKey(scope, bucket.bucketName, prefix);
  const earlier = placed.get(key);
  if (!earlier) {
    placed.register(key, { hash, scope: scope.node.path, code });
    return;
  }
  if (earlier.hash !== hash) {
    const describe = (dir?: string) => (dir ? `'${dir}'` : 'the library\'s handler');
    throw new Error(`'${scope.node.path}' places the inference code ${describe(code)} under ${prefix}${CONTRACT.layout.codeDir}, where `
      + `'${earlier.scope}' places ${describe(earlier.code)}: endpoints that serve one prefix share its code; give them the same code.`);
  }
}

/**
 * What would make a code directory fail on the endpoint: a subdirectory (only the files directly in it are placed,
 * so an import from it would fail there, after the deploy, instead of here), a file named as one of the library's
 * files placed beside it, no handler script, or a handler script without the entry TorchServe calls. The last is a
 * text check for a top-level `def handle(`.
 */
function codeDirProblems(codeDir: string, files: string[]): string[] {
  const code = `code is '${codeDir}'`;
  const problems = fs.readdirSync(codeDir).filter(f => fs.statSync(path.join(codeDir, f)).isDirectory())
    .map(d => `${code}, which has the subdirectory '${d}': only the files directly in it are placed under ${CONTRACT.layout.codeDir}; move them up beside ${HANDLER_SCRIPT}.`);
  const libraryNames = [...LIBRARY_CODE_FILES.map(f => path.basename(f)), ...LIBRARY_WRITTEN_NAMES];
  problems.push(...files.map(f => path.basename(f)).filter(name => libraryNames.includes(name))
    .map(name => `${code}, which has a file '${name}': the library places its own ${name} under ${CONTRACT.layout.codeDir} beside the handler; `
      + 'remove or rename yours (the library\'s handler and one started from it import the library\'s).'));
  const script = files.find(f => path.basename(f) === HANDLER_SCRIPT);
  if (!script) {
    problems.push(`${code}, which has no ${HANDLER_SCRIPT}: the SageMaker toolkit would not find a handler; add it or leave code unset for the library's handler.`);
  } else if (!HANDLE_DEFINITION.test(fs.readFileSync(script, 'utf-8'))) {
    problems.push(`${code}, whose ${HANDLER_SCRIPT} defines no top-level 'def ${HANDLE}(data, context)': TorchServe calls `
      + `${SERVICE_HANDLER} for every batch of requests (TS_DEFAULT_SERVICE_HANDLER), not the toolkit's model_fn/input_fn/predict_fn/output_fn; `
      + `add it, e.g. starting from the library's runtime/inference/${HANDLER_SCRIPT}.`);
  }
  return problems;
}

/** What is placed besides the library's files. */
export interface PlacementOptions {
  /** The user's code directory (default: the library's handler). */
  readonly codeDir?: string;
  /** The compile that makes the artifacts, when in this app. */
  readonly compile?: NeuronxCompile;
  /** The slots, when the artifacts are compiled for continuous batching. */
  readonly continuousBatchingSlots?: number;
}

/**
 * Places the inference code under `<prefix>code/` with a custom resource. Model data made from a compile in the same
 * stack has the compile's function do it (it already reads that prefix); other model data gets a function of its own.
 *
 * The resource is the check that the artifacts are complete: it fails without the completion marker under
 * `prefix`, and the SageMaker model depends on it. Model data from a compile runs it after the compile's
 * WaitCondition (and again after every new wait, whose logical id it carries), so a wait signalled SUCCESS by
 * anything but a compile that finished makes no model. Model data from a bucket has no wait: the check runs when
 * the resource is created and when its prefix changes.
 */
export function placeInferenceCode(
  scope: Construct, bucket: s3.IBucket, prefix: string, options: PlacementOptions,
): { resource: CustomResource; hash: string } {
  const { codeDir, compile } = options;
  const handlerFiles = codeDir
    ? fs.readdirSync(codeDir).map(f => path.join(codeDir, f)).filter(f => fs.statSync(f).isFile())
    : [DEFAULT_HANDLER];
  // Only the files directly in the directory are placed: a subdirectory would be missing on the endpoint, and an
  // import from it would fail there, after the deploy, instead of here.
  if (codeDir) throwIfProblems(`The inference code of '${scope.node.path}'`, codeDirProblems(codeDir, handlerFiles));
  const files = [...handlerFiles, ...LIBRARY_CODE_FILES];
  const container = new Construct(scope, 'InferenceCode');
  // The compile's function, in the compile's stack only: in another stack, the custom resource would reference a
  // function across stacks, so that stack gets its own.
  const compileFunction = compile && Stack.of(compile) === Stack.of(container) ? compile._lifecycleFunction : undefined;
  const fn = compileFunction ?? handlerFunction(container, 'Function', {
    handler: 'inferenceCode',
    description: 'Places the inference code beside the SageMaker model data',
    timeout: Duration.minutes(2),
  });
  const codePrefix = `${prefix}${CONTRACT.layout.codeDir}`;
  const markerKey = `${prefix}${CONTRACT.layout.marker}`;
  // The compile's function reads the whole prefix already; a function of its own may read only the marker (listing
  // only its key, so that a missing marker reads as 404, not 403).
  const markerReads = compileFunction ? [] : [
    iam.Grant.addToPrincipal({ grantee: fn.role, actions: ['s3:GetObject'], resourceArns: [bucket.arnForObjects(markerKey)] }),
    iam.Grant.addToPrincipal({
      grantee: fn.role, actions: ['s3:ListBucket'], resourceArns: [bucket.bucketArn], conditions: { StringEquals: { 's3:prefix': markerKey } },
    }),
    ...(bucket.encryptionKey ? [bucket.encryptionKey.grantDecrypt(fn.role)] : []),
  ];
  const objects = options.continuousBatchingSlots ? continuousBatchingObjects(options.continuousBatchingSlots) : [];
  const writes = [
    iam.Grant.addToPrincipal({
      grantee: fn.role,
      actions: ['s3:PutObject'],
      // code/* and, for continuous batching, the one manifest TorchServe reads beside it.
      resourceArns: [`${codePrefix}*`, ...objects.map(o => `${prefix}${o.key}`).filter(k => !k.startsWith(codePrefix))]
        .map(key => bucket.arnForObjects(key)),
    }),
    ...(bucket.encryptionKey ? [bucket.encryptionKey.grantEncrypt(fn.role)] : []),
  ];
  const assets = files.map((file, i) => {
    const asset = stageAsset(container, `File${i}`, { path: file });
    // CopyObject reads the source object and, with the default tagging directive COPY, its tags.
    grantAssetRead(asset, fn.role, ['s3:GetObject', 's3:GetObjectTagging']);
    return { asset, name: path.basename(file) };
  });
  const wait = compile?._deployWait;
  const properties: InferenceCodeProperties = {
    DestinationBucket: bucket.bucketName,
    DestinationPrefix: codePrefix,
    Files: assets.map(({ asset, name }) => ({ SourceBucket: asset.bucketName, SourceKey: asset.objectKey, Name: name })),
    MarkerKey: markerKey,
    ...(objects.length > 0 ? { Objects: objects.map(o => ({ Key: `${prefix}${o.key}`, Body: o.body })) } : {}),
    ...(wait ? { CompileWait: wait.logicalId } : {}),
  };
  const resource = new CustomResource(container, 'Resource', {
    serviceToken: fn.functionArn,
    resourceType: INFERENCE_CODE_RESOURCE_TYPE,
    serviceTimeout: Duration.minutes(5),
    properties: { ...properties },
  });
  // After the wait: the marker is checked once the compile has ended (in another stack: after that whole stack).
  if (wait) resource.node.addDependency(wait);
  // The asset reads name their objects and the log writes their log group: only the writes have wildcards.
  suppressWildcardFindings(fn.role, wildcardFindings(container, [...writes, ...markerReads].flatMap(g => g.principalStatements)),
    'Placing the inference code writes only under the model data\'s code/ prefix (code/*)'
    + (objects.length > 0 ? ` and ${CONTINUOUS_BATCHING.manifestKey}` : '')
    + (bucket.encryptionKey ? ', encrypting with the bucket\'s own key (kms:GenerateDataKey* and kms:ReEncrypt* on that key only).' : '.'));
  const hash = crypto.createHash('sha256')
    .update([...assets.map(a => `${a.name}:${a.asset.assetHash}`), ...objects.map(o => `${o.key}:${o.body}`)].join('\n'))
    .digest('hex').slice(0, 16);
  return { resource, hash };
}
