"""The fake device holds the model server to the instance's NeuronCores as the Neuron runtime would: a setting that
asks for more cores than are free fails the worker's load, and a process's cores come free when it ends."""

from __future__ import annotations

import subprocess
import sys

import pytest

import neuron_device


def claim_in_child(environ: dict[str, str], cores: int) -> subprocess.CompletedProcess:
    """Claims `cores` in a process of its own (a worker), which then ends."""
    return subprocess.run(
        [sys.executable, "-c", "import neuron_device; print(neuron_device.claim_cores())"],
        env={**environ, neuron_device.NUM_CORES: str(cores), "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
    )


def test_more_cores_than_are_free_fail_and_an_ended_process_frees_its_cores(tmp_path):
    environ = {neuron_device.STATE_DIR: str(tmp_path), neuron_device.POOL_CORES: "12"}  # inf2.24xlarge
    held = neuron_device.claim_cores({**environ, neuron_device.NUM_CORES: "8"})  # this process: a live worker
    assert held == list(range(8))

    refused = claim_in_child(environ, 8)
    assert refused.returncode != 0
    assert "Logical Neuron Core(s) not available - Requested:8 Available:4" in refused.stderr

    assert claim_in_child(environ, 4).stdout.strip() == "[8, 9, 10, 11]"
    # That worker has ended: its cores are free again, ours are not.
    assert claim_in_child(environ, 4).stdout.strip() == "[8, 9, 10, 11]"
    claims = neuron_device.read_claims(tmp_path)
    assert [claim["released"] for claim in claims] == [False, True, True]



def test_a_continuous_batching_step_costs_a_batch_1_step_per_context_and_the_compiled_slots_step_per_decode(
    tmp_path, monkeypatch
):
    import types

    import torch
    from transformers_neuronx.config import ContinuousBatchingConfig, NeuronConfig
    from transformers_neuronx.llama import model as fake_model

    slept = []
    monkeypatch.setattr(fake_model.time, "sleep", slept.append)
    monkeypatch.setenv(neuron_device.STATE_DIR, str(tmp_path))
    monkeypatch.setenv(fake_model.ANSWER_IDS, "7,8,9")
    monkeypatch.delenv(fake_model.GOODBYE_ID, raising=False)
    config = types.SimpleNamespace(eos_token_id=2, vocab_size=16)
    slots = 5
    model = fake_model.LlamaForSampling(
        config, n_positions=64, batch_size=slots, amp="bf16", tp_degree=2,
        neuron_config=NeuronConfig(continuous_batching=ContinuousBatchingConfig(batch_size_for_shared_caches=slots)),
    )  # fmt: skip
    model._cores = [0, 1]
    batch1 = neuron_device.seconds_per_token(2, "bf16", None)
    first = model(torch.tensor([[1, 3, 4]]), cache_ids=torch.arange(3).reshape(1, -1), start_ids=torch.tensor([3]))
    second = model(torch.tensor([[5, 6]]), cache_ids=torch.arange(2).reshape(1, -1), start_ids=torch.tensor([0]))
    assert [int(first[0].argmax()), int(second[0].argmax())] == [7, 7]
    # Slot 3's prompt is 3 long: its token 7 sits at position 3, so the next (8) comes from a decode at cache_ids 3.
    logits = model(torch.tensor([[7], [7]]), cache_ids=torch.tensor([[3], [2]]), start_ids=torch.tensor([3, 0]))
    assert logits.argmax(dim=-1).tolist() == [8, 8]
    # Two contexts at batch 1, then one decode step of the 5 compiled slots though 2 are busy:
    # 0.891 + 0.109 x 5 = 1.436 batch-1 steps (neuron_device's calibration).
    assert slept == pytest.approx([batch1, batch1, batch1 * (1 - neuron_device.PER_SEQUENCE_SHARE * (1 - slots))])
    assert slept[2] / batch1 == pytest.approx(1.436, abs=0.002)
