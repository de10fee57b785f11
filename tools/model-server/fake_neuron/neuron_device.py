"""The fake Neuron device behind the fake transformers_neuronx: a pool of NeuronCores shared by the model-server
workers, a load slower than TorchServe 0.11.0's old 60 s limit, and a set time per generated token.

Configured by the test through the environment of the model server (never set on an endpoint):
  FAKE_NEURON_STATE_DIR     a directory shared by the workers: the pool's lock file and its record of claims
  FAKE_NEURON_CORES         NeuronCores of the instance (the pool size)
  FAKE_NEURON_LOAD_SECONDS  how long to_neuron() takes after its cores are claimed
  FAKE_NEURON_TIME_SCALE    optional factor on the time per step (default 1)
The time per token is derived from how the handler built the model (tp degree, amp, quantization): see
seconds_per_token.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Callable

STATE_DIR = "FAKE_NEURON_STATE_DIR"
POOL_CORES = "FAKE_NEURON_CORES"
LOAD_SECONDS = "FAKE_NEURON_LOAD_SECONDS"
NUM_CORES = "NEURON_RT_NUM_CORES"
"""The Neuron runtime's variable: how many NeuronCores this process takes from the free ones (the endpoint sets
it per worker). Unset, a process takes every free core (aws-neuron-sdk docs, "NeuronCore allocation" for
NEURON_RT_NUM_CORES / NEURON_RT_VISIBLE_CORES)."""

RECORD = "claims.json"
LOCK = "pool.lock"

# Calibration of the time per token, from a published figure for a model of calm3's size:
# Mistral-Small-Instruct-2409 (22.2 B parameters, bf16) on 12 NeuronCores of an inf2.48xlarge, batch 1, sequence
# 4096: about 26 ms between tokens (huggingface/optimum-neuron docs/source/benchmarks/inferentia-mistral-small.mdx,
# https://huggingface.co/docs/optimum-neuron/benchmarks/inferentia-mistral-small; see shared FACTS.md).
# At batch 1 a decode step reads every weight once, so its time follows the weight bytes each NeuronCore holds
# (Inferentia2 and Trainium chips have the same 820 GB/s of HBM for their 2 cores: aws-neuron-sdk inf2-arch and
# trn1-arch pages). calm3-22b-chat has about 22.5 B parameters (FACTS.md, from its config.json), so:
#   lowCost   (trn1, tp 2, int8: 1 byte each)  22.5e9 x 1 / 2 = 11.25 GB per core -> 26 ms x 11.25 / 3.70 = ~79 ms
#   highPerf. (inf2, tp 4, bf16: 2 bytes each) 22.5e9 x 2 / 4 = 11.25 GB per core -> ~79 ms as well
# against the benchmark's 22.2e9 x 2 / 12 = 3.70 GB per core. At ~79 ms a request for 1000 new tokens needs
# ~79 s: past SageMaker's 60 s invocation limit.
# The figures are the contract's `stepTime`, which the constructs' per-step limits read too (src/private/sizing.ts).
STEP_TIME = json.loads(
    (Path(__file__).resolve().parents[3] / "packages/aws-cdk-neuronx-patterns/runtime/contract.json").read_text()
)["stepTime"]
REFERENCE_SECONDS_PER_TOKEN = STEP_TIME["referenceSecondsBatch1"]
REFERENCE_BYTES_PER_CORE = (
    STEP_TIME["referenceParameters"] * STEP_TIME["referenceBytesPerParameter"] / STEP_TIME["referenceNeuronCores"]
)
CALM3_PARAMETERS = 22.5e9
BYTES_PER_PARAMETER = {"bf16": 2, "f16": 2, "f32": 4, "s8": 1, "f8e4m3fn": 1}


def seconds_per_token(tp_degree: int, amp: str, quant_dtype: str | None) -> float:
    """The decode time of one token at batch 1 for calm3 built with these options (see the calibration above)."""
    bytes_per_core = CALM3_PARAMETERS * BYTES_PER_PARAMETER[quant_dtype or amp] / tp_degree
    return REFERENCE_SECONDS_PER_TOKEN * bytes_per_core / REFERENCE_BYTES_PER_CORE


# A decoding step of a batch: a fixed cost (every weight read once, whatever the batch) plus a small cost per
# sequence (its own KV cache read, its logits). Calibrated from the same benchmark page: Mistral-Small-2409 on the
# same 12 cores, sequence 4096, has about 26 ms between tokens at batch 1 and 34-35 ms at batch 4. With
# step(b) = F + b x p:  26 = F + p  and  34.5 = F + 4p  ->  p = 8.5 / 3 = 2.83 ms, F = 23.17 ms,
# so each sequence adds p / (F + p) = 2.83 / 26 = 10.9 % of a batch-1 step:
#   step(b) = step(1) x (0.891 + 0.109 b): batch 4 1.33x, batch 5 1.44x, batch 8 1.76x, batch 16 2.63x the
#   batch-1 step, i.e. 3.0x, 3.5x, 4.5x, 6.1x the tokens per second if every row is busy.
# (The page's throughput figures, 35-38 tokens/s at batch 1 and 79-80 at batch 4, divide the generated tokens by
# the end-to-end time including the prompt's encoding, so they are not per-step figures; Llama-2-13B's
# throughput figures on 8 cores, 60 / 89 / 129 / 142 tokens/s at batch 1 / 4 / 8 / 16, are of that kind too.)
# The compiled batch runs every row, padding included: the cost is that of the compiled batch size.
REFERENCE_SECONDS_PER_TOKEN_BATCH_4 = STEP_TIME["referenceSecondsBatch4"]
PER_SEQUENCE_SHARE = (REFERENCE_SECONDS_PER_TOKEN_BATCH_4 - REFERENCE_SECONDS_PER_TOKEN) / 3 / REFERENCE_SECONDS_PER_TOKEN


TIME_SCALE = "FAKE_NEURON_TIME_SCALE"
"""Optional: a factor on every step's time (the benchmark runs the device 4 times faster to keep its run short)."""


