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
   */
  public static readonly lowCost: InstanceTypeStrategy = new InstanceTypeStrategy(
    NeuronxInstanceType.TRN1_2XLARGE,
    NeuronxInstanceType.INF2_8XLARGE,
    { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, optLevel: OptLevel.BEST_EXECUTION },
  );

  /**
   * Set as default as much as possible and use 2 accelerator devices per worker.
   */
  public static readonly highPerformance: InstanceTypeStrategy = new InstanceTypeStrategy(
    NeuronxInstanceType.INF2_24XLARGE,
    NeuronxInstanceType.INF2_24XLARGE,
    { tpDegree: 4, optLevel: OptLevel.BEST_EXECUTION },
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
  }

  /** @internal the compile options this strategy stands for. */
  public _compileOptions(): CompileOptions {
    return { tpDegree: this.tpDegree, nPositions: this.nPositions, quantDtype: this.quantDtype, optLevel: this.optLevel };
  }
}
