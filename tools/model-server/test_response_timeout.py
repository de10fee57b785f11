"""TorchServe 0.11.0's response timeout and health check on a load slower than 60 s, each on a server of its own
(lowCost: one worker), after test_model_server.py's servers have stopped."""

from __future__ import annotations

import pytest

from conftest import SLOW_LOAD_SECONDS, STARTUP_MARGIN_SECONDS, start_server, wait_until

OLD_RESPONSE_TIMEOUT = "60"
"""TS_DEFAULT_RESPONSE_TIMEOUT as the endpoint set it before issue 10."""


def test_the_old_60_s_response_timeout_kills_the_loading_worker(tmp_path):
    """The defect the template's setting fixes: TorchServe 0.11.0 applies the response timeout to the worker's model
    load (pytorch/serve issue 2061), so a load slower than 60 s is killed and started again, for ever."""
    # At batch size 1, as before issue 13: no SAGEMAKER_TS_* variable, whose per-model responseTimeout would win.
    server = start_server(tmp_path, "lowCost", batch_size=1, TS_DEFAULT_RESPONSE_TIMEOUT=OLD_RESPONSE_TIMEOUT)
    try:
        first = wait_until(server.claims, STARTUP_MARGIN_SECONDS)
        assert first, "no worker started loading"
        # Killed at 60 s into its load, the worker comes back and claims its cores again, before it could finish.
        again = wait_until(lambda: len(server.claims()) >= 2, SLOW_LOAD_SECONDS + 30)
        workers = server.workers()
        assert again, f"the worker was not restarted: claims {server.claims()}, workers {workers}"
        claims = server.claims()
        assert claims[1]["at"] - claims[0]["at"] < SLOW_LOAD_SECONDS
        assert not any(worker["status"] == "READY" for worker in workers)
        assert "died" in server.logs()
    finally:
        server.stop()


@pytest.mark.xfail(
    strict=True,
    reason="TorchServe 0.11.0 answers /ping 200 'Healthy' while every worker is still loading: a worker counts as"
    " healthy unless it has been recovering for longer than max_retry_timeout_in_sec (frontend wlm/WorkerThread.java"
    " isHealthy, util/ApiUtils.java isModelHealthy; pytorch/serve issue 2434, aws/deep-learning-containers issue"
    " 2917). So SageMaker's health check passes before the model can answer. Strict: if this passes, it was fixed.",
)
def test_ping_fails_while_the_model_loads(tmp_path):
    server = start_server(tmp_path, "lowCost")
    try:
        assert wait_until(server.claims, STARTUP_MARGIN_SECONDS), "no worker started loading"
        # The worker has claimed its cores: it is loading, for SLOW_LOAD_SECONDS from then.
        assert server.ping() != 200
    finally:
        server.stop()
