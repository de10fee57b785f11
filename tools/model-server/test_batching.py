"""Batched serving on the image's own TorchServe and toolkit: the highPerformance endpoint (three workers) compiled for a
batch of 4, configured as the constructs configure it (serving_stack.with_batch_size: the toolkit's SAGEMAKER_TS_*
variables). The toolkit turns them into a per-model config that would otherwise give the model one worker and a 60 s
response timeout (toolkit 2.0.21 ts_environment.py defaults): the slow load and the worker count show that it does
not. Then concurrent requests, one of them bad, are answered, some generated together in one model call.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW_LOAD_SECONDS, STARTUP_MARGIN_SECONDS, start_server, wait_until
from serving_stack import CONTRACT, MANAGEMENT_PORT, invoke, request

PRESET = "highPerformance"
BATCH_SIZE = 4
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("batched"), PRESET, batch_size=BATCH_SIZE)
    yield server
    server.stop()


def model_description(server) -> dict:
    status, body = request("GET", "/models/model", port=MANAGEMENT_PORT)
    assert status == 200, body[:500]
    (model,) = json.loads(body)
    return model


def test_the_slow_load_completes_on_every_worker_with_the_batch_settings(server):
    def all_ready():
        try:
            workers = server.workers()
        except (OSError, AssertionError):
            return None
        return len(workers) == server.deployment.workers and all(w["status"] == "READY" for w in workers)

    assert wait_until(all_ready, SLOW_LOAD_SECONDS + STARTUP_MARGIN_SECONDS, interval=2), (
        f"not {server.deployment.workers} READY workers: {server.claims()}"
    )
    assert len(server.claims()) == server.deployment.workers == 3, "a worker loaded twice (killed by a timeout?)"
    model = model_description(server)
    assert (model["batchSize"], model["maxBatchDelay"]) == (
        BATCH_SIZE,
        CONTRACT["endpoint"]["batching"]["maxBatchDelayMilliseconds"],
    )
    assert (model["minWorkers"], model["maxWorkers"]) == (3, 3)


def test_a_bad_request_in_a_batch_gets_its_4xx_and_the_others_are_answered_together(server):
    # Prompts of different lengths, so that the device's record shows which were generated in one call.
    bodies = [
        json.dumps({"messages": [{"role": "user", "content": " ".join(["hello"] * (index + 1))}], "max_new_tokens": 8})
        for index in range(8)
    ]
    bodies[2] = json.dumps({"messages": [{"role": "user", "content": "hello"}], "top_k": 0})
    bodies[5] = "{"
    before = len(server.generations())
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: invoke(body.encode(), JSON), bodies))
    statuses = [answer.status for answer in answers]
    assert statuses == [200, 200, 400, 200, 200, 400, 200, 200], [answer.body[:200] for answer in answers]
    assert answers[2].reason.startswith("top_k must be an integer >= 1")
    assert all(answer.json()["usage"]["completion_tokens"] == 8 for answer in answers if answer.status == 200)
    calls = server.generations()[before:]
    rows_per_call = [len(set(call["promptTokens"])) for call in calls]
    assert sum(rows_per_call) == 6 and max(rows_per_call) >= 2, calls
    assert {call["batch"] for call in calls} <= {1, BATCH_SIZE}  # the compiled sizes only
