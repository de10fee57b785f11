"""The library's handler under TorchServe 0.11.0's continuous batching, on the image's stack (toolkit 2.0.25 starting
TorchServe 0.11.0) and the fake device's continuous-batching model (fake_neuron: a context encoded at batch 1 into its
slot, every running sequence decoded in one step of the compiled slots, each at the calibrated cost).

The lowCost template batches continuously: the model dir holds what its compile and its code placement write (the
manifest's continuousBatching option, the model config YAML and MAR-INF/MANIFEST.json naming it;
test_torchserve_continuous_batching.py shows that this is how the setting reaches TorchServe)."""

from __future__ import annotations

import json
import threading
import time

import pytest

import serving_stack
from conftest import all_ready, restarts, wait_until
from openai.types.chat import ChatCompletion
from test_openai_format import EVENT_STREAM, openai_body, server_sent_chunks, streamed_text

PRESET = "lowCost"
TIME_LIMIT_SECONDS = 3
TIME_SCALE = 0.25
"""The fake device's steps at a quarter of lowCost's calibrated time (neuron_device.TIME_SCALE), as the benchmark
runs it: about 28 ms per decode step of 5 slots instead of 113 ms."""
JSON = {"Content-Type": "application/json"}

pytestmark = pytest.mark.xdist_group("cb-" + PRESET)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    deployment = serving_stack.read_deployment(PRESET)
    server = serving_stack.ModelServer(
        tmp_path_factory.mktemp("cb-" + PRESET), deployment, load_seconds=5,
        overrides={
            serving_stack.ENDPOINT_ENV["generationTimeLimit"]: str(TIME_LIMIT_SECONDS),
            "FAKE_NEURON_TIME_SCALE": str(TIME_SCALE),
        },
    )  # fmt: skip
    server.start()
    try:
        if not wait_until(lambda: all_ready(server), 120):
            pytest.fail(f"the workers are not READY\n{server.logs()[-4000:]}")
        server.first_workers = server.workers()
        yield server
    finally:
        server.stop()


def chat(content: str, **fields) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}], **fields}).encode()


def timed(function, *args, **kwargs):
    """Runs function in a thread: (thread, [(result, seconds from `started` when it returned)])."""
    result: list = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: result.append((function(*args, **kwargs), time.monotonic() - started)))
    thread.start()
    return thread, result, started


def header(response, name: str):
    return next((value for key, value in response.headers.items() if key.lower() == name), None)


def test_torchserve_batches_continuously_with_a_slot_of_room(server):
    assert server.deployment.continuous_batching, f"{PRESET}'s template does not batch continuously"
    slots = int(server.deployment.environment[serving_stack.ENDPOINT_ENV["batchSize"]])
    status, body = serving_stack.request("GET", "/models/model", port=server.ports.management)
    (model,) = json.loads(body)
    assert status == 200 and model["continuousBatching"] is True
    assert model["batchSize"] == slots + serving_stack.CONTRACT["endpoint"]["continuousBatching"]["jobsBeyondSlots"]
    assert model["minWorkers"] == model["maxWorkers"] == len(model["workers"]) == 1


def test_a_short_request_sent_while_a_long_one_generates_answers_before_the_long_one_ends(server):
    # 40 tokens: about 1.2 s of steps, well inside this server's 3 s time limit even on a busy machine.
    long_thread, long_result, started = timed(server.invoke, chat("hello", max_new_tokens=40), JSON)
    time.sleep(0.4)
    short = server.invoke(chat("bye"), JSON)
    short_done = time.monotonic() - started
    long_thread.join()
    ((long, long_done),) = long_result
    assert (short.status, short.json()["generated_text"], short.json()["finish_reason"]) == (200, "bye", "stop")
    assert long.status == 200 and long.json()["usage"]["completion_tokens"] == 40
    assert short_done < long_done - 0.3, (short_done, long_done)
    # The short one ran beside the long one: a decode step held both rows.
    assert any(record.get("rows", 0) >= 2 for record in server.generations())
    assert restarts(server, server.first_workers) == []


def test_a_bad_a_streamed_and_a_time_limited_request_in_one_running_batch_each_get_their_own_answer(server):
    limited_thread, limited_result, started = timed(server.invoke, chat("hello", max_new_tokens=900), JSON)
    time.sleep(0.5)
    streamed_thread, streamed_result, _ = timed(
        server.invoke_streaming, chat("again", max_new_tokens=30, stream=True),
        {**JSON, "Accept": "application/jsonlines"},
    )  # fmt: skip
    bad = server.invoke(chat("hello", temperature=5), JSON)
    plain = server.invoke(chat("world", max_new_tokens=5), JSON)
    streamed_thread.join()
    limited_thread.join()

    assert bad.status == 400 and bad.json() == {"error": bad.reason} and "temperature" in bad.reason
    assert header(bad, "content-length") and not header(bad, "transfer-encoding")
    assert plain.status == 200 and plain.json()["usage"]["completion_tokens"] == 5
    ((streamed, _),) = streamed_result
    lines = streamed.lines()
    assert streamed.status == 200 and header(streamed, "content-type") == "application/jsonlines"
    assert header(streamed, "transfer-encoding") == "chunked" and len(streamed.chunks) > 2
    assert "".join(line.get("text", "") for line in lines) == lines[-1]["generated_text"]
    assert lines[-1]["usage"]["completion_tokens"] == 30
    ((limited, limited_done),) = limited_result
    response = limited.json()
    assert limited.status == 200 and response["finish_reason"] == "length"
    assert 0 < response["usage"]["completion_tokens"] < 900
    assert TIME_LIMIT_SECONDS <= limited_done < TIME_LIMIT_SECONDS + 2, limited_done
    assert restarts(server, server.first_workers) == []


def test_openai_requests_step_by_step_each_get_their_own_format(server):
    # A streamed Chat Completions request and a plain one with the same body, generated side by side in the running
    # batch: server-sent chunks ending in data: [DONE], and a chat.completion with the same text.
    streamed_thread, streamed_result, _ = timed(
        server.invoke_streaming, openai_body(stream=True, max_tokens=20), {**JSON, "Accept": EVENT_STREAM}
    )
    time.sleep(0.2)
    plain = server.invoke(openai_body(max_tokens=20), JSON)
    streamed_thread.join()
    ((streamed, _),) = streamed_result
    assert streamed.status == 200 and header(streamed, "content-type") == EVENT_STREAM, streamed.body[:300]
    assert header(streamed, "transfer-encoding") == "chunked" and len(streamed.chunks) > 2
    chunks = server_sent_chunks(streamed.body)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "length"
    completion = ChatCompletion.model_validate_json(plain.body)
    assert plain.status == 200 and completion.usage.completion_tokens == 20
    assert streamed_text(chunks) == completion.choices[0].message.content
    assert restarts(server, server.first_workers) == []
