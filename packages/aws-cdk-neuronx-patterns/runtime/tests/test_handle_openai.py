"""The OpenAI Chat Completions format on the same endpoint (neuronx_openai.py, contract endpoint.chatCompletions): a
body with "model" is read and answered as OpenAI's API does, whole or as server-sent events, with the checks and
limits of the endpoint's own format; a body without it means what it always meant. Driven through handle() as
TorchServe 0.11.0 drives it, in the static-batching path (the frontend of test_handle_streaming.py) and step by step
(the frontend of test_handle_continuous.py)."""

import json
import time

import pytest

import inference
import neuronx_openai
from chat_tokenizer import VOCAB
from conftest import JSON, FakeClock, FakeSampler
from test_handle_continuous import IM_END, STEP_SECONDS
from test_handle_continuous import answer as step_answer
from test_handle_continuous import frontend as step_frontend  # noqa: F401 (a fixture)
from test_handle_continuous import lines as step_lines
from test_handle_streaming import HELLO, FailingAfter, frontend, request, start, start_bytes, words  # noqa: F401

MODEL = "cyberagent/calm3-22b-chat"
SSE = "text/event-stream"
JSONLINES = "application/jsonlines"


def chat(headers=None, **fields):
    """A Chat Completions request as an OpenAI client writes it."""
    return (json.dumps({"model": MODEL, "messages": HELLO, **fields}).encode(), headers or {"Content-Type": JSON})


def sse_events(chunks) -> list:
    """The data of each server-sent event in `chunks` (each chunk whole events), "[DONE]" as the string."""
    assert all(chunk.endswith(b"\n\n") for chunk in chunks), chunks
    data = b"".join(chunks)
    events = []
    for event in data[:-2].split(b"\n\n"):
        assert event.startswith(b"data: ") and b"\n" not in event, event
        payload = event[len(b"data: ") :].decode("utf-8")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def content(events) -> str:
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e.get("choices"))


# ---------------------------------------------------------------------------------------------
# Which format a body is in


def test_a_body_with_model_is_answered_as_a_chat_completion_with_the_text_of_the_own_format(start):
    server = start(FakeSampler(words("hello", "world", "<|im_end|>")))
    own, openai = server.invoke_batch([request(temperature=0), chat(temperature=0)])
    assert (openai.status, openai.content_type, len(openai.chunks)) == (200, JSON, 1)
    body = json.loads(openai.chunks[0])
    plain = json.loads(own.chunks[0])
    assert abs(body.pop("created") - time.time()) < 60
    assert body == {
        "id": "chatcmpl-request-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello world"}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9},
    }
    assert plain == {"generated_text": "hello world", "usage": {"prompt_tokens": 6, "completion_tokens": 3},
                     "finish_reason": "stop"}


@pytest.mark.parametrize(
    "fields",
    [{}, {"temperature": 1.0, "top_p": 0.9, "stop": ["STOP"]}, {"stream": False, "max_new_tokens": 4}, {"role": ""}],
)
def test_a_body_without_model_keeps_the_own_format(start, fields):
    answer = start(FakeSampler(words("hello", "world", "<|im_end|>"))).invoke(**fields)
    assert answer.status == 200 and set(json.loads(answer.chunks[0])) == {"generated_text", "usage", "finish_reason"}


@pytest.mark.parametrize(
    "body, phrase",
    [
        # The own format's fields in an OpenAI body, and OpenAI's in the own format: each refused, named.
        ({"model": MODEL, "messages": HELLO, "max_new_tokens": 5}, "unknown field(s) 'max_new_tokens'; allowed: model,"),
        ({"model": MODEL, "messages": HELLO, "top_k": 5}, "unknown field(s) 'top_k'"),
        ({"model": MODEL, "messages": HELLO, "role": "narrator"}, "unknown field(s) 'role'"),
        ({"messages": HELLO, "max_tokens": 5}, "unknown field(s) 'max_tokens'; allowed: messages,"),
        ({"messages": HELLO, "n": 1}, "unknown field(s) 'n'"),
    ],
)
def test_the_fields_of_one_format_are_refused_in_the_other(start, body, phrase):
    answer = start(FakeSampler(words("bye", "<|im_end|>"))).invoke_batch(
        [(json.dumps(body).encode(), {"Content-Type": JSON})]
    )[0]
    assert (answer.status, answer.content_type) == (400, JSON)
    assert answer.phrase.startswith(phrase) and json.loads(answer.chunks[0]) == {"error": answer.phrase}


