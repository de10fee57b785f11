"""SIGTERM on the image's stack (lowCost, continuous batching, the device at a quarter of its calibrated time).

SageMaker stops a container with SIGTERM to its first process and SIGKILLs it 30 s later (developer guide, "Use your
own inference code with hosting services"). Here that process is toolkit 2.0.25's `serve` (as 2.0.21's), which forwards
SIGTERM to TorchServe's Java frontend (torchserve.py _add_sigterm_handler) and nothing else. TorchServe 0.11.0's own
answer to it, its shutdown hook (ModelServer.stop), closes its listening sockets and shuts its Netty event loop groups
down (util/ServerGroups.java shutdown), which cuts every client connection at once, and then kills the workers
(wlm/WorkerLifeCycle.java exit: destroyForcibly, SIGKILL). The library's agent in the JVM (readiness-ping.jar,
DrainOnTerm.java) runs first: it forwards SIGTERM to the workers and holds the JVM until they hold no job, at most
contract endpoint.draining frontendWaitSeconds (runtime README, "Draining on SIGTERM").

- test_sigterm_to_the_worker_...: the handler's half alone: a SIGTERM to the worker process refuses what waits and
  what comes with 503 and Retry-After at once and answers what runs, ending it early with finish_reason "length" when
  it would outlast the drain; no worker restarts.
- test_sigterm_to_the_container_...: SIGTERM as SageMaker sends it, both halves: every request is answered (the
  running ones whole with 200, the waiting one and one sent after the signal with 503 and Retry-After), then
  TorchServe and its worker stop on their own once those answers are out, before the agent's bound and SageMaker's
  kill, and a new connection is refused (the listener is closed: what SageMaker sees of an instance that is gone).
- test_sigterm_to_the_container_with_static_batching_...: the agent does not signal a statically batched worker
  (TorchServe's Python worker would die of it) and still waits for its batch.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import serving_stack
from conftest import all_ready, restarts, wait_until

PRESET = "lowCost"
TIME_SCALE = 0.25
TIME_LIMIT_SECONDS = 6
JSON = {"Content-Type": "application/json"}
DRAINING = serving_stack.CONTRACT["endpoint"]["draining"]
SAGEMAKER_KILL_SECONDS = DRAINING["sagemakerKillSeconds"]


def start_server(root, time_limit: float | None = None, preset: str = PRESET) -> serving_stack.ModelServer:
    overrides = {"FAKE_NEURON_TIME_SCALE": str(TIME_SCALE)}
    if time_limit is not None:
        overrides[serving_stack.ENDPOINT_ENV["generationTimeLimit"]] = str(time_limit)
    server = serving_stack.ModelServer(root, serving_stack.read_deployment(preset), load_seconds=3, overrides=overrides)
    server.start()
    if not wait_until(lambda: all_ready(server), 120):
        server.stop()
        pytest.fail(f"the workers are not READY\n{server.logs()[-4000:]}")
    server.first_workers = server.workers()
    return server


def chat(content: str, max_new_tokens: int) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}], "max_new_tokens": max_new_tokens}).encode()


def in_thread(function, *args, **kwargs):
    result: list = []
    started = time.monotonic()

    def run():
        try:
            result.append((function(*args, **kwargs), time.monotonic() - started))
        except OSError as error:
            result.append((error, time.monotonic() - started))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.xdist_group("sigterm-worker")
def test_sigterm_to_the_worker_refuses_what_waits_and_comes_and_answers_what_runs(tmp_path):
    server = start_server(tmp_path, TIME_LIMIT_SECONDS)
    try:
        slots = int(server.deployment.environment[serving_stack.ENDPOINT_ENV["batchSize"]])
        running = [in_thread(server.invoke, chat("hello", 900), JSON) for _ in range(slots)]
        time.sleep(0.5)
        waiting = in_thread(server.invoke, chat("again", 5), JSON)
        time.sleep(0.5)
        (worker,) = server.workers()
        os.kill(server.host_pid(int(worker["pid"])), signal.SIGTERM)
        time.sleep(0.3)
        sent = time.monotonic()
        later = server.invoke(chat("world", 5), JSON)
        refused_in = time.monotonic() - sent
        for thread, _ in [*running, waiting]:
            thread.join()

        assert later.status == 503 and refused_in < 1, (later.status, refused_in)
        assert later.json()["retry_after_seconds"] == 5 and "shutting down" in later.json()["error"]
        assert {k.lower(): v for k, v in later.headers.items()}["retry-after"] == "5"
        ((waited, _),) = waiting[1]
        assert waited.status == 503 and "shutting down" in waited.json()["error"]
        for _, result in running:
            ((answer, seconds),) = result
            assert answer.status == 200 and answer.json()["finish_reason"] == "length", answer.body[:300]
            assert 0 < answer.json()["usage"]["completion_tokens"] < 900 and seconds < TIME_LIMIT_SECONDS + 2
        assert restarts(server, server.first_workers) == []
    finally:
        server.stop()


def model_server_processes(server: serving_stack.ModelServer) -> list[str]:
    """The command lines of TorchServe's JVM and its workers, as they run in the server's PID namespace."""
    namespace = server._pid_namespace()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if os.readlink(cmdline.parent / "ns" / "pid") != namespace:
                continue
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        if "org.pytorch.serve.ModelServer" in command or "model_service_worker" in command:
            found.append(command)
    return found


@pytest.mark.xdist_group("sigterm-container")
def test_sigterm_to_the_container_answers_what_runs_refuses_what_waits_and_stops_before_the_kill(tmp_path):
    server = start_server(tmp_path)
    try:
        slots = int(server.deployment.environment[serving_stack.ENDPOINT_ENV["batchSize"]])
        running = [in_thread(server.invoke, chat("hello", 300), JSON) for _ in range(slots)]  # about 9 s each
        time.sleep(0.5)
        waiting = in_thread(server.invoke, chat("again", 5), JSON)
        time.sleep(0.5)
        signalled = time.monotonic()
        os.kill(server._namespace_init(), signal.SIGTERM)  # the container's first process: toolkit 2.0.25's serve
        time.sleep(0.5)
        later = server.invoke(chat("world", 5), JSON)  # the listener stays open while the workers drain
        refused_in = time.monotonic() - signalled
        for thread, _ in [*running, waiting]:
            thread.join(SAGEMAKER_KILL_SECONDS)
        answered = time.monotonic() - signalled
        stopped = wait_until(lambda: not model_server_processes(server), SAGEMAKER_KILL_SECONDS - answered, 0.2)
        stopped_at = time.monotonic() - signalled

        assert later.status == 503 and "shutting down" in later.json()["error"] and refused_in < 2, later.body[:300]
        assert {k.lower(): v for k, v in later.headers.items()}["retry-after"] == "5"
        ((waited, _),) = waiting[1]
        assert not isinstance(waited, OSError), f"no answer: {waited!r}"
        assert waited.status == 503 and "shutting down" in waited.json()["error"], waited.body[:300]
        assert {k.lower(): v for k, v in waited.headers.items()}["retry-after"] == "5"
        for _, result in running:
            ((answer, seconds),) = result
            assert not isinstance(answer, OSError), f"no answer: {answer!r} after {seconds:.2f} s"
            assert answer.status == 200 and answer.json()["finish_reason"] in ("stop", "length"), answer.body[:300]
            assert answer.json()["usage"]["completion_tokens"] > 0 and seconds < SAGEMAKER_KILL_SECONDS
        # TorchServe stopped on its own before the kill, once its jobs were answered: before its bound had passed.
        assert stopped and stopped_at < DRAINING["frontendWaitSeconds"], (stopped_at, answered)
        with pytest.raises(ConnectionRefusedError):
            server.invoke(chat("once more", 5), JSON)
    finally:
        server.stop()


@pytest.mark.xdist_group("sigterm-static")
def test_sigterm_to_the_container_with_static_batching_waits_for_the_batch_without_signalling_its_worker(tmp_path):
    # TorchServe's Python worker has no TERM handler under static batching (it would die with its batch): the agent
    # leaves it alone and waits for the batch all the same.
    server = start_server(tmp_path, preset="staticBatching")
    try:
        thread, result = in_thread(server.invoke, chat("hello", 300), JSON)  # about 6 s
        time.sleep(1.0)
        signalled = time.monotonic()
        os.kill(server._namespace_init(), signal.SIGTERM)
        thread.join(SAGEMAKER_KILL_SECONDS)
        stopped = wait_until(lambda: not model_server_processes(server), SAGEMAKER_KILL_SECONDS, 0.2)
        stopped_at = time.monotonic() - signalled

        ((answer, seconds),) = result
        assert not isinstance(answer, OSError), f"no answer: {answer!r} after {seconds:.2f} s"
        assert answer.status == 200 and answer.json()["finish_reason"] in ("stop", "length"), answer.body[:300]
        assert "SIGTERM: sent to 0 worker(s)" in server.logs()
        assert stopped and stopped_at < DRAINING["frontendWaitSeconds"], stopped_at
    finally:
        server.stop()
