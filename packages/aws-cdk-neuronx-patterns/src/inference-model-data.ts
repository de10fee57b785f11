import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, IDependable } from 'constructs';
import { CompileOptions, QuantDtype } from './compile-options';
import { Model } from './model';
import { NeuronxCompile } from './neuronx-compile';
import { NeuronxInstanceType } from './neuronx-instance-type';
import { NeuronxRuntime } from './neuronx-runtime';
import { CONTRACT } from './private/contract';
import { placeInferenceCode } from './private/inference-code';
import { suppressWildcardFindings, wildcardFindings } from './private/nag-finding';
import { folderPrefix, grantPrefix } from './private/s3-prefix';
import { DEFAULT_N_POSITIONS, ResolvedCompileOptions } from './private/sizing';

/** Options for compiled artifacts already in S3. */
export interface TransformersNeuronxSageMakerInferenceModelDataBucketOptions {
  /** The model the artifacts were compiled from (its size and architecture size the endpoint). */
  readonly model: Model;
  /**
   * What the artifacts were compiled with, whole: e.g. a NeuronxCompile's `compileOptions`, or the `CompileOptions` it
   * was given with `tpDegree` set. A separate field given as well (`tpDegree`, `nPositions`, ...) takes precedence.
   *
   * @default - the separate fields
   */
  readonly compileOptions?: CompileOptions;
  /**
   * The tensor-parallel degree the artifacts were compiled with.
   *
   * @default - `compileOptions.tpDegree`: one of the two must be given
   */
  readonly tpDegree?: number;
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
   * Whether the artifacts were compiled for continuous batching (`CompileOptions.continuousBatching`): then
   * `batchSize` is the number of slots, and the code placement also writes the model server's continuous-batching
   * configuration under the prefix (`MAR-INF/MANIFEST.json`, naming `code/<hash>/model-config.yaml`). Must match the artifacts:
   * the handler refuses to load otherwise.
   *
   * @default false
   */
  readonly continuousBatching?: boolean;
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
   * A local directory whose files are placed under `<prefix>code/<hash>/` as the inference code (files only, no
   * subdirectories; `hash` is the content hash of everything placed, so another code never overwrites them). Its
   * `inference.py` must define the TorchServe entry `def handle(data, context)` at the top level: the endpoint has
   * TorchServe call it directly (through the library's entry `code/neuronx_code_<hash>.py`), not the toolkit's
   * model_fn/input_fn/predict_fn/output_fn. Synth checks the file's text for a line starting with `def handle(`.
   * Start from the library's `runtime/inference/inference.py`.
   *
   * The library's `neuronx_common.py` (the contract loader and the model-building arguments, shared with the
   * compile job), its handler's modules (every `neuronx_*.py` of the library's `runtime/inference`: the request
   * contract, the OpenAI format, the chat prompt, the answer, the scheduler, admission and loading) and
   * `contract.json` are always placed beside these files, so the library's handler and one started from it find
   * what they import; the directory must not have files of those names, nor a `model-config.yaml` (synth fails).
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
  /**
   * What the artifacts were compiled with, whole: every `CompileOptions` field the model data knows, with the defaults
   * applied. The endpoint reads the options from here; the separate fields below hold the same values.
   *
   * @default - the separate fields (`tpDegree`, `nPositions`, `batchSize`, `quantDtype`, `continuousBatching`)
   */
  readonly compileOptions?: CompileOptions;
  /** Tensor-parallel degree compiled for. */
  readonly tpDegree: number;
  /** Positions compiled for. */
  readonly nPositions: number;
  /** Batch size compiled for (with continuous batching, the slots). */
  readonly batchSize: number;
  /**
   * Compiled for continuous batching (`batchSize` slots, scheduled at the decoding step).
   *
   * @default false
   */
  readonly continuousBatching?: boolean;
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
  /**
   * The content hash of the inference code placed under the prefix: its files are in `code/<codeHash>/` and its entry
   * is `code/neuronx_code_<codeHash>.py` (TorchServe calls `neuronx_code_<codeHash>:handle`). Other codes served from
   * the same prefix (other deploys, other library versions) are in folders of their own, so the model serves exactly
   * this code on every instance it starts.
   *
   * @default - the code is directly in `code/`: TorchServe calls `inference:handle`, the /ping plugin is `code/readiness-ping.jar`
   */
  readonly codeHash?: string;
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
   * @param code a local directory whose files (no subdirectories) are placed under `<prefix>code/<hash>/`, beside the
   * library's `neuronx_common.py`, handler modules and `contract.json` (it must not have files of those names); its `inference.py`
   * must define `def handle(data, context)` at the top level (see `TransformersNeuronxSageMakerInferenceModelDataBucketOptions.code`);
   * default: the library's handler
   */
  public static fromNeuronxCompile(compile: NeuronxCompile, code?: string): TransformersNeuronxSageMakerInferenceModelData {
    return new PrefixModelData({
      bucket: compile.bucket,
      prefix: compile.compiledArtifactS3Prefix,
      model: compile.model,
      options: compiledWith(compile.compileOptions, {}),
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
      model: options.model,
      runtime: options.runtime,
      compiledFor: options.compiledFor,
      code: options.code,
      bucket,
      prefix: folderPrefix('TransformersNeuronxSageMakerInferenceModelData.fromBucket', prefix),
      options: compiledWith(options.compileOptions ?? {}, options),
    });
  }

  /** Grants `grantable` read access to the model data and returns what the endpoint needs. */
  public abstract bind(scope: Construct, grantable: iam.IGrantable): TransformersNeuronxSageMakerInferenceModelDataConfig;
}

