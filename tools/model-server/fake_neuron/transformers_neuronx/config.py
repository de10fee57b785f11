"""transformers_neuronx.config: the two classes the handler builds, with the real keyword arguments and checks."""

QUANT_DTYPES = ("s8", "f8e4m3fn")  # QuantizationConfig's QUANT_DTYPE_LIST
QUANTIZE_METHODS = ("vector_dynamic", "direct_cast")  # its QUANTIZE_METHOD_LIST


class QuantizationConfig:
    def __init__(self, quant_dtype="s8", dequant_dtype="f16", quantize_method="vector_dynamic",
                 quantize_attn=True, no_quantize_list=()):
        if quant_dtype not in QUANT_DTYPES:
            raise NotImplementedError(
                f"{quant_dtype} is not implemented. Available options are {','.join(QUANT_DTYPES)}"
            )
        if quantize_method not in QUANTIZE_METHODS:
            raise NotImplementedError(
                f"{quantize_method} is not implemented. Available options are {','.join(QUANTIZE_METHODS)}"
            )
        self.quant_dtype = quant_dtype
        self.dequant_dtype = dequant_dtype
        self.quantize_method = quantize_method
        self.quantize_attn = quantize_attn
        self.no_quantize_list = list(no_quantize_list)


class NeuronConfig:
    """Keyword-only, as the real one; the options the fake does not model are kept, not used."""

    def __init__(self, *, quant=None, continuous_batching=None, compilation_worker_count=None, **options):
        if quant is not None and not isinstance(quant, QuantizationConfig):
            raise TypeError(f"quant must be a QuantizationConfig, got {type(quant).__name__}")
        self.quant = quant
        self.continuous_batching = continuous_batching
        self.compilation_worker_count = compilation_worker_count
        self.options = options


class ContinuousBatchingConfig:
    """transformers_neuronx/config.py's: how many sequences share the KV cache (the slots), keyword-only."""

    def __init__(self, *, batch_size_for_shared_caches, **options):
        if not isinstance(batch_size_for_shared_caches, int) or batch_size_for_shared_caches < 1:
            raise ValueError(f"batch_size_for_shared_caches must be an int >= 1, got {batch_size_for_shared_caches!r}")
        self.batch_size_for_shared_caches = batch_size_for_shared_caches
        self.options = options
