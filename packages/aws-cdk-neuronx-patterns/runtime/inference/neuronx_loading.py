"""Loading the model (the worker's initialization): the model dir checked against the endpoint's configuration,
then the compiled model loaded as the compile job built it (never compiled here).

The model dir is the compile job's artifact prefix: <checkpointDir> (config, tokenizer, generation_config.json,
weights), <compiledDir> (NEFFs) and the marker (manifest), beside code/. The contract and how the model is built
(llama_from_pretrained_kwargs) come from neuronx_common.py, shared with the compile job. Only the functions at
the end import torch, transformers and transformers_neuronx.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from neuronx_chat import Generator, ModelConfigurationError, Sampler, generation_config_eos_ids, make_generator, require_chat_template
from neuronx_common import (
    CONTRACT,
    LAYOUT,
    MANIFEST,
    OPTION_DEFAULTS,
    compiled_batch_sizes,
    installed_versions,
    is_continuous,
    llama_from_pretrained_kwargs,
)

ENV = CONTRACT["endpoint"]["environment"]

log = logging.getLogger(__name__)

# Model dir checks


def read_manifest(model_dir: Path) -> dict[str, Any]:
    marker = model_dir / LAYOUT["marker"]
    if not marker.is_file():
        raise ModelConfigurationError(f"{marker} is missing: the compile job did not finish for these artifacts")
    manifest = json.loads(marker.read_text())
    if manifest.get("schemaVersion") != MANIFEST["schemaVersion"]:
        raise ModelConfigurationError(
            f"{marker} has schemaVersion {manifest.get('schemaVersion')!r},"
            f" this handler reads {MANIFEST['schemaVersion']}"
        )
    return manifest


def configuration_mismatches(compiled: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Every difference between the compiled options and the endpoint's environment.

    Unset variables take the contract's defaults; tpDegree and nPositions have none.
    """
    mismatches = []
    for key in (key for key in MANIFEST["optionKeys"] if key in ENV):
        configured = environ.get(ENV[key], str(OPTION_DEFAULTS.get(key, ""))).strip()
        if configured != str(compiled[key]):
            mismatches.append(f"{ENV[key]}={configured!r} but the artifacts were compiled with {key}={compiled[key]!r}")
    cores = environ.get(ENV["coresPerWorker"])
    if cores is not None and cores.strip() != str(compiled["tpDegree"]):
        mismatches.append(
            f"{ENV['coresPerWorker']}={cores!r} but each worker needs tpDegree={compiled['tpDegree']} NeuronCores"
        )
    return mismatches


def describe_versions(versions: Mapping[str, str | None] | None) -> str:
    if not versions:
        return "versions the manifest does not record"
    return ", ".join(f"{package} {version or '(not installed)'}" for package, version in versions.items())


def missing_files(model_dir: Path, files: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        entry["key"]
        for entry in files
        if not (model_dir / entry["key"]).is_file() or (model_dir / entry["key"]).stat().st_size != entry["bytes"]
    ]


# ---------------------------------------------------------------------------------------------
# Loading (the worker's initialization)


