"""transformers_neuronx.llama.model.LlamaForSampling on the fake device (neuron_device).

The lifecycle is the real one (llama/model.py, base.py, module.py of transformers-neuronx 0.13):
from_pretrained reads the checkpoint's config with transformers and requires its weights file; load(dir) only
records where the compiled artifacts are; to_neuron() claims the NeuronCores and loads, here slowly; sample()
runs the real decode loop's contract (sampling.sample_loop_llama): one token per step, eos fills the rest of a
finished row, streamer.put(token) after each step and streamer.end() at the end, stopping criteria checked after
each step; each step takes the compiled batch's time (neuron_device.seconds_per_step), whatever rows are
padding; rows are left-padded, start_ids says where each prompt starts; every call is recorded for the benchmark
(neuron_device.record_generation). What it generates, row by row: the token ids in FAKE_NEURON_ANSWER_IDS, in a cycle; when the prompt holds the id in
FAKE_NEURON_GOODBYE_ID it answers with that id and then the end-of-turn id (a model that says goodbye and ends
its turn).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from transformers import AutoConfig

import neuron_device
from transformers_neuronx.config import NeuronConfig

ANSWER_IDS = "FAKE_NEURON_ANSWER_IDS"
GOODBYE_ID = "FAKE_NEURON_GOODBYE_ID"
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
)  # fmt: skip
"""What PretrainedModel.load_state_dict_dir looks for, in its order."""
NEFF_SUFFIX = ".neff"
PEAK = 100.0
"""The logit of the scripted token (0 for every other): sampled at any temperature up to 2 and any top_k or top_p,
it is the token (e^50 to 1 against each other one)."""


class LlamaForSampling:
    def __init__(self, config, *, n_positions=2048, batch_size=1, amp="f32", tp_degree=2,
                 context_length_estimate=None, context_unroll=None, unroll=None,
                 neuron_config=None, prefixed_length=0, **kwargs):
        self.config = config
        self.n_positions = n_positions
        self.batch_sizes = batch_size if isinstance(batch_size, list) else [batch_size]
        self.amp = amp
        self.tp_degree = tp_degree
        self.neuron_config = neuron_config if neuron_config else NeuronConfig()
        self._compiled_artifacts_directory = None
        self._cores = None

    @classmethod
    def from_pretrained(cls, pretrained_model_path, *model_args, **kwargs):
        config = AutoConfig.from_pretrained(pretrained_model_path)
        if not any((Path(pretrained_model_path) / name).exists() for name in WEIGHT_FILES):
            raise FileNotFoundError(f"Can not find model.safetensors or pytorch_model.bin in {pretrained_model_path}")
        return cls(config, *model_args, **kwargs)

    def load(self, directory):
        self._compiled_artifacts_directory = directory

    def to_neuron(self):
        self._cores = neuron_device.claim_cores()
        if self.tp_degree > len(self._cores):
            raise RuntimeError(
                f"tp_degree {self.tp_degree} needs {self.tp_degree} NeuronCores, this process has {len(self._cores)}"
            )
        if self._compiled_artifacts_directory is None:
            raise RuntimeError("the fake device cannot compile: call load(directory) with compiled artifacts first")
        if not any(Path(self._compiled_artifacts_directory).glob(f"*{NEFF_SUFFIX}")):
            raise FileNotFoundError(f"no compiled artifacts (*{NEFF_SUFFIX}) in {self._compiled_artifacts_directory}")
        time.sleep(neuron_device.load_seconds())

    def _seconds_per_token(self) -> float:
        quant = self.neuron_config.quant
        return neuron_device.seconds_per_token(self.tp_degree, self.amp, quant.quant_dtype if quant else None)

    def _next_token(self, prompt, step: int) -> int:
        goodbye = int(os.environ[GOODBYE_ID]) if GOODBYE_ID in os.environ else None
        if goodbye is not None and goodbye in prompt:
            return goodbye if step == 0 else self._eos
        answer = [int(token) for token in os.environ[ANSWER_IDS].split(",")]
        return answer[step % len(answer)]

    def forward(self, input_ids, cache_ids=None, start_ids=None):
        """Continuous batching (NeuronConfig(continuous_batching=...)), as vLLM's old Neuron backend drove it
        (vllm/model_executor/model_loader/neuron.py: model(input_ids, cache_ids=positions, start_ids=block_ids) ->
        logits [batch, vocab]): a context of shape [1, n] with cache_ids 0..n-1 is encoded into the slot
        start_ids[0] names; rows of shape [b, 1] at their cache_ids decode one token each, row i in slot
        start_ids[i]. The logits put all weight on the next scripted token of each slot (its answer cycle from
        the position after its prompt). A context costs one batch-1 step (as sample() counts a short prompt's
        encoding); a decode step costs the compiled batch's step: the graph is compiled for
        batch_size_for_shared_caches rows and runs them all, empty slots included
        (neuron_device.seconds_per_step, calibrated there)."""
        if self._cores is None:
            raise RuntimeError("the model is not on the device: call to_neuron() first")
        continuous = self.neuron_config.continuous_batching
        if continuous is None:
            raise RuntimeError("forward with cache_ids and start_ids needs a model built for continuous batching")
        slots = continuous.batch_size_for_shared_caches
        rows, width = input_ids.shape
        slot_ids = [int(slot) for slot in start_ids.reshape(-1).tolist()]
        positions = cache_ids.reshape(rows, width).tolist()
        if any(not 0 <= slot < slots for slot in slot_ids) or len(slot_ids) != rows:
            raise ValueError(f"start_ids {slot_ids} must name one of the {slots} slots per row")
        if max(max(row) for row in positions) >= self.n_positions:
            raise ValueError(f"cache_ids past the compiled n_positions {self.n_positions}")
        batch1 = self._seconds_per_token()
        if not hasattr(self, "_slots"):
            self._slots = {}
            self._eos = self.config.eos_token_id
        logits = torch.zeros(rows, self.config.vocab_size)
        if width > 1:
            if rows != 1 or positions[0] != list(range(width)):
                raise ValueError("a context is encoded one at a time, at cache_ids 0..n-1")
            time.sleep(neuron_device.seconds_per_step(batch1, 1))
            prompt = input_ids[0].tolist()
            self._slots[slot_ids[0]] = prompt
            logits[0, self._next_token(prompt, 0)] = PEAK
        else:
            time.sleep(neuron_device.seconds_per_step(batch1, slots))
            for row, slot in enumerate(slot_ids):
                prompt = self._slots[slot]
                logits[row, self._next_token(prompt, positions[row][0] - len(prompt) + 1)] = PEAK
        neuron_device.record_generation({
            "pid": os.getpid(), "batch": 1 if width > 1 else slots, "rows": rows, "slots": slot_ids,
            "promptTokens": [width] if width > 1 else [], "started": time.time(), "steps": [time.time()],
        })
        return logits

    __call__ = forward

    def sample(self, input_ids, sequence_length, cache_ids=None, start_ids=None,
               top_k=50, top_p=1.0, eos_token_override=None, temperature=1.0, streamer=None,
               stopping_criteria_list=None, no_repeat_ngram_size=None, **kwargs):
        if self._cores is None:
            raise RuntimeError("the model is not on the device: call to_neuron() first")
        batch_size, context_length = input_ids.shape
        if batch_size not in self.batch_sizes:
            raise ValueError(
                f"Model not compiled for batch_size : {batch_size}. "
                f"Acceptable batch_size is one of the following {self.batch_sizes}"
            )
        if not isinstance(temperature, float) or not temperature > 0:
            raise ValueError("temperature has to be a strictly positive float.")
        if sequence_length > self.n_positions:
            raise ValueError(f"sequence_length {sequence_length} is past the compiled n_positions {self.n_positions}")
        # Left padding: each row's prompt starts at its start_ids (zeros when not given, as forward() does).
        starts = [0] * batch_size if start_ids is None else [int(start) for start in start_ids.tolist()]
        prompts = [input_ids[row, starts[row]:].tolist() for row in range(batch_size)]
        eos = self.config.eos_token_id if eos_token_override is None else eos_token_override
        eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos], dtype=torch.int32)
        self._eos = int(eos_ids[0])
        per_step = neuron_device.seconds_per_step(self._seconds_per_token(), batch_size)
        started = time.time()
        steps = []
        time.sleep(per_step)  # the context encoding of a short prompt: about one step
        done = torch.full((batch_size, 1), False)
        tokens = [input_ids]
        for step, _ in enumerate(range(context_length, sequence_length)):
            time.sleep(per_step)
            steps.append(time.time())
            inputs = torch.tensor([[self._next_token(prompt, step)] for prompt in prompts], dtype=input_ids.dtype)
            is_eos = torch.isin(inputs, eos_ids)
            done = torch.logical_or(done, is_eos)
            token = torch.where(torch.logical_and(done, ~is_eos), eos_ids[0].to(inputs.dtype), inputs)
            tokens.append(token)
            if streamer:
                streamer.put(token)
            if done.all():
                break
            if stopping_criteria_list is not None and stopping_criteria_list(input_ids, torch.ones(batch_size, 1)):
                break
        if streamer:
            streamer.end()
        neuron_device.record_generation({
            "pid": os.getpid(), "batch": batch_size, "promptTokens": [len(prompt) for prompt in prompts],
            "started": started, "steps": steps,
        })
        return torch.cat(tokens, dim=-1)
