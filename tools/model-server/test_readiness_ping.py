"""SageMaker's health check, GET /ping, against the model's load: the library's plugin (runtime/inference/readiness/)
answers 200 only while a worker has loaded the model, where TorchServe 0.11.0's own /ping answers 200 from the start.
Each test on a server of its own (lowCost: one worker) whose load takes LOAD_SECONDS: long enough to see the health
check answer throughout it (its length against TorchServe's timeouts is test_model_server.py's subject)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import STARTUP_MARGIN_SECONDS, start_server, wait_until
from serving_stack import ENDPOINT_ENV, RUNTIME

NOT_READY = 503
LOAD_SECONDS = 20


def watch_ping(server, until: float) -> list[tuple[bool, int | None, bool]]:
    """(a worker READY before the ping, the ping's status, a worker READY after it) about once a second, until
    `until` (a time.time()) or the first 200 after a READY worker. The model's workers only become READY once their
    load is done, and stay so, so the two reads bracket the ping."""
    seen = []
    while time.time() < until:
        before = any_worker_ready(server)
        status = server.ping()
        after = any_worker_ready(server)
        seen.append((before, status, after))
        if before and status == 200:
            break
        time.sleep(1)
    return seen


def any_worker_ready(server) -> bool:
    try:
        return any(worker["status"] == "READY" for worker in server.workers())
    except (OSError, AssertionError):
        return False  # the management API is not up yet, or the model is not registered yet


def wrong_answers(seen: list[tuple[bool, int | None, bool]]) -> list[tuple[bool, int | None, bool]]:
    """A 200 with no worker READY after it, or anything but 200 with a worker READY before it (None: the server
    was not listening yet, which SageMaker also counts as not ready)."""
    return [s for s in seen if (s[1] == 200 and not s[2]) or (s[0] and s[1] != 200)]


def test_ping_is_503_until_a_worker_has_loaded_the_model_and_again_while_it_reloads(tmp_path):
    server = start_server(tmp_path, "lowCost", load_seconds=LOAD_SECONDS)
    try:
        seen = watch_ping(server, time.time() + LOAD_SECONDS + STARTUP_MARGIN_SECONDS)
        assert "Loading plugin for endpoint ping" in server.logs()  # TorchServe's PluginsManager found the jar
        assert seen and seen[-1][:2] == (True, 200), f"no 200 once the worker was READY: {seen[-5:]}"
        assert not wrong_answers(seen), wrong_answers(seen)
        loading = [s for s in seen if s[1] == NOT_READY]
        # The load takes LOAD_SECONDS from the worker's start; the server answers long before it ends.
        assert len(loading) >= LOAD_SECONDS / 2, f"only {len(loading)} answers during the load: {seen}"

        # A worker that dies is started again by TorchServe and loads again: not ready meanwhile (one worker here).
        (worker,) = server.workers()
        os.kill(server.host_pid(int(worker["pid"])), signal.SIGKILL)
        assert wait_until(lambda: server.ping() == NOT_READY, 30), "ping stayed 200 after the only worker died"
        seen = watch_ping(server, time.time() + LOAD_SECONDS + STARTUP_MARGIN_SECONDS)
        assert seen and seen[-1][:2] == (True, 200), f"no 200 once the restarted worker was READY: {seen[-5:]}"
        assert not wrong_answers(seen), wrong_answers(seen)
    finally:
        server.stop()


def test_without_the_plugin_ping_is_200_while_the_model_loads(tmp_path):
    """The defect the plugin fixes, on the same stack with the endpoint's JVM options removed: TorchServe 0.11.0
    counts a loading worker as healthy (frontend wlm/WorkerThread.java isHealthy, util/ApiUtils.java isModelHealthy;
    pytorch/serve issue 2434), so SageMaker would send requests to an instance that cannot answer for minutes."""
    server = start_server(tmp_path, "lowCost", load_seconds=LOAD_SECONDS, **{ENDPOINT_ENV["javaOptions"]: ""})
    try:
        assert wait_until(server.claims, STARTUP_MARGIN_SECONDS), "no worker started loading"
        # The worker has claimed its cores: it is loading, for LOAD_SECONDS from then.
        assert server.ping() == 200
        assert not any_worker_ready(server)
    finally:
        server.stop()


def test_the_committed_jar_is_what_its_source_builds():
    """The endpoint places the committed jar; it must be the plugin's source compiled against this TorchServe."""
    build = RUNTIME / "inference" / "readiness" / "build.py"
    result = subprocess.run([sys.executable, str(build), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
