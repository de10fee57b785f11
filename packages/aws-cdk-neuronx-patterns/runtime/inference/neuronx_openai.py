"""The OpenAI Chat Completions format on the same endpoint (contract endpoint.chatCompletions): the request an
OpenAI client sends (https://platform.openai.com/docs/api-reference/chat/create) and the answer it expects, whole
or streamed as server-sent events. Plain Python (the standard library, the contract and neuronx_request).

Which format a body is in: a JSON object with the key "model" is a Chat Completions request; any other body is
this endpoint's own (neuronx_request.py). OpenAI's API requires "model" and its SDKs always send it, while this
endpoint's own format has no such field (a body with it was a 400 before), so the key alone decides, before any
field is read: no body changes its meaning, and none is read both ways. vLLM's, TGI's and LMI's SageMaker routes
choose by the body too, by a key only one format has ("messages" for them; here both formats have it).

Request (Content-Type application/json, UTF-8):
  {"model": str,                          required, 1 to 256 characters; any name: the endpoint serves its one
                                          model, and the answer repeats the name it was given
   "messages": [{"role": "system"|"developer"|"user"|"assistant",
                 "content": str | [{"type": "text", "text": str}, ...]}, ...],
                                          required, non-empty; a developer message is a system message; text
                                          parts are joined as they are; the same special-token checks as always
   "max_tokens" | "max_completion_tokens": int,   >= 1, prompt + it <= nPositions; default min(256, room)
   "temperature": number,                 0..2, default 1 (OpenAI's); 0 is greedy
   "top_p": number,                       (0, 1], default 1
   "stop": str | [str],                   up to 4 strings of 1 to 256 characters
   "stream": bool,                        default false; true: server-sent events (below)
   "stream_options": {"include_usage": bool},     only with stream true
   "n": 1, "seed": int, "user": str,      accepted: n only as 1; seed and user change nothing (the sampler here
                                          cannot be seeded per request; OpenAI itself promises determinism only
                                          as a best effort)
   "frequency_penalty": 0, "presence_penalty": 0, "logprobs": false}   accepted only at these defaults
Every field may also be null, which means its default. Any other field (tools, response_format, logit_bias, ...)
is a 400 naming it, as in the endpoint's own format; so is a message field other than role and content, a content
part other than text, and a message role of tool or function.

Answer: {"id": "chatcmpl-<TorchServe's request id>", "object": "chat.completion", "created": unix seconds,
"model", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null,
"finish_reason": "stop" | "length"}], "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}, the
text, usage and finish reason being those the endpoint's own format gives (neuronx_request.py).
Streamed (Accept must allow text/event-stream): text/event-stream, events "data: <chat.completion.chunk>\\n\\n" as
the text settles (the first delta carries role "assistant"), then a chunk with an empty delta and the
finish_reason, with include_usage a chunk with no choices and the usage, and last "data: [DONE]\\n\\n". A failure
after the first event ends the stream with "data: {"error": {"message", "type": "server_error", ...}}" and
"data: [DONE]". Errors before that are answered as in the endpoint's own format: the 4xx or 500 with
{"error": message naming the field}.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from neuronx_common import CONTRACT
from neuronx_request import (
    GREEDY_TEMPERATURE,
    JSON_CONTENT_TYPE,
    MAX_TEMPERATURE,
    GenerationRequest,
    bad_request,
    bounded_ascii,
    describe,
    is_int,
    is_number,
    is_text,
    parse_messages,
    parse_stop,
    reject_unknown_fields,
)

CHAT_COMPLETIONS = CONTRACT["endpoint"]["chatCompletions"]
SELECTOR_FIELD = CHAT_COMPLETIONS["selectorField"]
EVENT_STREAM_CONTENT_TYPE = CHAT_COMPLETIONS["streamContentType"]
ID_PREFIX = CHAT_COMPLETIONS["idPrefix"]
DONE_EVENT = f"data: {CHAT_COMPLETIONS['done']}\n\n".encode("ascii")

REQUEST_FIELDS = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "n",
    "seed",
    "user",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
)
STREAM_OPTIONS_FIELDS = ("include_usage",)
TEXT_PART_FIELDS = ("type", "text")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
"""OpenAI's roles this endpoint takes, as the chat template names them: a developer message (OpenAI's newer name for
instructions) is a system message."""
MAX_MODEL_CHARS = 256
"""The model name is repeated in every answer and every chunk of a stream: bounded, as any text the endpoint echoes."""
DEFAULT_TEMPERATURE = 1.0
"""OpenAI's default, not the endpoint's own 0.7: a Chat Completions body means what it means to OpenAI."""
DEFAULT_TOP_P = 1.0
ACCEPTED_ONLY_AT_DEFAULT = {
    "n": (lambda value: is_int(value) and value == 1, "1: this endpoint generates one choice per request"),
    "frequency_penalty": (lambda value: is_number(value) and value == 0, "0: this endpoint applies no penalties"),
    "presence_penalty": (lambda value: is_number(value) and value == 0, "0: this endpoint applies no penalties"),
    "logprobs": (lambda value: value is False, "false: this endpoint returns no log probabilities"),
}
"""Fields accepted only at the value (besides null) that asks for nothing this endpoint lacks."""


def is_chat_completion(payload: Any) -> bool:
    """Whether a decoded body is a Chat Completions request: a JSON object that names a model."""
    return isinstance(payload, dict) and SELECTOR_FIELD in payload


def _content(value: Any, field: str) -> str:
    """A message's content: a string, or a list of text parts joined as they are."""
    if is_text(value):
        return value
    if not isinstance(value, list) or not value:
        raise bad_request(f"{field} must be a string or a non-empty list of text parts, got {describe(value)}")
    texts = []
    for index, part in enumerate(value):
        part_field = f"{field}[{index}]"
        if not isinstance(part, dict):
            raise bad_request(f"{part_field} must be an object {{type: text, text}}, got {describe(part)}")
        if part.get("type") != "text":
            raise bad_request(f"{part_field}.type must be text (this model reads text only), got {describe(part.get('type'))}")
        reject_unknown_fields(part, TEXT_PART_FIELDS, owner=part_field)
        if not is_text(part.get("text")):
            raise bad_request(f"{part_field}.text must be a string of valid Unicode, got {describe(part.get('text'))}")
        texts.append(part["text"])
    return "".join(texts)


