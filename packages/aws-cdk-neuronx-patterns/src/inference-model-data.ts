import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CustomResource, Duration, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, IDependable } from 'constructs';
import { QuantDtype } from './compile-options';
import { Model } from './model';
import { NeuronxCompile } from './neuronx-compile';
import { NeuronxInstanceType } from './neuronx-instance-type';
import { NeuronxRuntime } from './neuronx-runtime';
import { CONTRACT, RUNTIME_DIR } from './private/contract';
import { handlerFunction } from './private/handler-function';
import { INFERENCE_CODE_RESOURCE_TYPE, InferenceCodeProperties } from './private/handler-protocol';
import { suppressWildcardFindings, wildcardFindings } from './private/nag-finding';
import { folderPrefix, grantPrefix } from './private/s3-prefix';
import { SERVICE_HANDLER } from './private/service-handler';
import { DEFAULT_N_POSITIONS, throwIfProblems } from './private/sizing';
import { grantAssetRead, stageAsset } from './private/staged-asset';

const HANDLER_SCRIPT = CONTRACT.endpoint.handlerScript;
const HANDLE = CONTRACT.endpoint.serviceHandlerFunction;
// A function definition at the start of a line (not nested in a class or another function).
const HANDLE_DEFINITION = new RegExp(`^def ${HANDLE}\\s*\\(`, 'm');
// The library's files every code/ gets: the contract and the module the handler imports (shared with the compile job).
const LIBRARY_CODE_FILES = [
  path.join(RUNTIME_DIR, 'contract.json'),
  path.join(RUNTIME_DIR, 'common', 'neuronx_common.py'),
];
const DEFAULT_HANDLER = path.join(RUNTIME_DIR, 'inference', HANDLER_SCRIPT);

/** Options for compiled artifacts already in S3. */
export interface TransformersNeuronxSageMakerInferenceModelDataBucketOptions {
  /** The model the artifacts were compiled from (its size and architecture size the endpoint). */
  readonly model: Model;
  /** The tensor-parallel degree the artifacts were compiled with. */
  readonly tpDegree: number;
  /**
   * The number of positions the artifacts were compiled with.
   *
   * @default 4096
   */
  readonly nPositions?: number;
  /**
   * The weight storage type the artifacts were compiled with.
   *
   * @default - bf16
   */
  readonly quantDtype?: QuantDtype;
  /**
   * The batch size the artifacts were compiled with (`CompileOptions.batchSize`).
   *
   * @default 1
   */
  readonly batchSize?: number;
  /**
   * The runtime (Neuron Deep Learning Container) the artifacts were compiled with (the endpoint runs the same).
   *
   * @default NeuronxRuntime.DEFAULT
   */
  readonly runtime?: NeuronxRuntime;
  /**
   * The instance type the artifacts were compiled for.
   *
   * @default - not known: the endpoint must be given an instance type
   */
  readonly compiledFor?: NeuronxInstanceType;
  /**
   * A local directory whose files are placed under `<prefix>code/` as the inference code (files only, no
   * subdirectories). Its `inference.py` must define the TorchServe entry `def handle(data, context)` at the top
   * level: the endpoint has TorchServe call `inference:handle` directly, not the toolkit's
   * model_fn/input_fn/predict_fn/output_fn. Synth checks the file's text for a line starting with `def handle(`.
   * Start from the library's `runtime/inference/inference.py`.
   *
   * The library's `neuronx_common.py` (the contract loader and the model-building arguments, shared with the
   * compile job) and `contract.json` are always placed beside these files, so the library's handler and one
   * started from it find what they import; the directory must not have files of those names (synth fails).
   *
   * @default - the library's handler (`inference.py`)
   */
  readonly code?: string;
}

