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
   * Batches of up to 5 requests: the most the device memory left beside the int8 weights holds. One worker's two
   * NeuronCores offer 28.8 GiB (90% of 32 GiB); the weights take 21.0 GiB; each KV cache for 1024 positions takes
   * 1.125 GiB (2 x 48 layers x 48 KV heads x 128 x 2 bytes x 1024), and batch 5 keeps 6 of them (batch 1 is compiled
   * too): 27.7 GiB. Batch 6 would need 28.8 GiB plus 0.03.
   */
  public static readonly lowCost: InstanceTypeStrategy = new InstanceTypeStrategy(
    NeuronxInstanceType.TRN1_2XLARGE,
    NeuronxInstanceType.INF2_8XLARGE,
    { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, optLevel: OptLevel.BEST_EXECUTION, batchSize: 5 },
  );

  /**
   * Set as default as much as possible and use 2 accelerator devices per worker.
   *
   * Batches of up to 2 requests: the most the device memory left beside the bf16 weights holds at 4096 positions.
   * One worker's four NeuronCores offer 57.6 GiB (90% of 64 GiB); the weights take 41.9 GiB; each KV cache for 4096
   * positions takes 4.5 GiB, and batch 2 keeps 3 of them (batch 1 is compiled too): 55.4 GiB.
   */
  public static readonly highPerformance: InstanceTypeStrategy = new InstanceTypeStrategy(
    NeuronxInstanceType.INF2_24XLARGE,
    NeuronxInstanceType.INF2_24XLARGE,
    { tpDegree: 4, optLevel: OptLevel.BEST_EXECUTION, batchSize: 2 },
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
   * The most requests one worker generates for at once (TorchServe batches requests that arrive together).
   *
   * @default 1
   */
  public readonly batchSize?: number;

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
  }

  /** @internal the compile options this strategy stands for. */
  public _compileOptions(): CompileOptions {
    return { tpDegree: this.tpDegree, nPositions: this.nPositions, quantDtype: this.quantDtype, optLevel: this.optLevel, batchSize: this.batchSize };
  }
}