# ---------------------------------------------------------------------------------------------
# The request's fields


@pytest.mark.parametrize(
    "fields, phrase",
    [
        ({"tools": [{"type": "function"}]}, "unknown field(s) 'tools'"),
        ({"response_format": {"type": "json_object"}}, "unknown field(s) 'response_format'"),
        ({"logit_bias": {"1": 5}}, "unknown field(s) 'logit_bias'"),
        ({"n": 2}, "n must be 1: this endpoint generates one choice per request, got 2"),
        ({"n": True}, "n must be 1"),
        ({"frequency_penalty": 0.5}, "frequency_penalty must be 0"),
        ({"presence_penalty": -1}, "presence_penalty must be 0"),
        ({"logprobs": True}, "logprobs must be false"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"user": 5}, "user must be a string"),
        ({"stream_options": {"include_usage": True}}, "stream_options is only allowed with stream: true"),
        ({"stream": True, "stream_options": {"include_usage": True, "x": 1}}, "stream_options has unknown field(s) 'x'"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage must be true or false"),
        ({"stream": "yes"}, "stream must be true or false, got 'yes'"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 1, got 0"),
        ({"max_completion_tokens": 2.5}, "max_completion_tokens must be an integer >= 1"),
        ({"max_tokens": 5, "max_completion_tokens": 5}, "max_tokens and max_completion_tokens are the same limit"),
        ({"max_tokens": 10**400}, "max_tokens an integer of more than 40 digits + 6 prompt tokens exceed"),
        ({"temperature": 2.5}, "temperature must be a number in 0.0 to 2.0, got 2.5"),
        ({"top_p": 0}, "top_p must be a number in (0.0, 1.0], got 0"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop must be a string or a list of at most 4 strings"),
        ({"stop": ""}, "stop must be a string or a list"),
        ({"model": ""}, "model must be a string of 1 to 256 characters"),
        ({"model": "m" * 257}, "model must be a string of 1 to 256 characters"),
        ({"model": None}, "model must be a string"),
        ({"model": "\ud800"}, "model must be a string of 1 to 256 characters, got '\\ud800'"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0] has unknown field(s) 'tool_call_id'"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role must be one of system, developer, user, assistant, got 'tool'"),
        ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages[0] has unknown field(s) 'name'"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content must be a string or a non-empty list of text parts"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type must be text (this model reads text only), got 'image_url'",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "messages[0].content[0].text must be a string"),
        ({"messages": [{"role": "user", "content": "<|im_end|>"}]}, "messages[0].content must not contain '<|im_end|>'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a<|im_start|>"}]}]},
            "messages[0].content must not contain '<|im_start|>'",
        ),
    ],
)
def test_a_bad_field_is_a_400_naming_it(start, fields, phrase):
    answer = start(FakeSampler(words("bye", "<|im_end|>"))).invoke_batch([chat(**fields)])[0]
    assert (answer.status, answer.content_type, len(answer.chunks)) == (400, JSON, 1)
    assert answer.phrase.startswith(phrase), answer.phrase
    assert answer.phrase.isascii() and len(answer.phrase) <= 200
    assert json.loads(answer.chunks[0]) == {"error": answer.phrase}


def test_null_means_the_default_and_fields_at_their_default_are_accepted(start):
    server = start(FakeSampler(words("hello", "world", "<|im_end|>")))
    nulls = {field: None for field in neuronx_openai.REQUEST_FIELDS if field not in ("model", "messages")}
    defaults = {"n": 1, "frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": False, "seed": 7, "user": "u-1"}
    for fields in (nulls, defaults):
        answer = server.invoke_batch([chat(**fields)])[0]
        assert answer.status == 200, answer.phrase
        assert json.loads(answer.chunks[0])["choices"][0]["message"]["content"] == "hello world"


def test_the_sampling_fields_reach_the_model_with_openais_defaults(start):
    sampler = FakeSampler(words("hello", "<|im_end|>"))
    server = start(sampler)
    server.invoke_batch([chat()])
    server.invoke_batch([chat(max_tokens=7, temperature=0.5, top_p=0.9)])
    server.invoke_batch([chat(max_completion_tokens=9, temperature=0)])
    prompt = len(sampler.calls[0][0])
    # Without max_tokens, the endpoint's default (256); temperature and top_p OpenAI's (1); top_k the endpoint's.
    assert [call[1] for call in sampler.calls] == [
        {"sequence_length": prompt + 256, "top_k": 50, "top_p": 1.0, "temperature": 1.0},
        {"sequence_length": prompt + 7, "top_k": 50, "top_p": 0.9, "temperature": 0.5},
        {"sequence_length": prompt + 9, "top_k": 1, "top_p": 1.0, "temperature": 1.0},  # 0: greedy
    ]


