// Placing the inference code (the handler, or a custom code directory, plus the library's files it imports) under
// the model data's code/<hash>/ prefix (content-addressed: see contract endpoint.servedCode), and the synth checks on it.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CustomResource, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { NeuronxCompile } from '../neuronx-compile';
import { CONTRACT, RUNTIME_DIR } from './contract';
import { handlerFunction } from './handler-function';
import { INFERENCE_CODE_RESOURCE_TYPE, InferenceCodeProperties } from './handler-protocol';
import { suppressWildcardFindings, wildcardFindings } from './nag-finding';
import { throwIfProblems } from './problems';
import { READINESS_JAR, SERVED_CODE_ENTRY, servedCodeDir, servedCodeEntryName, serviceHandler } from './service-handler';
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
// The library's files every served code's folder (code/<hash>/) gets: the contract, the module the handler imports (shared with the compile job),
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
/** Names in the served code's folder the library may write besides the files above. */
const LIBRARY_WRITTEN_NAMES = [CONTINUOUS_BATCHING.modelConfigName];

/**
 * The model config YAML TorchServe 0.11.0 needs to batch continuously (contract `endpoint.continuousBatching`). Only
 * what the artifacts decide goes in it (the prefix is shared by every endpoint that serves it).
 */
function continuousBatchingModelConfig(slots: number): string {
  const settings: Record<string, string | number | boolean> = {
    minWorkers: CONTINUOUS_BATCHING.workers,
    maxWorkers: CONTINUOUS_BATCHING.workers,
    batchSize: slots + CONTINUOUS_BATCHING.jobsBeyondSlots,
    maxBatchDelay: CONTRACT.endpoint.batching.maxBatchDelayMilliseconds,
    responseTimeout: CONTINUOUS_BATCHING.responseTimeoutSeconds,
    continuousBatching: true,
  };
  return Object.entries(settings).map(([k, v]) => `${k}: ${v}\n`).join('');
}

/**
 * What TorchServe 0.11.0 needs in the model dir to batch continuously, for the code with `codeHash`: the model config
 * in the code's folder and MAR-INF/MANIFEST.json naming it, as keys under the prefix and their text, config first (the
 * manifest never names a config not yet written). The manifest is the one file at a path every code shares (TorchServe
 * reads it there); its text follows from the code hash alone, and the config it names is never overwritten.
 */
export function continuousBatchingObjects(slots: number, codeHash: string): { key: string; body: string }[] {
  const configKey = `${servedCodeDir(codeHash)}${CONTINUOUS_BATCHING.modelConfigName}`;
  const manifest = {
    ...CONTINUOUS_BATCHING.manifest,
    model: { ...CONTINUOUS_BATCHING.manifest.model, configFile: configKey },
  };
  return [
    { key: configKey, body: continuousBatchingModelConfig(slots) },
    { key: CONTINUOUS_BATCHING.manifestKey, body: `${JSON.stringify(manifest, undefined, 2)}\n` },
  ];
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
    .map(d => `${code}, which has the subdirectory '${d}': only the files directly in it are placed under ${CONTRACT.layout.codeDir}<hash>/; `
      + `move them up beside ${HANDLER_SCRIPT}.`);
  const libraryNames = [...LIBRARY_CODE_FILES.map(f => path.basename(f)), ...LIBRARY_WRITTEN_NAMES];
  problems.push(...files.map(f => path.basename(f)).filter(name => libraryNames.includes(name))
    .map(name => `${code}, which has a file '${name}': the library places its own ${name} under ${CONTRACT.layout.codeDir}<hash>/ beside the handler; `
      + 'remove or rename yours (the library\'s handler and one started from it import the library\'s).'));
  const script = files.find(f => path.basename(f) === HANDLER_SCRIPT);
  if (!script) {
    problems.push(`${code}, which has no ${HANDLER_SCRIPT}: the SageMaker toolkit would not find a handler; add it or leave code unset for the library's handler.`);
  } else if (!HANDLE_DEFINITION.test(fs.readFileSync(script, 'utf-8'))) {
    problems.push(`${code}, whose ${HANDLER_SCRIPT} defines no top-level 'def ${HANDLE}(data, context)': TorchServe calls `
      + `its ${HANDLE} for every batch of requests (TS_DEFAULT_SERVICE_HANDLER=${serviceHandler('<hash>')}), not the toolkit's `
      + 'model_fn/input_fn/predict_fn/output_fn; '
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
 * Places the inference code under `<prefix>code/<hash>/`, and its entry as `<prefix>code/neuronx_code_<hash>.py`,
 * with a custom resource; `hash` is the code's content hash (its files, the entry, and for continuous batching the
 * model server's configuration), so two different codes never share a key and a key is never rewritten with other
 * content (contract `endpoint.servedCode`). Model data made from a compile in the same stack has the compile's
 * function do it (it already reads that prefix); other model data gets a function of its own.
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
  const continuousBatchingConfig = options.continuousBatchingSlots ? continuousBatchingModelConfig(options.continuousBatchingSlots) : undefined;
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
  const assets = files.map((file, i) => ({ asset: stageAsset(container, `File${i}`, { path: file }), name: path.basename(file) }));
  const entry = stageAsset(container, 'Entry', { path: SERVED_CODE_ENTRY });
  // Everything the served code is: each file's name and content, the entry's content, and the text of what is written
  // besides them (the manifest's fixed part too, so that one hash always gives one manifest).
  const hash = crypto.createHash('sha256')
    .update([
      ...assets.map(a => `${a.name}:${a.asset.assetHash}`),
      `entry:${entry.assetHash}`,
      ...(continuousBatchingConfig ? [`config:${continuousBatchingConfig}`, `manifest:${JSON.stringify(CONTINUOUS_BATCHING.manifest)}`] : []),
    ].join('\n'))
    .digest('hex').slice(0, 16);
  const objects = options.continuousBatchingSlots ? continuousBatchingObjects(options.continuousBatchingSlots, hash) : [];
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
  // CopyObject reads the source object and, with the default tagging directive COPY, its tags.
  [...assets.map(a => a.asset), entry].forEach(asset => grantAssetRead(asset, fn.role, ['s3:GetObject', 's3:GetObjectTagging']));
  // Names under code/: the files in the code's folder, then its entry (copied last, once all it imports is there).
  const codeFiles = [...assets.map(({ asset, name }) => ({ asset, name: `${hash}/${name}` })), { asset: entry, name: servedCodeEntryName(hash) }];
  const wait = compile?._deployWait;
  const properties: InferenceCodeProperties = {
    DestinationBucket: bucket.bucketName,
    DestinationPrefix: codePrefix,
    Files: codeFiles.map(({ asset, name }) => ({ SourceBucket: asset.bucketName, SourceKey: asset.objectKey, Name: name })),
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
  return { resource, hash };
}