def _number(payload: Mapping[str, Any], field: str, default: float, low: float, high: float, open_low: bool) -> float:
    value = payload.get(field)
    if value is None:
        return default
    if not is_number(value) or not (low < value if open_low else low <= value) or value > high:
        bounds = f"({low}, {high}]" if open_low else f"{low} to {high}"
        raise bad_request(f"{field} must be a number in {bounds}, got {describe(value)}")
    return float(value)


def _max_tokens(payload: Mapping[str, Any]) -> tuple[int | None, str]:
    """The most new tokens asked, and the field that asked (max_completion_tokens is OpenAI's newer name)."""
    given = [field for field in ("max_tokens", "max_completion_tokens") if payload.get(field) is not None]
    if len(given) > 1:
        raise bad_request("max_tokens and max_completion_tokens are the same limit: give one of them")
    if not given:
        return None, "max_tokens"
    value = payload[given[0]]
    if not is_int(value) or value < 1:
        raise bad_request(f"{given[0]} must be an integer >= 1, got {describe(value)}")
    return value, given[0]


def _stream(payload: Mapping[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request(f"stream must be true or false, got {describe(stream)}")
    options = payload.get("stream_options")
    if options is None:
        return bool(stream), False
    if not stream:
        raise bad_request("stream_options is only allowed with stream: true")
    if not isinstance(options, dict):
        raise bad_request(f"stream_options must be an object {{include_usage}}, got {describe(options)}")
    reject_unknown_fields(options, STREAM_OPTIONS_FIELDS, owner="stream_options")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise bad_request(f"stream_options.include_usage must be true or false, got {describe(include_usage)}")
    return True, bool(include_usage)


def _check_accepted_only(payload: Mapping[str, Any]) -> None:
    for field, (accepted, expected) in ACCEPTED_ONLY_AT_DEFAULT.items():
        if payload.get(field) is not None and not accepted(payload[field]):
            raise bad_request(f"{field} must be {expected}, got {describe(payload[field])}")
    seed = payload.get("seed")
    if seed is not None and not is_int(seed):
        raise bad_request(f"seed must be an integer, got {describe(seed)}")
    user = payload.get("user")
    if user is not None and not is_text(user):
        raise bad_request(f"user must be a string of valid Unicode, got {describe(user)}")


def parse_chat_completion(payload: Mapping[str, Any], now: float | None = None) -> GenerationRequest:
    """Checks every field of a Chat Completions body (is_chat_completion); raises RequestError naming the field.
    `now` (unix seconds, default the wall clock) is the answer's `created`."""
    reject_unknown_fields(payload, REQUEST_FIELDS)
    model = payload[SELECTOR_FIELD]
    if not is_text(model) or not 0 < len(model) <= MAX_MODEL_CHARS:
        raise bad_request(f"model must be a string of 1 to {MAX_MODEL_CHARS} characters, got {describe(model)}")
    if "messages" not in payload:
        raise bad_request("messages is required")
    messages = parse_messages(payload["messages"], ROLES, _content)
    max_new_tokens, max_tokens_field = _max_tokens(payload)
    temperature = _number(payload, "temperature", DEFAULT_TEMPERATURE, GREEDY_TEMPERATURE, MAX_TEMPERATURE, False)
    top_p = _number(payload, "top_p", DEFAULT_TOP_P, 0.0, 1.0, True)
    stop = () if payload.get("stop") is None else parse_stop(payload["stop"], one_string=True)
    stream, include_usage = _stream(payload)
    _check_accepted_only(payload)
    created = int(time.time() if now is None else now)
    return GenerationRequest(
        messages=messages,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
        stream=stream,
        api=ChatCompletionFormat(model, created, include_usage, max_tokens_field),
    )


# ---------------------------------------------------------------------------------------------
# The answer


def event(value: Mapping[str, Any]) -> bytes:
    """One server-sent event (WHATWG HTML, "Server-sent events"): a data line of UTF-8 JSON (whose strings escape
    every line break) and the blank line that ends the event."""
    return b"data: " + json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n\n"


def usage(response: Mapping[str, Any]) -> dict[str, int]:
    prompt, completion = response["usage"]["prompt_tokens"], response["usage"]["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass(frozen=True)
class ChatCompletionFormat:
    """A Chat Completions request's answer (neuronx_request.AnswerFormat): a chat.completion object, or server-sent
    events of chat.completion.chunk objects ending in data: [DONE]."""

    model: str
    created: int
    include_usage: bool = False
    max_tokens_field: str = "max_tokens"

    def content_type(self, stream: bool) -> str:
        return EVENT_STREAM_CONTENT_TYPE if stream else JSON_CONTENT_TYPE

    def _head(self, kind: str, request_id: str) -> dict[str, Any]:
        return {"id": ID_PREFIX + bounded_ascii(request_id), "object": kind, "created": self.created, "model": self.model}

    def answer(self, response: Mapping[str, Any], request_id: str) -> bytes:
        message = {"role": "assistant", "content": response["generated_text"]}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": response["finish_reason"]}
        body = {**self._head(CHAT_COMPLETIONS["object"], request_id), "choices": [choice], "usage": usage(response)}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _chunk(self, request_id: str, delta: Mapping[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk = {**self._head(CHAT_COMPLETIONS["chunkObject"], request_id), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None  # OpenAI: every chunk but the usage chunk has usage null
        return event(chunk)

    def text(self, delta: str, request_id: str, first: bool) -> bytes:
        return self._chunk(request_id, {"role": "assistant", "content": delta} if first else {"content": delta})

    def end(self, response: Mapping[str, Any], request_id: str, first: bool) -> bytes:
        rest = response.get("text", "")
        data = self.text(rest, request_id, first) if rest or first else b""
        data += self._chunk(request_id, {}, response["finish_reason"])
        if self.include_usage:
            data += event({**self._head(CHAT_COMPLETIONS["chunkObject"], request_id), "choices": [], "usage": usage(response)})
        return data + DONE_EVENT

    def stream_error(self, message: str, request_id: str) -> bytes:
        error = {"message": message, "type": "server_error", "param": None, "code": None}
        return event({"error": error}) + DONE_EVENT
