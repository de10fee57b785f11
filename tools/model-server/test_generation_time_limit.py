"""The generation time limit a caller chooses (the constructs' `generationTimeLimit`, which sets the contract's
generation time limit variable): lowCost on a server of its own with the limit at 25 s, as the README's API Gateway
snippet sets it to fit a REST API's 29 s integration timeout. A request for far more tokens than fit ends at the limit
with finish_reason "length", and the client has its answer before API Gateway would give up."""

from __future__ import annotations

import json
import time

import pytest

from conftest import SHORT_LOAD_SECONDS, STARTUP_MARGIN_SECONDS, all_ready, restarts, start_server, wait_until
from serving_stack import ENDPOINT_ENV

LIMIT_SECONDS = 25
API_GATEWAY_TIMEOUT_SECONDS = 29
"""A REST API integration's default timeout (shared FACTS.md)."""
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(
        tmp_path_factory.mktemp("time-limit"),
        "lowCost",
        load_seconds=SHORT_LOAD_SECONDS,
        **{ENDPOINT_ENV["generationTimeLimit"]: str(LIMIT_SECONDS)},
    )
    try:
        assert wait_until(lambda: all_ready(server), SHORT_LOAD_SECONDS + STARTUP_MARGIN_SECONDS), server.logs()[-3000:]
        yield server
    finally:
        server.stop()


def test_a_generation_ends_at_the_chosen_limit_with_length(server):
    workers = server.workers()
    wanted = 1000
    assert wanted * server.deployment.seconds_per_step > 2 * LIMIT_SECONDS  # it would run far past the limit
    body = json.dumps({"messages": [{"role": "user", "content": "hello"}], "max_new_tokens": wanted}).encode()
    started = time.time()
    response = server.invoke(body, JSON, timeout=2 * API_GATEWAY_TIMEOUT_SECONDS)
    elapsed = time.time() - started
    assert response.status == 200, (response.status, response.reason, response.body[:500])
    answer = response.json()
    assert answer["finish_reason"] == "length"
    # It generated until the limit, not much less and not past it (the answer comes within a step or two of it).
    assert 0.8 * LIMIT_SECONDS <= elapsed < API_GATEWAY_TIMEOUT_SECONDS, f"{elapsed:.1f} s"
    tokens = answer["usage"]["completion_tokens"]
    assert 0.8 * LIMIT_SECONDS / server.deployment.seconds_per_step <= tokens < wanted, tokens
    assert not restarts(server, workers)
