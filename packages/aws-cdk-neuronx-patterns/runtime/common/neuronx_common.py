"""What the compile job and the inference handler share: the contract and how the model is built.

It ships beside each program: in the compile code zip as compile/neuronx_common.py (beside compile_job.py), and
in the endpoint's code/ beside inference.py. contract.json is beside it (code/) or one folder up (the zip and
this repository). Only the standard library at import time: both programs import it before anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

HERE = Path(__file__).resolve().parent


def load_contract() -> dict[str, Any]:
    """contract.json beside this file (the endpoint's code/) or one level up (the code zip, the repository)."""
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


def llama_from_pretrained_kwargs(options: Mapping[str, Any], neuronx_config: Any) -> dict[str, Any]:
    """LlamaForSampling.from_pretrained's keyword arguments for the manifest `options`.

    The compile job and the handler must build the model with exactly these: any difference changes
    the HLO, hence the hash the NEFFs are found by, and the endpoint would not find its artifacts.
    `neuronx_config` is the transformers_neuronx.config module.
    """
    neuron_config = None
    if options["quantDtype"]:
        neuron_config = neuronx_config.NeuronConfig(
            quant=neuronx_config.QuantizationConfig(quant_dtype=options["quantDtype"], dequant_dtype=options["amp"])
        )
    return {
        "batch_size": options["batchSize"],
        "tp_degree": options["tpDegree"],
        "n_positions": options["nPositions"],
        "amp": options["amp"],
        "neuron_config": neuron_config,
    }
