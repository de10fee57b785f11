import { Annotations, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { compileEnv } from './private/contract';
import { throwIfProblems } from './private/problems';
import { folderPrefix, grantPrefix } from './private/s3-prefix';

/**
 * The shape of a decoder model, as in its Hugging Face `config.json`. With it the library checks tensor
 * parallelism against the attention heads and sizes the KV cache; without it, only the weights are checked.
 */
export interface ModelArchitecture {
  /**
   * `model_type`. The compile job builds transformers-neuronx's `LlamaForSampling` only, so only Llama-architecture
   * models (`model_type` 'llama', e.g. `LlamaForCausalLM`) compile; any other value fails at synth.
   *
   * @default - not checked at synth (a warning); the compile job checks config.json before it downloads the weights
   */
  readonly modelType?: string;
  /** `num_hidden_layers`. */
  readonly numLayers: number;
  /** `hidden_size`. */
  readonly hiddenSize: number;
  /** `num_attention_heads`. */
  readonly numAttentionHeads: number;
  /**
   * `num_key_value_heads`.
   *
   * @default - the same as numAttentionHeads (no grouped-query attention)
   */
  readonly numKeyValueHeads?: number;
  /**
   * `max_position_embeddings`.
   *
   * @default - nPositions is not checked against the model
   */
  readonly maxPositionEmbeddings?: number;
}

/** Options common to every model source. */
export interface ModelOptions {
  /**
   * Number of parameters, e.g. `22.5e9`.
   *
   * @default - read from the model id (`22b`, `8B`, `1.5b`); an error if the id does not say
   */
  readonly parameterCount?: number;

  /**
   * The model's architecture, for the tensor-parallel and KV-cache checks.
   *
   * @default - only the weights are checked against accelerator and host memory
   */
  readonly architecture?: ModelArchitecture;
}

/** Options for a model on the Hugging Face Hub. */
export interface HuggingFaceModelOptions extends ModelOptions {
  /**
   * The revision to download: a commit hash pins the weights.
   *
   * @default 'main' (a branch: the deployment is not reproducible, and synth warns)
   */
  readonly revision?: string;

  /**
   * A Secrets Manager secret holding a Hugging Face access token, for gated models. The secret string is the token,
   * or JSON with a `token` key. The compile job reads it at run time; it is never in the template or the logs.
   *
   * @default - no token (public models)
   */
  readonly tokenSecret?: secretsmanager.ISecret;
}

/** Options for model weights already in S3. */
export interface BucketModelOptions extends ModelOptions {
  /**
   * A name for the weights, recorded in the compile manifest and part of the artifact prefix. Required when the
   * bucket prefix is a token (e.g. a CfnParameter): the artifact prefix must be known at synth.
   *
   * @default - the bucket prefix, without its trailing '/'
   */
  readonly modelId?: string;

  /**
   * A label for this version of the weights; part of the artifact prefix, so change it when the weights change.
   *
   * @default 'unversioned'
   */
  readonly revision?: string;
}

/** What a model contributes to the compile job. */
export interface ModelBindConfig {
  /** Environment variables for the compile job. */
  readonly environment: { [name: string]: string };
}

const DEFAULT_REVISION = 'main';
// The one model_type the compile job builds: it loads every model with transformers-neuronx's
// `transformers_neuronx.llama.model.LlamaForSampling` (runtime/compile), which reads a Llama config
// (transformers' LlamaConfig, model_type 'llama').
const COMPILABLE_MODEL_TYPE = 'llama';
const HF_MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
// `22b`, `8B`, `1.5b`, `350m` as a word of the model name (between separators).
const PARAMETER_COUNT_IN_ID = /(?:^|[-_.])(\d+(?:\.\d+)?)([bBmM])(?=$|[-_.])/;

/**
 * A model to compile: its weights and the facts the library sizes it by.
 */
export abstract class Model {
  /**
   * A model on the Hugging Face Hub, e.g. `cyberagent/calm3-22b-chat`.
   */
  public static fromHuggingFace(modelId: string, options: HuggingFaceModelOptions = {}): Model {
    if (!HF_MODEL_ID.test(modelId)) {
      throw new Error(`Model.fromHuggingFace: modelId '${modelId}' is not a Hugging Face model id: use 'owner/name', e.g. 'cyberagent/calm3-22b-chat'.`);
    }
    return new HuggingFaceModel(modelId, options);
  }

  /**
   * Weights in Hugging Face format (config.json, tokenizer, safetensors) under an S3 prefix.
   *
   * The prefix is a folder: a '/' is added when it has none. It may be a token (e.g. a CfnParameter) only when
   * `modelId` is given, since the model id names the compiled artifacts and must be known at synth.
   *
   * @param bucket the bucket holding the weights
   * @param prefix the folder of the weights in the bucket, e.g. `models/calm3-22b-chat/`
   * @param options the model's size, architecture, name and version
   */
  public static fromBucket(bucket: s3.IBucket, prefix: string, options: BucketModelOptions = {}): Model {
    if (Token.isUnresolved(prefix) && options.modelId === undefined) {
      throw new Error(`Model.fromBucket: prefix is a token (${prefix}), known only at deploy time, and modelId is not set: `
        + 'the model id names the compiled artifacts and must be known at synth. Set modelId, e.g. \'my-org/llama-8b\', '
        + 'or pass the prefix as a plain string.');
    }
    return new BucketModel(bucket, folderPrefix('Model.fromBucket', prefix), options);
  }

  /** Identifies the weights (a Hugging Face id, or a name for weights in S3). */
  public readonly modelId: string;
  /** The version of the weights. */
  public readonly revision: string;
  /** Number of parameters. */
  public readonly parameterCount: number;
  /**
   * The architecture.
   *
   * @default - not known: only the weights are checked against accelerator and host memory
   */
  public readonly architecture?: ModelArchitecture;

  /**
   * For subclasses; use `Model.fromHuggingFace` or `Model.fromBucket`.
   *
   * @param modelId identifies the weights (a Hugging Face id, or a name for weights in S3). A plain string, not a token.
   * @param revision the version of the weights. A plain string, not a token.
   * @param options the parameter count and architecture
   */
  protected constructor(modelId: string, revision: string, options: ModelOptions) {
    // Both are hashed into the artifact prefix, which must be the same on every synth of the same inputs.
    for (const [prop, value] of [['modelId', modelId], ['revision', revision]]) {
      if (Token.isUnresolved(value)) {
        throw new Error(`Model: ${prop} is a token (${value}), known only at deploy time: it names the compiled artifacts and must be known at synth; give it as a plain string.`);
      }
    }
    this.modelId = modelId;
    this.revision = revision;
    this.architecture = options.architecture;
    this.parameterCount = options.parameterCount ?? parameterCountFromId(modelId);
    const problems = [];
    if (!(this.parameterCount > 0)) {
      problems.push(`parameterCount is ${this.parameterCount}: give the number of parameters, e.g. 22.5e9.`);
    }
    const modelType = options.architecture?.modelType;
    if (modelType !== undefined && modelType !== COMPILABLE_MODEL_TYPE) {
      problems.push(`architecture.modelType is '${modelType}': the compile builds transformers-neuronx's LlamaForSampling, so only `
        + `Llama-architecture models (config.json model_type '${COMPILABLE_MODEL_TYPE}') compile; choose a Llama-architecture model.`);
    }
    throwIfProblems(`Model '${modelId}'`, problems);
  }

  /** Grants the compile job what it needs to read the weights, and returns its configuration. */
  public abstract bind(scope: Construct, grantable: iam.IGrantable): ModelBindConfig;

  /** Warns at `scope` when nothing said the model is a Llama architecture, the only one that compiles. */
  protected warnIfModelTypeUnknown(scope: Construct): void {
    if (this.architecture?.modelType === undefined) {
      Annotations.of(scope).addWarningV2('aws-cdk-neuronx-patterns:modelTypeUnknown',
        `Model '${this.modelId}' does not say its architecture.modelType: only Llama-architecture models (config.json model_type `
        + `'${COMPILABLE_MODEL_TYPE}') compile, and the compile job fails on any other before downloading the weights. `
        + 'Set architecture.modelType from the model\'s config.json to check it at synth.');
    }
  }
}

function parameterCountFromId(modelId: string): number {
  const name = modelId.split('/').pop() ?? modelId;
  const match = PARAMETER_COUNT_IN_ID.exec(name);
  if (!match) {
    throw new Error(`Model '${modelId}': the parameter count cannot be read from the id (no '22b', '8B' or '1.5b' in it): set parameterCount, e.g. 7e9.`);
  }
  const unit = match[2].toLowerCase() === 'b' ? 1e9 : 1e6;
  return Number(match[1]) * unit;
}

class HuggingFaceModel extends Model {
  private readonly tokenSecret?: secretsmanager.ISecret;

  constructor(modelId: string, options: HuggingFaceModelOptions) {
    super(modelId, options.revision ?? DEFAULT_REVISION, options);
    this.tokenSecret = options.tokenSecret;
  }

  public bind(scope: Construct, grantable: iam.IGrantable): ModelBindConfig {
    this.warnIfModelTypeUnknown(scope);
    if (this.revision === DEFAULT_REVISION) {
      Annotations.of(scope).addWarningV2('aws-cdk-neuronx-patterns:unpinnedRevision',
        `Model '${this.modelId}' uses revision '${DEFAULT_REVISION}', a branch: a later deploy may compile different weights. Pin a commit hash with the 'revision' option.`);
    }
    const environment: { [name: string]: string } = {
      [compileEnv('modelId')]: this.modelId,
      [compileEnv('modelRevision')]: this.revision,
    };
    if (this.tokenSecret) {
      this.tokenSecret.grantRead(grantable);
      environment[compileEnv('hfTokenSecretArn')] = this.tokenSecret.secretArn;
    }
    return { environment };
  }
}

class BucketModel extends Model {
  private readonly prefix: string;

  constructor(private readonly bucket: s3.IBucket, prefix: string, options: BucketModelOptions) {
    super(options.modelId ?? prefix.replace(/\/$/, ''), options.revision ?? 'unversioned', options);
    this.prefix = prefix;
  }

  public bind(scope: Construct, grantable: iam.IGrantable): ModelBindConfig {
    this.warnIfModelTypeUnknown(scope);
    // Objects under the prefix, listing limited to it: not bucket.grantRead, which lists the whole bucket.
    grantPrefix(this.bucket, this.prefix, grantable, 'read');
    return {
      environment: {
        [compileEnv('modelId')]: this.modelId,
        [compileEnv('modelRevision')]: this.revision,
        [compileEnv('modelS3Uri')]: this.bucket.s3UrlForObject(this.prefix),
      },
    };
  }
}
