"""Fixtures: the example app's endpoint served by the image's stack.

Servers are started once per session and shared by every test that only needs a served endpoint (`served`); the
long simulated load is only in the tests whose point is the load (`slow_loaded`, and the tests that start a server
of their own). Servers run side by side (each on ports of its own, serving_stack.free_ports, and with the toolkit's
config file in a mount namespace of its own): the suite runs under pytest-xdist (pytest.ini), and every test that
uses a shared server carries that server's `xdist_group` mark, so that one pytest worker starts it and runs them all.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import serving_stack

PRESETS = ("lowCost", "highPerformance")
STATIC_BATCHING = "staticBatching"
"""A custom strategy of three workers that batch statically (static-batching-app.ts), synthesized beside the presets:
both presets batch continuously on one worker, and this is the batching every multi-worker strategy gets."""
SLOW_LOAD_SECONDS = 75
"""How long the fake device's to_neuron() takes in the tests of the load: longer than the 60 s that TorchServe 0.11.0
used to allow a worker's model load (the old TS_DEFAULT_RESPONSE_TIMEOUT), far shorter than calm3's real load (the
endpoint's own startup estimate, 1229 s for lowCost)."""
SHORT_LOAD_SECONDS = 5
"""The load of a server whose tests are about what it answers, not about how it loads."""
STARTUP_MARGIN_SECONDS = 150
"""Time on top of the load for TorchServe, the worker processes and their imports (torch, transformers): a wait's
bound, not a claim of the tests, and generous because three workers importing torch at once beside the build's
other suites on two cores took more than a minute (a build's run of the static-batching template)."""


def start_server(
    root: Path, preset: str, batch_size: int | None = None, *, load_seconds: float, **overrides: str
) -> serving_stack.ModelServer:
    """The preset's endpoint as its template has it, or as compiled for `batch_size`, its model load taking
    `load_seconds` on the fake device."""
    deployment = serving_stack.read_deployment(preset)
    if batch_size is not None:
        deployment = serving_stack.with_static_batching(deployment, batch_size)
    server = serving_stack.ModelServer(root, deployment, load_seconds=load_seconds, overrides=overrides)
    server.start()
    return server


def all_ready(server: serving_stack.ModelServer) -> bool:
    """Every worker the deployment asks for is READY (False while the management API is not up)."""
    try:
        workers = server.workers()
    except (OSError, AssertionError):
        return False
    return len(workers) == server.deployment.workers and all(w["status"] == "READY" for w in workers)


def wait_until(condition, timeout: float, interval: float = 1.0):
    """Polls `condition` until it returns a truthy value (returned) or `timeout` seconds pass (None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def grouped(*presets: str, prefix: str = "") -> list:
    """`presets` as fixture parameters that carry their server's xdist group (`prefix` + preset)."""
    return [pytest.param(preset, marks=pytest.mark.xdist_group(prefix + preset)) for preset in presets]


@pytest.fixture(scope="session")
def _servers(tmp_path_factory):
    """The session's shared servers by name, started on first use; all ended (process group and all) at the end."""
    started: dict[str, serving_stack.ModelServer] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="session")
def served(_servers, tmp_path_factory):
    """`served(preset)`: the preset's endpoint as its template has it, with a short load, once its workers are READY."""

    def get(preset: str) -> serving_stack.ModelServer:
        if preset not in _servers:
            server = start_server(tmp_path_factory.mktemp(preset), preset, load_seconds=SHORT_LOAD_SECONDS)
            _servers[preset] = server
            if not wait_until(lambda: all_ready(server), SHORT_LOAD_SECONDS + STARTUP_MARGIN_SECONDS):
                pytest.fail(f"{preset}: the workers are not READY: {server.claims()}\n{server.logs()[-3000:]}")
        return _servers[preset]

    return get


@pytest.fixture(scope="session")
def slow_loaded(_servers, tmp_path_factory):
    """`slow_loaded(preset)`: the preset's endpoint as its template has it, its load SLOW_LOAD_SECONDS long, just
    started (tests wait for the load themselves: the load is their subject)."""

    def get(preset: str) -> serving_stack.ModelServer:
        name = f"slow-{preset}"
        if name not in _servers:
            _servers[name] = start_server(tmp_path_factory.mktemp(name), preset, load_seconds=SLOW_LOAD_SECONDS)
        return _servers[name]

    return get


@pytest.fixture(params=grouped(*PRESETS))
def server(request, served):
    """Each preset's shared endpoint, READY."""
    return served(request.param)


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

