import { ModelArchitecture } from 'aws-cdk-neuronx-patterns';

/**
 * What the library knows about cyberagent/calm3-22b-chat, stated once. Every figure names its source.
 *
 * - Model card: https://huggingface.co/cyberagent/calm3-22b-chat (model size 22B, context length 16384,
 *   Apache-2.0, ChatML prompt format).
 * - config.json of the pinned revision: `LlamaForCausalLM` (`model_type` llama), `hidden_size` 6144, `num_hidden_layers` 48,
 *   `num_attention_heads` 48, `num_key_value_heads` 48, `max_position_embeddings` 16384, `torch_dtype` bfloat16.
 */

/** The Hugging Face model id. */
export const MODEL_ID = 'cyberagent/calm3-22b-chat';

/**
 * The revision the library compiles unless told otherwise: commit `055922aa0f0fb1fbfbc97a2e31134532485ee99b`
 * ("Update README.md", 1 July 2024), the head of `main` and the last of the repository's five commits. It holds
 * the weights (commit 13e5966, "Upload LlamaForCausalLM") and the tokenizer (commit afc8ce3, "Upload tokenizer").
 * Source: https://huggingface.co/cyberagent/calm3-22b-chat/commit/055922aa0f0fb1fbfbc97a2e31134532485ee99b
 * and the repository's commit history. Override with `SageMakerRealtimeInferenceProps.revision`.
 */
export const PINNED_REVISION = '055922aa0f0fb1fbfbc97a2e31134532485ee99b';

/**
 * Number of parameters: about 22.5 billion (bf16 safetensors of about 45 GB at 2 bytes a parameter; the model
 * card says 22B). The id's `22b` would undercount the weights by 0.5 B, so it is given explicitly.
 */
export const PARAMETER_COUNT = 22.5e9;

/** The architecture from config.json, for the tensor-parallel and KV-cache checks. */
export const ARCHITECTURE: ModelArchitecture = {
  modelType: 'llama', // model_type (architectures: LlamaForCausalLM): the architecture the compile builds
  numLayers: 48, // num_hidden_layers
  hiddenSize: 6144, // hidden_size
  numAttentionHeads: 48, // num_attention_heads
  numKeyValueHeads: 48, // num_key_value_heads: no grouped-query attention
  maxPositionEmbeddings: 16384, // max_position_embeddings
};
