"""Fixtures: the example app's endpoint served by the image's stack, one server per preset and test module."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

import serving_stack

SLOW_LOAD_SECONDS = 75
"""How long the fake device's to_neuron() takes: longer than the 60 s that TorchServe 0.11.0 used to allow a worker's
model load (the old TS_DEFAULT_RESPONSE_TIMEOUT), far shorter than calm3's real load (the endpoint's own startup
estimate, 1229 s for lowCost), to keep the suite short."""
STARTUP_MARGIN_SECONDS = 60
"""Time on top of the load for TorchServe, the worker processes and their imports (torch, transformers)."""


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_server(root: Path, preset: str, batch_size: int | None = None, **overrides: str) -> serving_stack.ModelServer:
    """The preset's endpoint as its template has it, or as compiled for `batch_size`."""
    busy = [port for port in (serving_stack.INFERENCE_PORT, serving_stack.MANAGEMENT_PORT) if port_in_use(port)]
    if busy:
        pytest.fail(f"port(s) {busy} already in use on 127.0.0.1: another model server is running; stop it first")
    deployment = serving_stack.read_deployment(preset)
    if batch_size is not None:
        deployment = serving_stack.with_batch_size(deployment, batch_size)
    server = serving_stack.ModelServer(root, deployment, load_seconds=SLOW_LOAD_SECONDS, overrides=overrides)
    server.start()
    return server


@pytest.fixture(scope="module", params=["lowCost", "highPerformance"])
def server(request, tmp_path_factory):
    """The preset's endpoint, started as the image starts it; ended (process group and all) after the module."""
    server = start_server(tmp_path_factory.mktemp(request.param), request.param)
    yield server
    server.stop()


def wait_until(condition, timeout: float, interval: float = 1.0):
    """Polls `condition` until it returns a truthy value (returned) or `timeout` seconds pass (None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def restarts(server, workers_before: list[dict]) -> list[str]:
    """Evidence that a worker was lost since `workers_before` was read."""
    problems = []
    workers = server.workers()
    if sorted(w["pid"] for w in workers) != sorted(w["pid"] for w in workers_before):
        problems.append(f"worker pids changed: {[w['pid'] for w in workers_before]} -> {[w['pid'] for w in workers]}")
    if any(worker["status"] != "READY" for worker in workers):
        problems.append(f"worker(s) not READY: {workers}")
    claims = server.claims()
    if len(claims) != server.deployment.workers:
        problems.append(f"{len(claims)} NeuronCore claims for {server.deployment.workers} worker(s): one loaded again")
    return problems
