"""Batched generation: handle(batch, context) on a model compiled for a batch of 4, as TorchServe's dynamic
batching (SAGEMAKER_TS_BATCH_SIZE, SAGEMAKER_TS_MAX_BATCH_DELAY) hands it several requests at once. The good
requests of a batch are generated together; every request keeps its own checks, errors, stops and limits."""

import json

import pytest

from chat_tokenizer import VOCAB
from conftest import JSON, FakeClock, FakeSampler

BATCH = 4
HELLO = [{"role": "user", "content": "hello"}]


def body(**fields):
    return (json.dumps({"messages": HELLO, **fields}).encode(), {"Content-Type": JSON})


def words(*names):
    return [VOCAB[name] for name in names]


def summary(answers):
    return [(status, response.get("generated_text"), response.get("finish_reason")) for status, _, _, response in answers]


def test_the_requests_of_a_batch_are_generated_in_one_model_call(serve):
    server = serve("chatml", FakeSampler(words("bye", "<|im_end|>")), batch_size=BATCH)
    answers = server.invoke_batch([body()] * 3)
    assert summary(answers) == [(200, "bye", "stop")] * 3
    assert server.sampler.batches == [3]


def test_a_model_compiled_for_batch_1_generates_one_request_at_a_time_as_before(serve):
    server = serve("chatml", FakeSampler(words("bye", "<|im_end|>")))
    server.invoke_batch([body()] * 3)
    assert server.sampler.batches == [1, 1, 1]


def test_a_bad_request_gets_its_4xx_and_the_others_of_its_batch_are_generated_together(serve):
    server = serve("chatml", FakeSampler(words("bye", "<|im_end|>")), batch_size=BATCH)
    answers = server.invoke_batch(
        [
            body(),
            body(top_k=0),
            (json.dumps({"messages": HELLO}).encode(), {"Content-Type": "text/plain"}),
            body(),
            (b"{", {"Content-Type": JSON}),
            body(),
        ]
    )
    assert [(status, response.get("error", "")[:20]) for status, _, _, response in answers] == [
        (200, ""),
        (400, "top_k must be an int"),
        (415, "Content-Type must be"),
        (200, ""),
        (400, "body is not valid JS"),
        (200, ""),
    ]
    assert [phrase for _, phrase, _, _ in answers][1].startswith("top_k must be")
    assert server.sampler.batches == [3]


def test_each_row_stops_at_its_own_max_new_tokens_stop_string_and_end_of_turn(serve):
    sampler = FakeSampler(words("hello", "world", "again", "<|im_end|>"), filler=VOCAB["hello"])
    server = serve("chatml", sampler, batch_size=BATCH)
    answers = server.invoke_batch([body(max_new_tokens=2), body(stop=["again"]), body(max_new_tokens=9), body()])
    assert summary(answers) == [
        (200, "hello world", "length"),
        (200, "hello world ", "stop"),
        (200, "hello world again", "stop"),
        (200, "hello world again", "stop"),
    ]
    assert [response["usage"]["completion_tokens"] for *_, response in answers] == [2, 3, 4, 4]
    assert server.sampler.batches == [4]


def test_rows_of_different_lengths_go_on_until_their_own_limit(serve):
    server = serve("chatml", FakeSampler(filler=VOCAB["hello"]), batch_size=BATCH)
    answers = server.invoke_batch([body(max_new_tokens=3), body(max_new_tokens=7), body(max_new_tokens=1)])
    assert [response["usage"]["completion_tokens"] for *_, response in answers] == [3, 7, 1]
    assert [finish for *_, finish in summary(answers)] == ["length"] * 3
    assert server.sampler.batches == [3]


def test_more_requests_than_the_compiled_batch_take_several_calls(serve):
    server = serve("chatml", FakeSampler(words("bye", "<|im_end|>")), batch_size=BATCH)
    answers = server.invoke_batch([body()] * (BATCH + 2))
    assert summary(answers) == [(200, "bye", "stop")] * (BATCH + 2)
    assert server.sampler.batches == [BATCH, 2]


def test_requests_with_other_sampling_parameters_get_calls_of_their_own(serve):
    """transformers-neuronx 0.13's sample() takes one top_k, top_p and temperature for every row."""
    server = serve("chatml", FakeSampler(words("bye", "<|im_end|>")), batch_size=BATCH)
    server.invoke_batch([body(), body(temperature=0.0), body(), body(temperature=0.0, top_k=3), body(top_p=0.5)])
    assert server.sampler.batches == [2, 2, 1]
    assert [(call[1]["top_k"], call[1]["temperature"]) for call in server.sampler.calls[2:4]] == [(1, 1.0)] * 2


def test_requests_that_do_not_fit_the_positions_together_get_calls_of_their_own(serve):
    """Prompts are left-padded to the longest: a long prompt and a request for many new tokens may not fit
    n_positions (1024) together, though each fits alone."""
    server = serve("chatml", FakeSampler(words("bye", "<|im_end|>")), batch_size=BATCH)
    long_prompt = [{"role": "user", "content": " ".join(["hello"] * 500)}]
    answers = server.invoke_batch(
        [
            body(max_new_tokens=1000),
            (json.dumps({"messages": long_prompt, "max_new_tokens": 10}).encode(), {"Content-Type": JSON}),
            body(max_new_tokens=10),
        ]
    )
    assert [status for status, *_ in answers] == [200] * 3
    assert server.sampler.batches == [2, 1]
    assert max(call[1]["sequence_length"] for call in server.sampler.calls) <= 1024


def test_a_batch_generated_together_ends_inside_the_time_limit_with_every_row_answered(serve, contract, monkeypatch):
    monkeypatch.setenv(contract["endpoint"]["environment"]["generationTimeLimit"], "10")
    server = serve("chatml", FakeSampler(filler=VOCAB["hello"], clock=FakeClock(), seconds_per_token=1.0), batch_size=BATCH)
    started = server.clock.now
    answers = server.invoke_batch([body(max_new_tokens=100)] * 3)
    assert server.clock.now - started == pytest.approx(10.0)
    # Together, each row gets the whole time: 10 tokens each (one at a time, they shared 10 tokens in all).
    assert [(response["finish_reason"], response["usage"]["completion_tokens"]) for *_, response in answers] == [
        ("length", 10)
    ] * 3


def test_a_failing_model_call_fails_only_its_own_rows(serve):
    class Failing(FakeSampler):
        def __call__(self, prompts, **kwargs):
            if kwargs["temperature"] == 1.0:  # the greedy call
                raise RuntimeError("NRT error 1002")
            return super().__call__(prompts, **kwargs)

    server = serve("chatml", Failing(words("bye", "<|im_end|>")), batch_size=BATCH)
    answers = server.invoke_batch([body(), body(temperature=0.0), body(), body(temperature=0.0)])
    assert [status for status, *_ in answers] == [200, 500, 200, 500]