/**
 * The options whole, with the separate fields of `fields` that are given over them, and the defaults applied for
 * those the endpoint needs.
 */
function compiledWith(options: CompileOptions, fields: CompileOptions): ResolvedCompileOptions {
  const merged: CompileOptions = {
    ...options,
    ...Object.fromEntries(Object.entries(fields).filter(([key, value]) => value !== undefined && key in COMPILE_OPTION_FIELDS)),
  };
  if (merged.tpDegree === undefined) {
    throw new Error('TransformersNeuronxSageMakerInferenceModelData.fromBucket: give tpDegree, or compileOptions with tpDegree: the tensor-parallel degree the artifacts were compiled with.');
  }
  return {
    ...merged,
    tpDegree: merged.tpDegree,
    nPositions: merged.nPositions ?? DEFAULT_N_POSITIONS,
    batchSize: merged.batchSize ?? CONTRACT.defaults.batchSize,
    continuousBatching: merged.continuousBatching ?? false,
  };
}

/** The separate fields of the bucket options that are compile options (the others are not taken from them). */
const COMPILE_OPTION_FIELDS: Record<keyof Omit<TransformersNeuronxSageMakerInferenceModelDataBucketOptions, 'model' | 'runtime' | 'compiledFor' | 'code' | 'compileOptions'>, true> = {
  tpDegree: true, nPositions: true, quantDtype: true, batchSize: true, continuousBatching: true,
};

interface PrefixModelDataProps {
  readonly bucket: s3.IBucket;
  readonly prefix: string;
  readonly model: Model;
  /** What the artifacts were compiled with, whole. */
  readonly options: ResolvedCompileOptions;
  readonly runtime?: NeuronxRuntime;
  readonly compiledFor?: NeuronxInstanceType;
  readonly code?: string;
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
    const options = this.props.options;
    const { batchSize } = options;
    const continuousBatching = options.continuousBatching ?? false;
    const code = placeInferenceCode(scope, bucket, prefix, {
      codeDir: this.props.code,
      compile: this.props.compile,
      continuousBatchingSlots: continuousBatching ? batchSize : undefined,
    });
    return {
      s3Uri: bucket.s3UrlForObject(prefix),
      runtime: this.props.runtime ?? NeuronxRuntime.DEFAULT,
      model: this.props.model,
      compileOptions: { ...options },
      tpDegree: options.tpDegree,
      nPositions: options.nPositions,
      batchSize,
      continuousBatching,
      quantDtype: options.quantDtype,
      compiledFor: this.props.compiledFor,
      dependencies: [code.resource, ...(this.props.compile ? [this.props.compile] : [])],
      codeHash: code.hash,
      // A code change must replace the SageMaker model, or the endpoint would keep serving the old code.
      environment: { NEURONX_CODE_HASH: code.hash },
    };
  }
}