def seconds_per_step(batch1_seconds: float, batch_size: int, environ=os.environ) -> float:
    """The time of one decoding step of a compiled batch of `batch_size` rows (see the calibration above)."""
    scale = float(environ.get(TIME_SCALE, "1"))
    return scale * batch1_seconds * (1 - PER_SEQUENCE_SHARE + PER_SEQUENCE_SHARE * batch_size)


GENERATIONS = "generations.jsonl"
"""Every sample() call, one JSON line each: the worker's pid, the compiled batch size, the rows' prompt lengths,
when it started and when each step's tokens came out (time.time()). What a client cannot see without streaming
(time to first token, time per output token) is read from here by the benchmark."""


def record_generation(record: dict[str, Any], environ=os.environ) -> None:
    """Appends `record` as one line, under a lock of its own: not the claims' lock, whose holder reads and rewrites
    the claims file. Served step by step, a record is written every decoding step, on the worker's path between two
    steps: the bookkeeping must not cost the simulated device time (about 2.5 ms a record under the claims' lock)."""
    state_dir = Path(environ[STATE_DIR])
    state_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record) + "\n"
    with open(state_dir / GENERATIONS_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(state_dir / GENERATIONS, "a") as log:
            log.write(line)


GENERATIONS_LOCK = "generations.lock"


def read_generations(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / GENERATIONS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class NeuronCoresUnavailable(RuntimeError):
    """As the Neuron runtime fails nrt_init when fewer cores are free than a process asks for."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by TorchServe) holds no device any more.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def _locked_record(state_dir: Path):
    """The claims record under the pool's lock: every worker process reads and writes it in turn."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = state_dir / RECORD
        claims = json.loads(path.read_text()) if path.is_file() else []
        yield claims
        path.write_text(json.dumps(claims, indent=1))


def read_claims(state_dir: Path, alive: Callable[[int], bool] = _alive) -> list[dict[str, Any]]:
    """Every claim so far, in order: {"pid", "cores", "at", "released"} (released: the process ended). A claim's pid is
    as its worker saw it; `alive` tells whether that pid still runs (a reader in another PID namespace passes its own
    translation)."""
    with _locked_record(state_dir) as claims:
        for claim in claims:
            claim["released"] = claim["released"] or not alive(claim["pid"])
        return [dict(claim) for claim in claims]


def claim_cores(environ=os.environ) -> list[int]:
    """Takes NEURON_RT_NUM_CORES free cores of the pool for this process, as nrt_init does. A core is free when no
    live process holds it: the runtime gives a process's cores back when the process ends, however it ends."""
    state_dir = Path(environ[STATE_DIR])
    pool = int(environ[POOL_CORES])
    with _locked_record(state_dir) as claims:
        for claim in claims:
            claim["released"] = claim["released"] or not _alive(claim["pid"])
        held = {core for claim in claims if not claim["released"] for core in claim["cores"]}
        free = [core for core in range(pool) if core not in held]
        wanted = int(environ[NUM_CORES]) if NUM_CORES in environ else len(free)
        if wanted > len(free) or wanted < 1:
            raise NeuronCoresUnavailable(
                f"NRT: Logical Neuron Core(s) not available - Requested:{wanted} Available:{len(free)}"
                f" (pid {os.getpid()}; held: {sorted(held)} of {pool})"
            )
        cores = free[:wanted]
        claims.append({"pid": os.getpid(), "cores": cores, "at": time.time(), "released": False})
        return cores


def load_seconds(environ=os.environ) -> float:
    return float(environ[LOAD_SECONDS])