def load_generator(model_dir: str | Path) -> Generator:
    """Checks the artifacts against the configuration, then loads the NEFFs (never compiles)."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    mismatches = configuration_mismatches(manifest["options"], os.environ)
    if mismatches:
        raise ModelConfigurationError(
            "the endpoint's configuration does not match the compiled artifacts (it would recompile): "
            + "; ".join(mismatches)
        )
    missing = missing_files(model_dir, manifest["files"])
    if missing:
        raise ModelConfigurationError(
            f"{len(missing)} file(s) listed in the manifest are missing or truncated in {model_dir}:"
            f" {', '.join(missing)}"
        )
    # Manifests written before these keys existed have neither.
    compiled_with = manifest.get("neuronPackages")
    installed = installed_versions(MANIFEST["neuronPackages"])
    log.info(
        "loading %s (revision %r, commit %s) compiled for %s with %s and %s; this image has %s",
        manifest["modelId"],
        manifest["modelRevision"],
        manifest.get("modelCommit") or "not recorded",
        manifest["compilerTarget"],
        manifest["options"],
        describe_versions(compiled_with),
        describe_versions(installed),
    )
    if compiled_with and dict(compiled_with) != installed:
        log.warning("the artifacts were compiled with other Neuron packages than this image has; loading may fail")
    try:
        return _load_neuron_generator(
            model_dir / LAYOUT["checkpointDir"], model_dir / LAYOUT["compiledDir"], manifest["options"]
        )
    except ModelConfigurationError:
        raise
    except Exception as error:
        raise ModelConfigurationError(
            f"loading the compiled artifacts from {model_dir} failed ({type(error).__name__}: {error});"
            f" they were compiled with {describe_versions(compiled_with)},"
            f" this image has {describe_versions(installed)}"
        ) from error


def generation_time_limit(environ: Mapping[str, str]) -> float:
    """Seconds a batch may generate (contract endpoint.environment.generationTimeLimit; default
    defaults.generationTimeLimitSeconds): SageMaker ends an InvokeEndpoint call after 60 s."""
    name = ENV["generationTimeLimit"]
    raw = environ.get(name)
    if raw is None:
        return float(CONTRACT["defaults"]["generationTimeLimitSeconds"])
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ModelConfigurationError(f"{name}={raw!r} must be a number of seconds > 0")
    return seconds


# ---------------------------------------------------------------------------------------------
# The only code that needs torch, transformers and transformers-neuronx (the serving image)


class SampleStep:
    """transformers-neuronx 0.13's per-token hooks of LlamaForSampling.sample (sampling.sample_loop_llama at
    the Neuron 2.21 sync, commit 1ade6d7): after each new token the loop calls `streamer.put(token)` with a
    [batch, 1] tensor, breaks at sequence_length or when every row has an eos token, then breaks when
    `stopping_criteria_list(input_ids, probs)` is true. This is both: put() gives each row that has not ended
    its token and asks its should_stop (rows past len(should_stop) fill the compiled batch and are ignored);
    the criterion is true once every row has ended. `counts` is how many new tokens each row took."""

    def __init__(self, should_stop: Sequence[Callable[[int], bool]]):
        self.should_stop = list(should_stop)
        self.counts = [0] * len(self.should_stop)
        self.ended = [False] * len(self.should_stop)

    def put(self, token: Any) -> None:
        for row, should_stop in enumerate(self.should_stop):
            if not self.ended[row]:
                self.counts[row] += 1
                self.ended[row] = bool(should_stop(int(token[row][0])))

    def end(self) -> None:
        pass

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return all(self.ended)


def load_chat_tokenizer(checkpoint_dir: Path) -> Any:
    """The checkpoint's tokenizer; one without a chat template fails here, before the long NEFF load."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    require_chat_template(tokenizer)
    return tokenizer


