"""Static batching on the image's own TorchServe and toolkit: a custom strategy of three workers on highPerformance's
instance (static-batching-app.ts; both presets batch continuously on one worker), compiled for a batch of more than
one, as its template configures it (the toolkit's SAGEMAKER_TS_* variables). The toolkit turns them into a per-model
config that would otherwise give the model one worker and a 60 s response timeout (toolkit 2.0.25 ts_environment.py
defaults): the slow load and the worker count show that it does not. Then concurrent requests, one of them bad, are
answered, some generated together in one model call (on the session's shared server of that template).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW_LOAD_SECONDS, STARTUP_MARGIN_SECONDS, STATIC_BATCHING, all_ready, wait_until
from serving_stack import CONTRACT, ENDPOINT_ENV, request

PRESET = STATIC_BATCHING
JSON = {"Content-Type": "application/json"}


def batch_size(server) -> int:
    """The compiled batch size the template gives the endpoint (more than one: batching is on)."""
    size = int(server.deployment.environment[ENDPOINT_ENV["batchSize"]])
    assert size > 1, f"{PRESET}'s template compiles batch size {size}: nothing to batch"
    return size


def model_description(server) -> dict:
    status, body = request("GET", "/models/model", port=server.ports.management)
    assert status == 200, body[:500]
    (model,) = json.loads(body)
    return model


@pytest.mark.xdist_group(f"slow-{PRESET}")
def test_the_slow_load_completes_on_every_worker_with_the_batch_settings(slow_loaded):
    server = slow_loaded(PRESET)
    assert wait_until(lambda: all_ready(server), SLOW_LOAD_SECONDS + STARTUP_MARGIN_SECONDS, interval=2), (
        f"not {server.deployment.workers} READY workers: {server.claims()}"
    )
    assert len(server.claims()) == server.deployment.workers == 3, "a worker loaded twice (killed by a timeout?)"
    model = model_description(server)
    assert (model["batchSize"], model["maxBatchDelay"]) == (
        batch_size(server),
        CONTRACT["endpoint"]["batching"]["maxBatchDelayMilliseconds"],
    )
    assert (model["minWorkers"], model["maxWorkers"]) == (3, 3)


@pytest.mark.xdist_group(PRESET)
def test_a_bad_request_in_a_batch_gets_its_4xx_and_the_others_are_answered_together(served):
    server = served(PRESET)
    # Prompts of different lengths, so that the device's record shows which were generated in one call.
    bodies = [
        json.dumps({"messages": [{"role": "user", "content": " ".join(["hello"] * (index + 1))}], "max_new_tokens": 8})
        for index in range(8)
    ]
    bodies[2] = json.dumps({"messages": [{"role": "user", "content": "hello"}], "top_k": 0})
    bodies[5] = "{"
    before = len(server.generations())
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: server.invoke(body.encode(), JSON), bodies))
    statuses = [answer.status for answer in answers]
    assert statuses == [200, 200, 400, 200, 200, 400, 200, 200], [answer.body[:200] for answer in answers]
    assert answers[2].reason.startswith("top_k must be an integer >= 1")
    assert all(answer.json()["usage"]["completion_tokens"] == 8 for answer in answers if answer.status == 200)
    calls = server.generations()[before:]
    rows_per_call = [len(set(call["promptTokens"])) for call in calls]
    assert sum(rows_per_call) == 6 and max(rows_per_call) >= 2, calls
    assert {call["batch"] for call in calls} <= {1, batch_size(server)}  # the compiled sizes only
