"""What the compile job and the inference handler share: the contract and how the model is built.

It ships beside each program: in the compile code zip as compile/neuronx_common.py (beside compile_job.py), and
in the endpoint's code/<hash>/ beside inference.py. contract.json is beside it (code/<hash>/) or one folder up (the zip and
this repository). Only the standard library at import time: both programs import it before anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

HERE = Path(__file__).resolve().parent


def load_contract() -> dict[str, Any]:
    """contract.json beside this file (the endpoint's code/<hash>/) or one level up (the code zip, the repository)."""
    for candidate in (HERE / "contract.json", HERE.parent / "contract.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise FileNotFoundError(f"contract.json is neither in {HERE} nor in {HERE.parent}")


CONTRACT = load_contract()
LAYOUT = CONTRACT["layout"]
MANIFEST = CONTRACT["manifest"]
QUANT_NONE = CONTRACT["quantDtypeNone"]
COMPILE_OPTIONS = CONTRACT["compileOptions"]
"""The values the constructs may set: optLevels, quantDtypes, compilerTargets."""
OPTION_DEFAULTS = {**CONTRACT["defaults"], "quantDtype": QUANT_NONE}
"""The value of a manifest option whose variable is unset (tpDegree and nPositions have none)."""


def installed_versions(packages: Sequence[str]) -> dict[str, str | None]:
    """The installed version of each distribution (None when it is not installed)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def compiled_batch_sizes(batch_size: int) -> list[int]:
    """The batch sizes compiled for the option `batchSize` (the most requests one model call generates for): 1,
    and `batch_size` when larger. transformers-neuronx 0.13 compiles a graph for each size of a list
    (LlamaForSampling(batch_size=[...]); decoder.py bucket.batch_sizes) and runs a batch only at a compiled size
    (sample() raises otherwise), so a lone request runs the batch-1 graph, as fast as a batch-1 model, instead
    of padding `batch_size` rows. Each size keeps its own KV cache (decoder.py allocates attn_k_cache and
    attn_v_cache per batch size): the device holds 1 + batch_size caches (the constructs' memory check)."""
    return [1] if batch_size == 1 else [1, batch_size]


CONTINUOUS_BATCHING = "continuousBatching"
"""The manifest option of artifacts compiled for continuous batching (absent: false). It changes the HLO, so
artifacts compiled without it cannot serve step by step, nor the other way round."""


def is_continuous(options: Mapping[str, Any]) -> bool:
    """Whether `options` (a manifest's) are of artifacts compiled for continuous batching: batchSize slots."""
    return bool(options.get(CONTINUOUS_BATCHING))


def llama_from_pretrained_kwargs(options: Mapping[str, Any], neuronx_config: Any) -> dict[str, Any]:
    """LlamaForSampling.from_pretrained's keyword arguments for the manifest `options`.

    The compile job and the handler must build the model with exactly these: any difference changes
    the HLO, hence the hash the NEFFs are found by, and the endpoint would not find its artifacts.
    `neuronx_config` is the transformers_neuronx.config module.
    """
    config: dict[str, Any] = {}
    if options["quantDtype"]:
        config["quant"] = neuronx_config.QuantizationConfig(quant_dtype=options["quantDtype"], dequant_dtype=options["amp"])
    if is_continuous(options):
        # batchSize slots sharing one KV cache (transformers_neuronx/config.py ContinuousBatchingConfig): a context is
        # encoded at batch 1 into the slot start_ids names, every running sequence decodes together.
        config["continuous_batching"] = neuronx_config.ContinuousBatchingConfig(
            batch_size_for_shared_caches=options["batchSize"]
        )
        batch_size: int | list[int] = options["batchSize"]
    else:
        # A batch of 1 stays the plain int the library always passed: the same HLO, so the same NEFFs, as before.
        batch_sizes = compiled_batch_sizes(options["batchSize"])
        batch_size = batch_sizes if len(batch_sizes) > 1 else batch_sizes[0]
    neuron_config = neuronx_config.NeuronConfig(**config) if config else None
    return {
        "batch_size": batch_size,
        "tp_degree": options["tpDegree"],
        "n_positions": options["nPositions"],
        "amp": options["amp"],
        "neuron_config": neuron_config,
    }
