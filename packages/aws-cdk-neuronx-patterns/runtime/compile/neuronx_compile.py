"""The compile job's only contact with transformers-neuronx and the Neuron compiler.

`compile_checkpoint` imports transformers-neuronx (and with it torch) when it is called, so the
orchestration in compile_job.py imports and tests without the Neuron SDK.
"""

from __future__ import annotations

import re
import resource
import shlex
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

# How the model is built is shared with the endpoint's handler (neuronx_common.py ships beside this file in the
# compile code zip and beside inference.py in the endpoint's code/), so the from_pretrained arguments, and with
# them the HLO hash the NEFFs are found by, cannot drift apart.
from neuronx_common import llama_from_pretrained_kwargs


NEURON_CC_FLAGS = "NEURON_CC_FLAGS"
"""Environment variable transformers-neuronx passes on to neuronx-cc."""

_FLAGS_WITH_VALUE = ("--target", "--optlevel", "-O")
_ATTACHED_FLAG = re.compile(r"(--target=|--optlevel=|-O).+")

GIB = 1024**3

COMPILE_WORKER_MEMORY_GIB = 14
"""Host memory set aside for each neuronx-cc that runs at once. A budget, not a measurement: nothing published gives
neuronx-cc's peak memory for a Llama graph of this size, so the job logs the largest compiler process's peak
(`peak_child_rss_bytes`) for the next decision. 14 GiB keeps the presets' full parallelism (lowCost compiles 8
graphs in the 115 GiB container of an inf2.8xlarge, highPerformance 12 in 345 GiB: 0.9 of host memory, the
container's share in neuronx-compile.ts) and stops a small compile instance (trn1.2xlarge: 28 GiB) from starting
8 compilers at once."""

_CGROUP_MEMORY_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
"""The container's memory limit under cgroup v2 and v1 (AWS Batch sets it from the job's MEMORY requirement)."""


def neuron_cc_flags(existing: str, opt_level: int) -> str:
    """NEURON_CC_FLAGS with our opt level and no `--target`, keeping every other flag of `existing`.

    An opt level already in `existing` (`-O1`, `-O 1`, `--optlevel=1`, `--optlevel 1`) is replaced. A target
    (`--target=inf2`, `--target inf2`) is removed, never added: transformers-neuronx 0.13 compiles every graph with
    `neuron_xla_compile(flags, platform_target="trn1")` (src/transformers_neuronx/compiler.py, compile_hlo_module,
    in aws-neuron/transformers-neuronx at the Dec 2024 sync = 0.13.322 of SDK 2.21), and libneuronxla puts
    `--target=trn1` in front of NEURON_CC_FLAGS: the compile flags it records for transformers-neuronx graphs read
    ["--target=trn1", "--model-type=transformer", "--auto-cast=none", "--execute-repetition=1"] (compile_flags.json
    of neuronx-cc 2.16.372 entries in the aws-neuron/optimum-neuron-cache Hub repository). A target of ours would be
    a second one, and which of two wins is up to the compiler's argument parser. None is needed: inf2 and trn1 have
    the same NeuronCore-v2, and AWS says the switch makes no difference, so trn1-target NEFFs serve on inf2
    (aws-neuron/transformers-neuronx issue 31, huggingface/optimum-neuron issue 171, aws-neuron/aws-neuron-sdk
    issue 865). The NEFFs are found at load by the hash of the HLO alone (base.py hash_hlo), so flags never stop
    the endpoint from finding them.
    """
    kept: list[str] = []
    tokens = iter(shlex.split(existing))
    for token in tokens:
        if token in _FLAGS_WITH_VALUE:
            next(tokens, None)
        elif not _ATTACHED_FLAG.fullmatch(token):
            kept.append(token)
    return shlex.join([*kept, f"-O{opt_level}"])


def available_memory_bytes(
    meminfo: Path = Path("/proc/meminfo"), limits: Sequence[Path] = _CGROUP_MEMORY_LIMITS
) -> int:
    """The smaller of the host's MemAvailable and the container's cgroup memory limit (when one is set)."""
    lines = meminfo.read_text().splitlines()
    # MemAvailable since Linux 3.14; MemFree (less than what could be freed) before that.
    available = next(
        int(line.split()[1]) * 1024
        for key in ("MemAvailable:", "MemFree:")
        for line in lines
        if line.startswith(key)
    )
    for limit in limits:
        try:
            value = limit.read_text().strip()
        except OSError:
            continue
        if value.isdigit():
            available = min(available, int(value))
    return available


def compile_workers(available_bytes: int) -> int:
    """How many graphs neuronx-cc may compile at once in `available_bytes` of memory (at least one).

    transformers-neuronx 0.13 compiles all graphs of a model at once unless told otherwise: `to_neuron()` calls
    `compile(parallel_degree=neuron_config.compilation_worker_count)`, and a None count becomes
    `ProcessPoolExecutor(len(kernels))` (src/transformers_neuronx/base.py, NeuronModelBase.compile). There is one
    graph per position bucket for token generation (128, 256, ... up to nPositions) and one per context bucket
    (half those sizes), for each batch size (bucket.py token_sizes, context_sizes): 8 at 1024 positions, 12 at 4096.
    """
    return max(1, available_bytes // (COMPILE_WORKER_MEMORY_GIB * GIB))


def peak_child_rss_bytes() -> int:
    """The largest peak resident memory of any finished child process, the compilers included (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def compile_checkpoint(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any], workers: int) -> None:
    """Compiles the Hugging Face Llama checkpoint and saves the NEFFs to `compiled_dir`.

    `options` holds the contract's manifest option keys. neuronx-cc reads its opt level from NEURON_CC_FLAGS,
    which the caller sets. At most `workers` graphs compile at once (compile_workers). The inference handler builds
    the model with the same arguments (llama_from_pretrained_kwargs) before loading these artifacts.

    The weights are not saved: the handler reads the checkpoint (and, for int8, quantizes it layer by layer on the
    host) at every start. Saving them presharded (`save(dir, sharded_weights=True)`) needs on_device_embedding, which
    changes the graphs; it is left until it can be tried on Neuron hardware (see the runtime README).
    """
    import transformers_neuronx.config as neuronx_config
    from transformers_neuronx.llama.model import LlamaForSampling

    model = LlamaForSampling.from_pretrained(
        str(checkpoint_dir), **llama_from_pretrained_kwargs(options, neuronx_config)
    )
    # Only NeuronModelBase.compile reads it (base.py): it is not part of any graph, so the HLO hash the handler finds
    # the NEFFs by does not change. Set on the model's own NeuronConfig (from_pretrained makes one when given None).
    model.neuron_config.compilation_worker_count = workers
    model.to_neuron()
    model.save(str(compiled_dir))
