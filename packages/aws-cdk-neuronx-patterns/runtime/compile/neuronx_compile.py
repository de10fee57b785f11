"""The compile job's only contact with transformers-neuronx and the Neuron compiler.

`compile_checkpoint` imports transformers-neuronx (and with it torch) when it is called, so the
orchestration in compile_job.py imports and tests without the Neuron SDK.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

# The endpoint's handler owns how the model is built and which Neuron packages it records: the compile job uses
# the handler's own functions (inference.py ships beside compile/ in the compile code zip, as in the endpoint's code/),
# so the from_pretrained arguments, and with them the HLO hash the NEFFs are found by, cannot drift apart.
_INFERENCE_DIR = str(Path(__file__).resolve().parent.parent / "inference")
if _INFERENCE_DIR not in sys.path:
    sys.path.append(_INFERENCE_DIR)
from inference import installed_versions, llama_from_pretrained_kwargs  # noqa: E402  (needs the path above)


NEURON_CC_FLAGS = "NEURON_CC_FLAGS"
"""Environment variable transformers-neuronx passes on to neuronx-cc."""

COMPILER_TARGETS = ("inf2", "trn1")
"""neuronx-cc `--target` values of the instance families this library serves on."""

OPT_LEVELS = (1, 2, 3)
"""neuronx-cc `-O` levels (2 is the compiler's default)."""

_FLAGS_WITH_VALUE = ("--target", "--optlevel", "-O")
_ATTACHED_FLAG = re.compile(r"(--target=|--optlevel=|-O).+")


def neuron_cc_flags(existing: str, target: str, opt_level: int) -> str:
    """NEURON_CC_FLAGS with our target and opt level, keeping every other flag of `existing`.

    A target or opt level already in `existing` (`--target=trn1`, `--target trn1`, `-O1`, `-O 1`,
    `--optlevel=1`, `--optlevel 1`) is replaced: the artifacts must be built for the serving family.
    """
    kept: list[str] = []
    tokens = iter(shlex.split(existing))
    for token in tokens:
        if token in _FLAGS_WITH_VALUE:
            next(tokens, None)
        elif not _ATTACHED_FLAG.fullmatch(token):
            kept.append(token)
    return shlex.join([*kept, f"--target={target}", f"-O{opt_level}"])


def compile_checkpoint(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> None:
    """Compiles the Hugging Face Llama checkpoint and saves the NEFFs to `compiled_dir`.

    `options` holds the contract's manifest option keys. neuronx-cc reads its target and opt level
    from NEURON_CC_FLAGS, which the caller sets. The inference handler builds the model with the
    same arguments (llama_from_pretrained_kwargs) before loading these artifacts.
    """
    import transformers_neuronx.config as neuronx_config
    from transformers_neuronx.llama.model import LlamaForSampling

    model = LlamaForSampling.from_pretrained(
        str(checkpoint_dir), **llama_from_pretrained_kwargs(options, neuronx_config)
    )
    model.to_neuron()
    model.save(str(compiled_dir))
