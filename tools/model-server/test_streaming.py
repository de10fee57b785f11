"""Streamed answers on the image's own TorchServe and toolkit: a request with "stream": true is answered with
Transfer-Encoding: chunked, one JSON Lines chunk after another as the fake device generates the tokens, the first
long before the last; what they say adds up to the answer the same request gets without streaming; and in one
TorchServe batch a streamed, a plain and a bad request each get their own answer. The session's shared lowCost endpoint
as its template configures it (one worker, a compiled batch of more than one), so that requests queued behind a busy
worker are handed to the handler together.
"""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import restarts

PRESET = "lowCost"
JSON = {"Content-Type": "application/json"}
JSONLINES = "application/jsonlines"
NEW_TOKENS = 24
pytestmark = pytest.mark.xdist_group(PRESET)


@pytest.fixture
def server(served):
    server = served(PRESET)
    assert server.deployment.workers == 1, "the batch test needs requests to queue behind the only worker"
    return server


def body(words: int = 1, **fields) -> bytes:
    """A request whose prompt has `words` words: the device's record tells requests apart by prompt length."""
    message = {"role": "user", "content": " ".join(["hello"] * words)}
    return json.dumps({"messages": [message], "max_new_tokens": NEW_TOKENS, "temperature": 0, **fields}).encode()


def header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def test_a_streamed_answer_comes_in_chunks_as_the_tokens_are_generated(server):
    streamed = server.invoke_streaming(body(stream=True), JSON)
    assert streamed.status == 200, streamed.body[:500]
    assert header(streamed.headers, "transfer-encoding") == "chunked"
    assert header(streamed.headers, "content-type") == JSONLINES
    assert len(streamed.chunks) >= NEW_TOKENS // 4, streamed.chunks
    first, last = streamed.chunks[0][0], streamed.chunks[-1][0]
    per_token = server.deployment.seconds_per_token
    # The last chunk comes after all NEW_TOKENS steps; the first a few steps in, not at the end.
    assert last >= NEW_TOKENS * per_token * 0.9
    assert first <= last / 3, [round(at, 2) for at, _ in streamed.chunks]

    *deltas, end = streamed.lines()
    plain = server.invoke(body(), JSON)
    assert plain.status == 200 and header(plain.headers, "transfer-encoding") is None
    answer = plain.json()
    assert "".join(line["text"] for line in [*deltas, end]) == answer["generated_text"]
    assert {key: value for key, value in end.items() if key != "text"} == answer
    assert answer["usage"]["completion_tokens"] == NEW_TOKENS


def test_a_batch_with_a_streamed_a_plain_and_a_bad_request_answers_each(server):
    before = len(server.generations())
    with ThreadPoolExecutor(4) as pool:
        # A request that keeps the only worker busy (about 8 steps), so that the next three queue behind it and
        # TorchServe hands them to the handler as one batch (static batching), or they join it at the next steps
        # (continuous batching, this preset's).
        busy = pool.submit(server.invoke, body(words=1, max_new_tokens=8), JSON)
        time.sleep(2 * server.deployment.seconds_per_step)
        streamed = pool.submit(server.invoke_streaming, body(words=2, stream=True), JSON)
        plain = pool.submit(server.invoke, body(words=3), JSON)
        bad = pool.submit(server.invoke, body(words=4, stream="yes"), JSON)
        answers = busy.result(), streamed.result(), plain.result(), bad.result()
    busy, streamed, plain, bad = answers
    assert [answer.status for answer in answers] == [200, 200, 200, 400], [answer.body[:200] for answer in answers]
    assert bad.reason == "stream must be true or false, got 'yes'"
    assert header(streamed.headers, "transfer-encoding") == "chunked" and len(streamed.chunks) >= NEW_TOKENS // 4
    assert header(plain.headers, "content-type") == "application/json"
    assert "".join(line["text"] for line in streamed.lines()) == plain.json()["generated_text"]
    # The streamed and the plain request were generated together: in one model call (static batching), or in the
    # same decoding steps (continuous: each prompt encoded alone into its slot, then one step for every running row).
    calls = server.generations()[before:]
    if server.deployment.continuous_batching:
        prompts = [len(set(call["promptTokens"])) for call in calls if call["promptTokens"]]
        assert prompts == [1, 1, 1], calls  # busy, streamed, plain; the bad one never reached the device
        assert max(call["rows"] for call in calls if not call["promptTokens"]) >= 2, calls
    else:
        assert sorted(len(set(call["promptTokens"])) for call in calls) == [1, 2], calls


def test_a_client_that_hangs_up_mid_stream_restarts_no_worker(server):
    # A client (or SageMaker's front end for it) may close the connection after the first chunk; the handler keeps
    # sending chunks to TorchServe for a response nobody reads. That must not cost the worker (a restart reloads the
    # whole model): the generation ends as usual and the next request is answered.
    workers = server.workers()
    connection = http.client.HTTPConnection("127.0.0.1", server.ports.inference, timeout=30)
    connection.request("POST", "/invocations", body=body(words=5, stream=True), headers=JSON)
    response = connection.getresponse()
    assert response.status == 200 and response.read1(65536)
    connection.close()
    time.sleep(NEW_TOKENS * server.deployment.seconds_per_token + 1)
    after = server.invoke_streaming(body(words=6, stream=True), JSON)
    assert after.status == 200 and "finish_reason" in after.lines()[-1]
    assert not restarts(server, workers)
