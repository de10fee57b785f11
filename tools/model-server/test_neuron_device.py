"""The fake device holds the model server to the instance's NeuronCores as the Neuron runtime would: a setting that
asks for more cores than are free fails the worker's load, and a process's cores come free when it ends."""

from __future__ import annotations

import subprocess
import sys

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