/** What model data gives an endpoint. */
export interface TransformersNeuronxSageMakerInferenceModelDataConfig {
  /** `s3://bucket/prefix/` of the uncompressed model data. */
  readonly s3Uri: string;
  /** The runtime (Neuron Deep Learning Container) the artifacts were compiled with; the endpoint runs the same. */
  readonly runtime: NeuronxRuntime;
  /** The model. */
  readonly model: Model;
  /** Tensor-parallel degree compiled for. */
  readonly tpDegree: number;
  /** Positions compiled for. */
  readonly nPositions: number;
  /** Batch size compiled for. */
  readonly batchSize: number;
  /**
   * Weight storage type.
   *
   * @default - bf16 (no quantization)
   */
  readonly quantDtype?: QuantDtype;
  /**
   * The instance type compiled for.
   *
   * @default - not known: the endpoint must be given an instance type
   */
  readonly compiledFor?: NeuronxInstanceType;
  /** What must exist before the SageMaker model is created (the compile, the placed code). */
  readonly dependencies: IDependable[];
  /** Environment the model container gets from the model data. */
  readonly environment: { [name: string]: string };
}

/**
 * Model data for a transformers-neuronx endpoint: compiled artifacts under an S3 prefix, plus the inference code
 * placed beside them.
 */
export abstract class TransformersNeuronxSageMakerInferenceModelData {
  /**
   * The artifacts of a NeuronxCompile in this app; the endpoint waits for the compile.
   *
   * @param compile the compile
   * @param code a local directory whose files (no subdirectories) are placed under `<prefix>code/`, beside the
   * library's `neuronx_common.py` and `contract.json` (it must not have files of those names); its `inference.py`
   * must define `def handle(data, context)` at the top level (see `TransformersNeuronxSageMakerInferenceModelDataBucketOptions.code`);
   * default: the library's handler
   */
  public static fromNeuronxCompile(compile: NeuronxCompile, code?: string): TransformersNeuronxSageMakerInferenceModelData {
    return new PrefixModelData({
      bucket: compile.bucket,
      prefix: compile.compiledArtifactS3Prefix,
      model: compile.model,
      tpDegree: compile.tpDegree,
      nPositions: compile.nPositions,
      quantDtype: compile.quantDtype,
      batchSize: compile.batchSize,
      runtime: compile.runtime,
      compiledFor: compile.servingInstanceType,
      code,
      compile,
    });
  }

  /**
   * Artifacts compiled earlier (by a NeuronxCompile elsewhere, or by hand with the same layout and marker).
   *
   * @param bucket the bucket holding the artifacts
   * @param prefix the folder of the artifacts, e.g. a NeuronxCompile's `compiledArtifactS3Prefix`; a '/' is added when
   * it has none, also to a token (e.g. a CfnParameter) that does not end with a literal '/'
   * @param options what the artifacts were compiled from and with
   */
  public static fromBucket(
    bucket: s3.IBucket,
    prefix: string,
    options: TransformersNeuronxSageMakerInferenceModelDataBucketOptions,
  ): TransformersNeuronxSageMakerInferenceModelData {
    return new PrefixModelData({
      ...options,
      bucket,
      prefix: folderPrefix('TransformersNeuronxSageMakerInferenceModelData.fromBucket', prefix),
      nPositions: options.nPositions ?? DEFAULT_N_POSITIONS,
    });
  }

  /** Grants `grantable` read access to the model data and returns what the endpoint needs. */
  public abstract bind(scope: Construct, grantable: iam.IGrantable): TransformersNeuronxSageMakerInferenceModelDataConfig;
}

interface PrefixModelDataProps extends Omit<TransformersNeuronxSageMakerInferenceModelDataBucketOptions, 'nPositions'> {
  readonly bucket: s3.IBucket;
  readonly prefix: string;
  readonly nPositions: number;
  /**
   * The compile that makes the artifacts, for the endpoint to wait for.
   *
   * @default - none: the artifacts exist already
   */
  readonly compile?: NeuronxCompile;
}

class PrefixModelData extends TransformersNeuronxSageMakerInferenceModelData {
  constructor(private readonly props: PrefixModelDataProps) {
    super();
  }

