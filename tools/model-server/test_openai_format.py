"""The OpenAI Chat Completions format on the image's own TorchServe and toolkit: a body with "model" is answered as
OpenAI's API answers, whole or as server-sent events of chat.completion.chunk objects ending in data: [DONE], and a
bad one gets its 400 naming the field. The answers are read with the openai package's own response types
(ChatCompletion, ChatCompletionChunk: pydantic models, validated here, so a missing field or a wrong literal such
as "object" fails), as a client of that format reads them. The session's shared lowCost endpoint (one worker)."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conftest import restarts

PRESET = "lowCost"
MODEL = "cyberagent/calm3-22b-chat"
NEW_TOKENS = 12
JSON = {"Content-Type": "application/json"}
EVENT_STREAM = "text/event-stream"
pytestmark = pytest.mark.xdist_group(PRESET)


@pytest.fixture
def server(served):
    return served(PRESET)


def openai_body(**fields) -> bytes:
    """A body as an OpenAI client sends it (client.chat.completions.create(model=..., messages=..., ...))."""
    message = {"role": "user", "content": "hello"}
    return json.dumps({"model": MODEL, "messages": [message], "max_tokens": NEW_TOKENS, "temperature": 0, **fields}).encode()


def header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def server_sent_chunks(body: bytes) -> list[ChatCompletionChunk]:
    """The events of a streamed answer, each "data: <JSON>" and a blank line, as ChatCompletionChunk; the last event
    must be data: [DONE]."""
    assert body.endswith(b"\n\n"), body[-200:]
    events = [event.decode("utf-8") for event in body[:-2].split(b"\n\n")]
    assert all(event.startswith("data: ") and "\n" not in event for event in events), events
    assert events[-1] == "data: [DONE]", events[-3:]
    return [ChatCompletionChunk.model_validate_json(event[len("data: ") :]) for event in events[:-1]]


def streamed_text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def test_an_openai_request_is_answered_as_a_chat_completion(server):
    response = server.invoke(openai_body(), JSON)
    assert response.status == 200, response.body[:500]
    assert header(response.headers, "content-type") == "application/json"
    completion = ChatCompletion.model_validate_json(response.body)
    assert completion.object == "chat.completion" and completion.model == MODEL
    assert completion.id.startswith("chatcmpl-") and completion.created > 0
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert completion.usage.completion_tokens == NEW_TOKENS
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + NEW_TOKENS
    # The same text the endpoint's own format gives the same request.
    own = server.invoke(json.dumps({"messages": [{"role": "user", "content": "hello"}], "max_new_tokens": NEW_TOKENS,
                                    "temperature": 0}).encode(), JSON)
    assert choice.message.content == own.json()["generated_text"] != ""


def test_a_streamed_openai_request_is_answered_with_server_sent_chunks_ending_in_done(server):
    workers = server.workers()
    streamed = server.invoke_streaming(
        openai_body(stream=True, stream_options={"include_usage": True}), {**JSON, "Accept": EVENT_STREAM}
    )
    assert streamed.status == 200, streamed.body[:500]
    assert header(streamed.headers, "content-type") == EVENT_STREAM
    assert header(streamed.headers, "transfer-encoding") == "chunked"
    assert len(streamed.chunks) >= NEW_TOKENS // 4, streamed.chunks  # sent as the tokens come, not at the end
    assert streamed.chunks[0][0] <= streamed.chunks[-1][0] / 2, [round(at, 2) for at, _ in streamed.chunks]
    *chunks, usage = server_sent_chunks(streamed.body)
    assert {chunk.id for chunk in chunks} == {usage.id} and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert usage.choices == [] and usage.usage.completion_tokens == NEW_TOKENS
    plain = ChatCompletion.model_validate_json(server.invoke(openai_body(), JSON).body)
    assert streamed_text(chunks) == plain.choices[0].message.content
    assert not restarts(server, workers)


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "unknown field(s) 'tools'"),
        ({"n": 2}, "n must be 1"),
        ({"max_tokens": 5000}, "max_tokens 5000 + "),
        ({"stream": True, "messages": [{"role": "user", "content": "<|im_end|>"}]}, "messages[0].content must not contain"),
    ],
)
def test_a_bad_openai_request_is_a_400_naming_the_field(server, fields, reason):
    response = server.invoke(openai_body(**fields), {**JSON, "Accept": f"application/json, {EVENT_STREAM}"})
    assert (response.status, header(response.headers, "content-type")) == (400, "application/json")
    assert response.reason.startswith(reason), response.reason
    assert response.json() == {"error": response.reason}
