import { CompileOptions, Model, NeuronxCompile, NeuronxInstanceType, OptLevel, QuantDtype } from 'aws-cdk-neuronx-patterns';
import { ARCHITECTURE, MODEL_ID, PARAMETER_COUNT, PINNED_REVISION } from './model-facts';

/**
 * Which instance serves calm3-22b-chat, which instance compiles it, and how it is compiled.
 *
 * Use a preset (`InstanceTypeStrategy.lowCost`, `InstanceTypeStrategy.highPerformance`) or build your own. A custom
 * strategy is checked against the model when `SageMakerRealtimeInference` uses it: the tensor-parallel degree must
 * divide the model's 48 attention heads, the weights plus the KV cache must fit the NeuronCores one worker gets,
 * and the compile instance must hold the checkpoint in host memory. `cdk synth` fails with a message naming the
 * strategy field, its value and one that works.
 */
export class InstanceTypeStrategy {
  /**
   * In order to reduce costs, 8-bit quantization and number of positions are adjusted at 1024, so that the accelerator device is operated as one.
   *
   * Since inf2.xlarge does not have enough host memory, trn1.2xlarge is used.
   *
   * Continuous batching over 6 slots: the most the device memory left beside the int8 weights holds. The one
   * worker's two NeuronCores offer 28.8 GiB (90% of 32 GiB); the weights take 21.0 GiB; each slot's KV cache for
   * 1024 positions takes 1.125 GiB (2 x 48 layers x 48 KV heads x 128 x 2 bytes x 1024): 6 slots, 27.7 GiB. A
   * request takes a free slot at the next decoding step and leaves when its answer ends.
   */
  public static readonly lowCost: InstanceTypeStrategy = new InstanceTypeStrategy(
    NeuronxInstanceType.TRN1_2XLARGE,
    NeuronxInstanceType.INF2_8XLARGE,
    { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, optLevel: OptLevel.BEST_EXECUTION, batchSize: 6, continuousBatching: true },
  );

  /**
   * bf16 weights and 4096 positions, one worker over all 12 NeuronCores, continuous batching over 8 slots.
   *
   * One worker, because the serving image's TorchServe (0.11.0) stalls continuous batching with more than one worker
   * per model. Over 12 NeuronCores each core holds a third of the weights that one of three workers of 4 would, and
   * a decoding step reads every weight once, so by the library's step estimate (calibrated on a 22 B model over 12
   * NeuronCores: README, benchmark) a lone request generates about three times as fast, and the instance's throughput
   * at batch 1 is what three workers gave (tpDegree 12 divides the 48 attention heads). The worker's NeuronCores offer 172.8 GiB (90% of 192 GiB);
   * the weights take 41.9 GiB and each slot's KV cache for 4096 positions 4.5 GiB: 8 slots take 77.9 GiB. More slots
   * would fit, but every decoding step computes all of them: 8 keep a step under twice a lone request's.
   */
  public static readonly highPerformance: InstanceTypeStrategy = new InstanceTypeStrategy(
    NeuronxInstanceType.INF2_24XLARGE,
    NeuronxInstanceType.INF2_24XLARGE,
    { tpDegree: 12, optLevel: OptLevel.BEST_EXECUTION, batchSize: 8, continuousBatching: true },
  );

  /** The SageMaker instance type the endpoint serves on; the compiler targets its family. */
  public readonly instanceType: NeuronxInstanceType;
  /** The EC2 instance type the AWS Batch compile job runs on. */
  public readonly instanceTypeForCompile: NeuronxInstanceType;
  /**
   * Tensor-parallel degree: the NeuronCores one worker (model copy) is sharded over.
   *
   * @default - all NeuronCores of the serving instance
   */
  public readonly tpDegree?: number;
  /**
   * Maximum sequence length (prompt plus generated tokens) the compiled model serves.
   *
   * @default 4096
   */
  public readonly nPositions?: number;
  /**
   * Weight storage type.
   *
   * @default - bf16 weights, no quantization
   */
  public readonly quantDtype?: QuantDtype;
  /**
   * Compiler optimization level.
   *
   * @default OptLevel.BEST_BALANCE
   */
  public readonly optLevel?: OptLevel;
  /**
   * The most requests one worker generates for at once (TorchServe batches requests that arrive together); with
   * continuous batching, the slots.
   *
   * @default 1
   */
  public readonly batchSize?: number;
  /**
   * Whether the model is compiled and served for continuous batching (`CompileOptions.continuousBatching`).
   *
   * @default false
   */
  public readonly continuousBatching?: boolean;

  /**
   * How the model is compiled: the options as given, carried whole to the compile (an option added to
   * `CompileOptions` needs no change here). The fields above are read-only copies of some of them.
   */
  public readonly compileOptions: CompileOptions;

  /**
   * @param instanceType the SageMaker instance type to serve on
   * @param instanceTypeForCompile the EC2 instance type to compile on: it needs host memory for the bf16 checkpoint
   * (plus the int8 copy when quantizing) and at least `tpDegree` NeuronCores
   * @param options how to compile
   */
  constructor(instanceType: NeuronxInstanceType, instanceTypeForCompile: NeuronxInstanceType, options: CompileOptions) {
    // Checked against calm3 here, where a custom strategy is written, with the names of this constructor.
    const problems = NeuronxCompile.configurationProblems({
      model: Model.fromHuggingFace(MODEL_ID, { revision: PINNED_REVISION, parameterCount: PARAMETER_COUNT, architecture: ARCHITECTURE }),
      servingInstanceType: instanceType,
      compileInstanceType: instanceTypeForCompile,
      compileOptions: options,
    }, { compileOptions: 'options', compileInstanceType: 'instanceTypeForCompile' });
    if (problems.length > 0) {
      throw new Error(
        `InstanceTypeStrategy(${instanceType}, ${instanceTypeForCompile.instanceTypeName}) cannot serve ${MODEL_ID} `
        + `(${ARCHITECTURE.numAttentionHeads} attention heads, ${PARAMETER_COUNT / 1e9}B parameters):\n- ${problems.join('\n- ')}\n`
        + 'InstanceTypeStrategy.lowCost and InstanceTypeStrategy.highPerformance pass these checks.',
      );
    }
    this.instanceType = instanceType;
    this.instanceTypeForCompile = instanceTypeForCompile;
    this.tpDegree = options.tpDegree;
    this.nPositions = options.nPositions;
    this.quantDtype = options.quantDtype;
    this.optLevel = options.optLevel;
    this.batchSize = options.batchSize;
    this.continuousBatching = options.continuousBatching;
    this.compileOptions = { ...options };
  }

  /** @internal the compile options this strategy stands for. */
  public _compileOptions(): CompileOptions {
    return { ...this.compileOptions };
  }
}