  public bind(scope: Construct, grantable: iam.IGrantable): TransformersNeuronxSageMakerInferenceModelDataConfig {
    const { bucket, prefix } = this.props;
    suppressWildcardFindings(grantable, wildcardFindings(scope, grantPrefix(bucket, prefix, grantable, 'read')),
      'Object reads are limited to the model data prefix (prefix/*); listing is limited to it by condition.');
    const code = placeInferenceCode(scope, bucket, prefix, this.props.code, this.props.compile);
    checkOneCodePerPrefix(this.props.compile ?? bucket, prefix, code.hash, scope, this.props.code);
    return {
      s3Uri: bucket.s3UrlForObject(prefix),
      runtime: this.props.runtime ?? NeuronxRuntime.DEFAULT,
      model: this.props.model,
      tpDegree: this.props.tpDegree,
      nPositions: this.props.nPositions,
      batchSize: this.props.batchSize ?? CONTRACT.defaults.batchSize,
      quantDtype: this.props.quantDtype,
      compiledFor: this.props.compiledFor,
      dependencies: [code.resource, ...(this.props.compile ? [this.props.compile] : [])],
      // A code change must replace the SageMaker model, or the endpoint would keep serving the old code.
      environment: { NEURONX_CODE_HASH: code.hash },
    };
  }
}

// The code placed under each prefix in this app, by the compile (or bucket) and the literal prefix.
interface PlacedCode { readonly hash: string; readonly scope: string; readonly code?: string }
// A WeakMap, not a member: the owner may be the user's bucket (an IBucket, often imported), which this library cannot extend.
const PLACED_CODE = new WeakMap<object, Map<string, PlacedCode>>();

/**
 * Endpoints that serve one prefix share its `code/`: a second, different code directory would overwrite the first at
 * deploy, and one of the endpoints would serve code it was not given. (A token prefix is not compared.)
 */
function checkOneCodePerPrefix(owner: object, prefix: string, hash: string, scope: Construct, code?: string): void {
  if (Token.isUnresolved(prefix)) return;
  const placed = PLACED_CODE.get(owner) ?? new Map<string, PlacedCode>();
  PLACED_CODE.set(owner, placed);
  const earlier = placed.get(prefix);
  if (!earlier) {
    placed.set(prefix, { hash, scope: scope.node.path, code });
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
  const libraryNames = LIBRARY_CODE_FILES.map(f => path.basename(f));
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

/**
 * Places the inference code under `<prefix>code/` with a custom resource. Model data made from a compile in the same
 * stack has the compile's function do it (it already reads that prefix); other model data gets a function of its own.
 */
function placeInferenceCode(
  scope: Construct, bucket: s3.IBucket, prefix: string, codeDir?: string, compile?: NeuronxCompile,
): { resource: CustomResource; hash: string } {
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
  const writes = [
    iam.Grant.addToPrincipal({ grantee: fn.role, actions: ['s3:PutObject'], resourceArns: [bucket.arnForObjects(`${codePrefix}*`)] }),
    ...(bucket.encryptionKey ? [bucket.encryptionKey.grantEncrypt(fn.role)] : []),
  ];
  const assets = files.map((file, i) => {
    const asset = stageAsset(container, `File${i}`, { path: file });
    // CopyObject reads the source object and, with the default tagging directive COPY, its tags.
    grantAssetRead(asset, fn.role, ['s3:GetObject', 's3:GetObjectTagging']);
    return { asset, name: path.basename(file) };
  });
  const properties: InferenceCodeProperties = {
    DestinationBucket: bucket.bucketName,
    DestinationPrefix: codePrefix,
    Files: assets.map(({ asset, name }) => ({ SourceBucket: asset.bucketName, SourceKey: asset.objectKey, Name: name })),
  };
  const resource = new CustomResource(container, 'Resource', {
    serviceToken: fn.functionArn,
    resourceType: INFERENCE_CODE_RESOURCE_TYPE,
    serviceTimeout: Duration.minutes(5),
    properties: { ...properties },
  });
  // The asset reads name their objects and the log writes their log group: only the writes have wildcards.
  suppressWildcardFindings(fn.role, wildcardFindings(container, writes.flatMap(g => g.principalStatements)),
    'Placing the inference code writes only under the model data\'s code/ prefix (code/*)'
    + (bucket.encryptionKey ? ', encrypting with the bucket\'s own key (kms:GenerateDataKey* and kms:ReEncrypt* on that key only).' : '.'));
  const hash = crypto.createHash('sha256').update(assets.map(a => `${a.name}:${a.asset.assetHash}`).join('\n')).digest('hex').slice(0, 16);
  return { resource, hash };
}
