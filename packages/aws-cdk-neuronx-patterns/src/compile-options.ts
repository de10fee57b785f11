/**
 * Neuron compiler optimization level (`neuronx-cc -O`).
 *
 * Each value is one of the levels the compile job accepts (`compileOptions.optLevels` in the runtime's contract.json).
 */
export enum OptLevel {
  /** `-O1`: minimizes compile time. */
  MINIMIZE_COMPILE_TIME = 'MINIMIZE_COMPILE_TIME',
  /** `-O2`: the compiler's default, a balance of compile time and performance. */
  BEST_BALANCE = 'BEST_BALANCE',
  /** `-O3`: best execution performance, longest compile. */
  BEST_EXECUTION = 'BEST_EXECUTION',
}

/**
 * Data type the model weights are stored in on the accelerator.
 *
 * Each value is one of the types the compile job accepts (`compileOptions.quantDtypes` in the runtime's contract.json);
 * no value (bf16) is the contract's `quantDtypeNone`.
 */
export enum QuantDtype {
  /** int8 weight storage (weight-only quantization, computed in bf16): about half the bytes of bf16. */
  S8 = 'S8',
}

/**
 * How transformers-neuronx compiles a model.
 */
export interface CompileOptions {
  /**
   * Tensor-parallel degree: the NeuronCores one model copy is sharded over.
   *
   * Must divide the model's attention heads, be a degree the Neuron runtime supports on the serving family
   * (inf2: 1 or an even number; trn1: 1, 2, 8, 16 or 32), and not exceed the serving instance's NeuronCores.
   *
   * @default - all NeuronCores of the serving instance
   */
  readonly tpDegree?: number;

  /**
   * Weight storage data type.
   *
   * @default - bf16 weights, no quantization
   */
  readonly quantDtype?: QuantDtype;

  /**
   * Maximum sequence length (prompt plus generated tokens) the compiled model serves.
   *
   * @default 4096
   */
  readonly nPositions?: number;

  /**
   * Compiler optimization level.
   *
   * @default OptLevel.BEST_BALANCE
   */
  readonly optLevel?: OptLevel;

  /**
   * The most requests one model call generates for: TorchServe hands each worker up to this many requests that
   * arrive together, and they are decoded as one batch, which costs little more per step than one request (a step
   * reads every weight once, whatever the batch).
   *
   * Above 1, batch 1 is compiled too (a lone request runs as fast as on a batch-1 model), and each compiled batch
   * size keeps its own KV cache: the weights plus `1 + batchSize` KV caches for `nPositions` must fit the NeuronCores
   * of one worker (synth fails naming `batchSize` otherwise). With `continuousBatching`, the slots: `batchSize` KV
   * caches. Part of what the artifacts are compiled for, so a change compiles again.
   *
   * @default 1
   */
  readonly batchSize?: number;

  /**
   * Compile for continuous batching: `batchSize` becomes the number of slots that share one KV cache, and the
   * endpoint schedules at the decoding step. A request takes a free slot at the next step, and a finished answer
   * leaves at once, so a short answer never waits for a long one in its batch.
   *
   * Without it, batching is static: a batch answers when its longest answer ends, and no request joins a running
   * batch. With it, no separate batch-1 cache is kept, so the weights plus `batchSize` KV caches must fit one
   * worker's NeuronCores. TorchServe 0.11.0 (the serving image's model server) stalls continuous batching with more
   * than one worker per model, so the serving instance must hold exactly one worker (`tpDegree` close to all its
   * NeuronCores), and `batchSize` must be at least 2. Synth fails naming this option otherwise. Part of what the
   * artifacts are compiled for, so a change compiles again.
   *
   * @default false
   */
  readonly continuousBatching?: boolean;
}
