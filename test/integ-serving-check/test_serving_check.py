"""The integ test's endpoint check (serving_check.py) against a stand-in for the SageMaker runtime client: it passes a
good endpoint and names what is wrong with a bad one."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest

import serving_check

ANSWER = "AIは暮らしを変えます。"


def jsonl(*messages: dict) -> bytes:
    return b"".join(json.dumps(m, ensure_ascii=False).encode() + b"\n" for m in messages)


def good_stream() -> bytes:
    return jsonl({"text": "AIは"}, {"text": "暮らしを"},
                 {"text": "変えます。", "generated_text": ANSWER, "finish_reason": "stop",
                  "usage": {"prompt_tokens": 20, "completion_tokens": 6}})


class Runtime:
    """Answers like an endpoint; `cuts` are where the streamed bytes are cut into parts, `pause` is the time before
    the last part; `invoke_endpoint` waits until `at_once` requests are in flight together and records the peak."""

    def __init__(self, at_once: int, streamed: bytes | None = None, cuts=(5, 9, 40), pause=0.3, answer=ANSWER,
                 events=None):
        self.barrier = threading.Barrier(at_once, timeout=2)
        self.streamed = good_stream() if streamed is None else streamed
        self.cuts, self.pause, self.answer, self.events = cuts, pause, answer, events
        self.bodies: list[dict] = []
        self.lock, self.in_flight, self.peak = threading.Lock(), 0, 0

    def invoke_endpoint(self, **request):
        self.bodies.append(json.loads(request["Body"]))
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        self.barrier.wait()  # breaks (an error) unless `at_once` requests are in flight together
        with self.lock:
            self.in_flight -= 1
        return {"Body": io.BytesIO(json.dumps({"generated_text": self.answer}).encode())}

    def invoke_endpoint_with_response_stream(self, **request):
        self.bodies.append(json.loads(request["Body"]))
        assert request["Accept"] == "application/jsonlines"
        return {"Body": self.events if self.events is not None else self._parts()}

    def _parts(self):
        edges = [0, *self.cuts, len(self.streamed)]
        pieces = [self.streamed[a:b] for a, b in zip(edges, edges[1:])]
        for index, piece in enumerate(pieces):
            if index == len(pieces) - 1:
                time.sleep(self.pause)
            yield {"PayloadPart": {"Bytes": piece}}


@pytest.fixture(autouse=True)
def endpoint(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "calm3")
    monkeypatch.setenv("REQUESTS_AT_ONCE", "3")


def test_a_good_endpoint_passes_with_lines_cut_across_parts_even_inside_a_character():
    runtime = Runtime(3, cuts=(5, 9, 40))  # byte 5 falls inside 'は' (UTF-8 bytes 4-6)
    assert serving_check.handler({}, None, client=runtime) == "ok"
    assert [b.get("stream", False) for b in runtime.bodies] == [False, False, False, True]
    assert runtime.peak == 3  # REQUESTS_AT_ONCE, all together


def test_an_answer_without_text_fails():
    with pytest.raises(AssertionError, match="an answer without text"):
        serving_check.handler({}, None, client=Runtime(3, answer=""))


def test_an_error_line_fails_with_its_message():
    streamed = jsonl({"text": "AIは"}, {"error": "the generation failed: device lost"})
    with pytest.raises(AssertionError, match="ended with an error: the generation failed: device lost"):
        serving_check.handler({}, None, client=Runtime(3, streamed=streamed, cuts=(3,)))


def test_pieces_that_do_not_add_up_fail():
    streamed = jsonl({"text": "AIは"}, {"text": "変えます。", "generated_text": ANSWER, "finish_reason": "stop",
                                      "usage": {}})
    with pytest.raises(AssertionError, match="the pieces add up to"):
        serving_check.handler({}, None, client=Runtime(3, streamed=streamed, cuts=(3,)))


def test_an_answer_held_until_the_end_is_not_streamed():
    # Every line in the last part, after the pause: the first line comes as late as the last.
    with pytest.raises(AssertionError, match="not streamed"):
        serving_check.handler({}, None, client=Runtime(3, cuts=()))


def test_a_stream_failure_event_fails():
    events = iter([{"ModelStreamError": {"Message": "timed out", "ErrorCode": "ModelInvocationTimeExceeded"}}])
    with pytest.raises(AssertionError, match="the stream failed: .*ModelInvocationTimeExceeded"):
        serving_check.handler({}, None, client=Runtime(3, events=events))


def test_a_stream_cut_inside_a_line_fails():
    with pytest.raises(AssertionError, match="ended inside a line"):
        serving_check.handler({}, None, client=Runtime(3, streamed=good_stream()[:-3]))


def test_the_code_fits_inline():
    # CloudFormation's Code.ZipFile takes up to 4096 characters (AWS::Lambda::Function Code, ZipFile), and the integ
    # test inlines this file so that its snapshot shows the code it runs.
    assert len(Path(serving_check.__file__).read_text(encoding="utf-8")) <= 4096