def _load_neuron_generator(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> Generator:
    """The tokenizer, then the model built exactly as the compile job built it, with its NEFFs loaded."""
    tokenizer = load_chat_tokenizer(checkpoint_dir)
    if is_continuous(options):
        return make_generator(
            tokenizer,
            _not_for_continuous_batching,
            options["nPositions"],
            generation_config_eos_ids(checkpoint_dir),
            options["batchSize"],
            step=_load_neuron_step_model(checkpoint_dir, compiled_dir, options),
        )
    sample = _load_neuron_sampler(checkpoint_dir, compiled_dir, options)
    return make_generator(
        tokenizer,
        sample,
        options["nPositions"],
        generation_config_eos_ids(checkpoint_dir),
        max(compiled_batch_sizes(options["batchSize"])),
    )


def _not_for_continuous_batching(*args: Any, **kwargs: Any) -> list[list[int]]:
    raise RuntimeError("artifacts compiled for continuous batching are served step by step, not by sample()")


def _load_neuron_model(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> Any:
    """LlamaForSampling built as the compile job built it (llama_from_pretrained_kwargs), its NEFFs loaded."""
    import transformers_neuronx.config as neuronx_config
    from transformers_neuronx.llama.model import LlamaForSampling

    model = LlamaForSampling.from_pretrained(
        str(checkpoint_dir), **llama_from_pretrained_kwargs(options, neuronx_config)
    )
    model.load(str(compiled_dir))
    model.to_neuron()
    return model


def pick_token(logits: Any, top_k: int, top_p: float, temperature: float) -> int:
    """A token sampled from one sequence's logits with its own parameters, as transformers-neuronx's sampling does
    on the host (top_k, then temperature, then top_p over what is left); top_k 1 is greedy."""
    import torch

    if top_k == 1:
        return int(torch.argmax(logits))
    values, indices = torch.topk(logits.float(), min(top_k, logits.numel()))
    probabilities = torch.softmax(values / temperature, dim=-1)
    if top_p < 1.0:
        # Keep the most likely tokens whose probabilities before them sum to less than top_p (at least one).
        before = torch.cumsum(probabilities, dim=-1) - probabilities
        probabilities = torch.where(before < top_p, probabilities, torch.zeros_like(probabilities))
        probabilities = probabilities / probabilities.sum()
    return int(indices[torch.multinomial(probabilities, 1)])


def _load_neuron_step_model(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> Callable[..., dict[int, int]]:
    """One decoding step of the running batch (neuronx_scheduler.StepModel) on transformers-neuronx 0.13's
    continuous batching, driven as vLLM's old Neuron backend drove it (vllm/model_executor/model_loader/neuron.py:
    model(input_ids, cache_ids=positions, start_ids=slots) -> logits [rows, vocab]): each new prompt is encoded at
    batch 1 into its slot (cache_ids 0..n-1), then the running sequences decode one token each, row i at its own
    position in slot start_ids[i]. Each row is sampled with its own request's parameters (pick_token)."""
    import torch

    model = _load_neuron_model(checkpoint_dir, compiled_dir, options)

    def step(
        *,
        prefill: Mapping[int, Sequence[int]],
        decode: Mapping[int, tuple[int, int]],
        sampling: Mapping[int, tuple[int, float, float]],
    ) -> dict[int, int]:
        tokens: dict[int, int] = {}
        with torch.inference_mode():
            for slot, prompt in prefill.items():
                logits = model(
                    torch.tensor([list(prompt)], dtype=torch.long),
                    cache_ids=torch.arange(len(prompt), dtype=torch.int32).reshape(1, -1),
                    start_ids=torch.tensor([slot], dtype=torch.int32),
                )
                tokens[slot] = pick_token(logits[0], *sampling[slot])
            if decode:
                slots = sorted(decode)
                logits = model(
                    torch.tensor([[decode[slot][0]] for slot in slots], dtype=torch.long),
                    cache_ids=torch.tensor([[decode[slot][1]] for slot in slots], dtype=torch.int32),
                    start_ids=torch.tensor(slots, dtype=torch.int32),
                )
                for row, slot in enumerate(slots):
                    tokens[slot] = pick_token(logits[row], *sampling[slot])
        return tokens

    return step


def _load_neuron_sampler(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> Sampler:
    """Builds LlamaForSampling as the compile job did, loads its NEFFs and wraps `model.sample`."""
    import torch
    from transformers_neuronx.stopping_criteria import StoppingCriteriaList

    model = _load_neuron_model(checkpoint_dir, compiled_dir, options)
    batch_sizes = compiled_batch_sizes(options["batchSize"])

    def sample(
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: Sequence[int],
        top_k: int,
        top_p: float,
        temperature: float,
        stop_token_ids: Sequence[int],
        should_stop: Sequence[Callable[[int], bool]],
    ) -> list[list[int]]:
        # The smallest compiled batch that holds the rows; the rows left over repeat the first prompt and are
        # ignored. Prompts are left-padded to the longest: start_ids is each row's padding, where its prompt
        # starts (the attention mask's first 1, as transformers-neuronx's generation adapter computes it).
        size = next(size for size in batch_sizes if size >= len(prompts))
        width = max(len(prompt) for prompt in prompts)
        padding = [width - len(prompt) for prompt in prompts] + [width - len(prompts[0])] * (size - len(prompts))
        rows = [*prompts, *[prompts[0]] * (size - len(prompts))]
        pad_id = stop_token_ids[0]  # never attended to: start_ids masks the padding
        input_ids = torch.tensor([[pad_id] * pad + list(row) for pad, row in zip(padding, rows)], dtype=torch.long)
        step = SampleStep(should_stop)
        with torch.inference_mode():
            output = model.sample(
                input_ids,
                sequence_length=width + max(max_new_tokens),
                start_ids=torch.tensor(padding, dtype=torch.int32) if size > 1 else None,
                top_k=top_k,
                top_p=top_p,
                temperature=temperature,
                eos_token_override=list(stop_token_ids),  # an int or a list (sample_loop_llama)
                streamer=step,
                stopping_criteria_list=StoppingCriteriaList([step]),
            )
        return [
            output[row].tolist()[padding[row] : width + step.counts[row]] for row in range(len(prompts))
        ]

    return sample