def test_a_developer_message_is_a_system_message_and_text_parts_are_joined(start):
    sampler = FakeSampler(words("bye", "<|im_end|>"))
    server = start(sampler)
    own = {"messages": [{"role": "system", "content": "you are helpful"}, {"role": "user", "content": "hello world"}]}
    server.invoke_batch([(json.dumps(own).encode(), {"Content-Type": JSON})])
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]
    messages = [{"role": "developer", "content": "you are helpful"}, {"role": "user", "content": parts}]
    assert server.invoke_batch([chat(messages=messages)])[0].status == 200
    assert sampler.calls[1][0] == sampler.calls[0][0]  # the same prompt


@pytest.mark.parametrize("stop", ["again", ["again"], ["x", "again"]])
def test_stop_is_a_string_or_a_list_and_cuts_the_text(start, stop):
    answer = start(FakeSampler(words("hello", "world", "again", "bye", "<|im_end|>"))).invoke_batch([chat(stop=stop)])[0]
    choice = json.loads(answer.chunks[0])["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("hello world ", "stop")


def test_max_tokens_past_the_positions_is_a_400_naming_the_field_the_client_sent(start):
    server = start(FakeSampler(words("bye", "<|im_end|>")))
    for field in ("max_tokens", "max_completion_tokens"):
        answer = server.invoke_batch([chat(**{field: 1019})])[0]
        assert answer.status == 400
        assert answer.phrase == f"{field} 1019 + 6 prompt tokens exceed the model's 1024 positions; at most 1018 new tokens fit"
    assert server.invoke_batch([chat(max_tokens=1018)])[0].status == 200


def test_a_generation_ends_at_the_time_limit_with_length(serve, frontend):
    sampler = FakeSampler(filler=VOCAB["hello"], clock=FakeClock(), seconds_per_token=0.125)
    frontend.context = serve("chatml", sampler).context
    started = sampler.clock.now
    for fields in ({}, {"stream": True}):
        answer = frontend.invoke_batch([chat(max_tokens=1000, **fields)])[0]
        body = sse_events(answer.chunks)[-2] if fields else json.loads(answer.chunks[0])
        assert body["choices"][0]["finish_reason"] == "length"
    assert sampler.clock.now - started == pytest.approx(100.0)  # 50 s each


# ---------------------------------------------------------------------------------------------
# Streamed: server-sent events


def test_a_streamed_answer_is_server_sent_chunks_ending_in_done(start):
    server = start(FakeSampler(words("hello", "world", "again", "bye", "<|im_end|>")))
    plain = json.loads(server.invoke_batch([chat(temperature=0)])[0].chunks[0])
    answer = server.invoke_batch([chat(temperature=0, stream=True)])[0]
    assert (answer.status, answer.content_type) == (200, SSE)
    assert len(answer.chunks) >= 4  # a chunk per settled word, then the end
    events = sse_events(answer.chunks)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {(c["id"], c["object"], c["model"]) for c in chunks} == {("chatcmpl-request-0", "chat.completion.chunk", MODEL)}
    assert len({c["created"] for c in chunks}) == 1  # one request, one time
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert content(events) == plain["choices"][0]["message"]["content"] == "hello world again bye"
    assert all("usage" not in c for c in chunks)


def test_include_usage_adds_a_usage_chunk_before_done(start):
    answer = start(FakeSampler(words("hello", "world", "<|im_end|>"))).invoke_batch(
        [chat(stream=True, stream_options={"include_usage": True})]
    )[0]
    *chunks, usage, done = sse_events(answer.chunks)
    assert done == "[DONE]"
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_stop_string_spanning_tokens_is_never_sent_and_no_event_splits_a_character(start_bytes):
    server = start_bytes("日本語ですね。ですか？はい")
    answer = server.invoke_batch([chat(stop="ですか", stream=True)])[0]
    for chunk in answer.chunks:
        chunk.decode("utf-8")
    events = sse_events(answer.chunks)
    assert content(events) == "日本語ですね。"
    assert not any("か" in e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("accept, status", [(None, 200), (SSE, 200), ("text/*", 200), ("*/*", 200),
                                            (JSON, 406), ("application/*", 406), (JSONLINES, 406)])
def test_a_streamed_request_needs_an_accept_that_allows_event_streams(start, accept, status):
    headers = {"Content-Type": JSON, **({"Accept": accept} if accept else {})}
    answer = start(FakeSampler(words("bye", "<|im_end|>"))).invoke_batch([chat(headers, stream=True)])[0]
    assert answer.status == status
    if status == 406:
        assert answer.phrase.startswith("Accept must allow text/event-stream (the type of a streamed answer)")


def test_a_failure_after_the_first_event_ends_the_stream_with_an_error_event_and_done(start):
    server = start(FailingAfter(words("hello", "world", "again", "<|im_end|>"), tokens=3))
    answer = server.invoke_batch([chat(stream=True)])[0]
    assert (answer.status, answer.content_type) == (200, SSE)
    *chunks, error, done = sse_events(answer.chunks)
    assert content([*chunks, done]) == "hello world again"
    assert error == {"error": {"message": "internal error; the endpoint's log has the traceback (request request-0)",
                               "type": "server_error", "param": None, "code": None}}
    assert done == "[DONE]"


def test_one_batch_answers_each_request_in_its_own_format(start):
    sampler = FakeSampler(words("hello", "world", "again", "<|im_end|>"))
    server = start(sampler, batch_size=4)
    answers = server.invoke_batch(
        [chat(stream=True, temperature=0.5), request(stream=True, temperature=0.5), chat(temperature=0.5),
         chat(tools=[]), request(temperature=0.5)]
    )
    assert [(a.status, a.content_type) for a in answers] == [(200, SSE), (200, JSONLINES), (200, JSON), (400, JSON),
                                                              (200, JSON)]
    assert content(sse_events(answers[0].chunks)) == "hello world again"
    assert answers[1].streamed_text == "hello world again"
    assert json.loads(answers[2].chunks[0])["choices"][0]["message"]["content"] == "hello world again"
    assert json.loads(answers[4].chunks[0])["generated_text"] == "hello world again"
    assert sampler.batches == [4]  # the good ones, in one model call, whatever their format


# ---------------------------------------------------------------------------------------------
# Step by step (continuous batching)


def test_step_by_step_each_request_is_answered_in_its_own_format(step_frontend):
    front = step_frontend({"bye": ["hello", "world", "bye", IM_END]}, batch_size=5, time_limit=1.0)
    front.batch_size = 6
    sse = {"Content-Type": JSON, "Accept": SSE}

    def openai(content, **fields):
        return {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}

    # Both slots run from the first step; the rest come once the first answer has ended, when the scheduler has
    # measured how long a slot is held and lets them wait for one (admission, neuronx_admission.py).
    streamed = front.send(openai("bye", stream=True, stream_options={"include_usage": True}), sse)
    timed = front.send(openai("world", max_tokens=500, stream=True), sse)
    front.run(streamed)
    plain = front.send(openai("bye"))
    own = front.send({"messages": [{"role": "user", "content": "bye"}], "stream": True},
                     {"Content-Type": JSON, "Accept": JSONLINES})
    bad = front.send(openai("bye", max_new_tokens=3))
    front.run(streamed, plain, own, bad, timed)

    assert not streamed.violations and (streamed.status, streamed.content_type) == (200, SSE)
    assert len(streamed.chunks) > 1
    *chunks, usage, done = sse_events(streamed.chunks)
    assert content([*chunks, done]) == "hello world bye" and done == "[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert usage["usage"]["completion_tokens"] == 4 and usage["choices"] == []
    status, _, content_type, body = step_answer(plain)
    assert (status, content_type, body["object"]) == (200, JSON, "chat.completion")
    assert body["choices"][0]["message"]["content"] == "hello world bye"
    assert step_lines(own)[-1]["generated_text"] == "hello world bye"
    status, phrase, _, body = step_answer(bad)
    assert status == 400 and phrase.startswith("unknown field(s) 'max_new_tokens'") and body == {"error": phrase}
    assert not timed.violations and timed.content_type == SSE
    events = sse_events(timed.chunks)
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    assert len(content(events).split()) <= 1.0 / STEP_SECONDS + 1  # ended at its time limit
    assert not front.jobs and not inference._worker.steps.held
