"""TorchServe 0.11.0's response timeout on a load slower than 60 s, on a server of its own (lowCost: one worker). The
health check during the load: test_readiness_ping.py."""

from __future__ import annotations

from conftest import SLOW_LOAD_SECONDS, STARTUP_MARGIN_SECONDS, start_server, wait_until

OLD_RESPONSE_TIMEOUT = "60"
"""TS_DEFAULT_RESPONSE_TIMEOUT as the endpoint set it before issue 10."""


def test_the_old_60_s_response_timeout_kills_the_loading_worker(tmp_path):
    """The defect the template's setting fixes: TorchServe 0.11.0 applies the response timeout to the worker's model
    load (pytorch/serve issue 2061), so a load slower than 60 s is killed and started again, for ever."""
    # At batch size 1, as before issue 13: no SAGEMAKER_TS_* variable, whose per-model responseTimeout would win.
    server = start_server(
        tmp_path, "lowCost", batch_size=1, load_seconds=SLOW_LOAD_SECONDS, TS_DEFAULT_RESPONSE_TIMEOUT=OLD_RESPONSE_TIMEOUT
    )
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
