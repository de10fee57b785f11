"""The request contract of the chat endpoint: headers, body and fields, each checked with a message that names
the field. Plain Python (the standard library and the contract).

Request (Content-Type application/json, UTF-8):
  {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],   required, non-empty;
                           content without the tokenizer's special tokens (<|im_end|>, <|eot_id|>, </s>, ...)
   "max_new_tokens": int,   1..n_positions - prompt tokens; default min(256, what is left)
   "temperature": number,   0..2, default 0.7; 0 means greedy (top_k 1)
   "top_p": number,         (0, 1], default 1.0
   "top_k": int,            >= 1, default 50
   "stop": [str],           up to 4 strings of 1 to 256 characters; the completion ends before the first found
   "role": str,             answering role, default "assistant"; "" also means the default. Another role
                            only for a ChatML template (<|im_start|>{role}); other families answer 400.
   "stream": bool}          default false; true: answer in JSON Lines as the tokens come (below)
Any other field is rejected. Response (application/json):
  {"generated_text": str, "usage": {"prompt_tokens": n, "completion_tokens": m},
   "finish_reason": "stop" (end of turn or stop string)
                  | "length" (max_new_tokens reached, or the generation time limit)}
A streamed request (Accept must allow application/jsonlines) is answered 200 with application/jsonlines, one
JSON object per line ("\n"-terminated), sent as the text settles (TorchServe's send_intermediate_predict_response,
Transfer-Encoding: chunked): {"text": delta} lines, then one last line, the response above with "text", the last
delta. The deltas concatenate to generated_text; no delta holds half a character or any part of a stop string.
A failure after the first line was sent cannot change the status any more: the stream then ends with the line
{"error": message} instead. A request that fails before its first line is answered as any other.
A bad request is answered 4xx with {"error": message naming the field} (RequestError); the message is also the
HTTP reason phrase, so it is ASCII and bounded.

A body with "model" is an OpenAI Chat Completions request instead (neuronx_openai.py, contract
endpoint.chatCompletions): the same checks and limits, its own field names and answer. Each parsed request carries
the AnswerFormat its answer is written in.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol
from collections.abc import Callable, Mapping, Sequence

from neuronx_common import CONTRACT

ENV = CONTRACT["endpoint"]["environment"]
STREAMING = CONTRACT["endpoint"]["streaming"]

JSON_CONTENT_TYPE = "application/json"
JSONLINES_CONTENT_TYPE = STREAMING["contentType"]
"""A streamed answer's type: JSON Lines (one JSON value per line, https://jsonlines.org), application/jsonlines as
SageMaker's own algorithms name it (developer guide, "Common Data Formats for Inference")."""
STREAM_FIELD = STREAMING["requestField"]
BODY_KEY = "body"
"""TorchServe 0.11.0 hands a plain (not multipart) request's bytes over as the parameter "body"
(frontend InferenceRequestHandler.parseRequest; ts/service.py retrieve_data_for_inference)."""

HTTP_BAD_REQUEST = 400
HTTP_NOT_ACCEPTABLE = 406
HTTP_UNSUPPORTED_MEDIA_TYPE = 415
HTTP_INTERNAL_ERROR = 500

MAX_PHRASE_CHARS = 200
"""Bound of an error message, which is also the HTTP reason phrase. TorchServe 0.11.0 frames the phrase by
its length in characters and writes its UTF-8 bytes (ts/protocol/otf_message_handler.py,
create_predict_response): only ASCII keeps the worker's stream intact, so messages are ASCII-escaped."""
MAX_ECHO_CHARS = 40
"""At most this much of a client's value is quoted back in a message."""

MESSAGE_ROLES = ("system", "user", "assistant")
OWN_ROLES = {role: role for role in MESSAGE_ROLES}
"""The roles of the endpoint's own format, each as the chat template names it."""
MESSAGE_FIELDS = ("role", "content")
DEFAULT_ROLE = "assistant"
MAX_ROLE_CHARS = 64
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_TEMPERATURE = 0.7
MAX_TEMPERATURE = 2.0
GREEDY_TEMPERATURE = 0.0
"""temperature 0 asks for greedy decoding: sampled as top_k 1 at temperature 1."""
DEFAULT_TOP_P = 1.0
DEFAULT_TOP_K = 50
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 256
REQUEST_FIELDS = ("messages", "max_new_tokens", "temperature", "top_p", "top_k", "stop", "role", STREAM_FIELD)



# ---------------------------------------------------------------------------------------------
# Errors


class RequestError(Exception):
    """A bad request: `status_code` (4xx) and a `message` naming the field (ASCII, bounded)."""

    def __init__(self, status_code: int, message: str):
        self.status_code = status_code
        self.message = bounded_ascii(message)
        super().__init__(status_code, self.message)


def bad_request(message: str) -> RequestError:
    """A 400 with `message`."""
    return RequestError(HTTP_BAD_REQUEST, message)


def bounded_ascii(text: str) -> str:
    """`text` with every non-ASCII or non-printable character escaped as ascii() does, cut to MAX_PHRASE_CHARS."""
    escaped = "".join(char if " " <= char <= "~" else ascii(char)[1:-1] for char in text)
    return escaped if len(escaped) <= MAX_PHRASE_CHARS else escaped[: MAX_PHRASE_CHARS - 3] + "..."


def describe(value: Any) -> str:
    """A short, safe rendering of a client's value: never the whole of a long string, a huge number or a
    deep container (whose repr could recurse past the interpreter's limit)."""
    if isinstance(value, (list, dict)):
        kind = "a list" if isinstance(value, list) else "an object"
        return f"{kind} of {len(value)} item(s)"
    if isinstance(value, str):
        text = value if len(value) <= MAX_ECHO_CHARS else value[:MAX_ECHO_CHARS] + "..."
        return ascii(text)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_ECHO_CHARS:
        return f"an integer of more than {MAX_ECHO_CHARS} digits"
    return ascii(value)


# ---------------------------------------------------------------------------------------------
# Headers and body


def header(headers: Mapping[str, Any], name: str) -> str | None:
    """The value of header `name`, whatever its case (TorchServe passes names as the client sent them)."""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def _parameters(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype; name=value; ...` -> (lower-case media type, {lower-case name: unquoted value})."""
    media_type, *parameters = value.split(";")
    pairs = {}
    for parameter in parameters:
        name, _, parameter_value = parameter.partition("=")
        pairs[name.strip().lower()] = parameter_value.strip().strip('"')
    return media_type.strip().lower(), pairs


def check_content_type(content_type: str | None) -> None:
    if content_type is None:
        raise RequestError(HTTP_UNSUPPORTED_MEDIA_TYPE, f"Content-Type is missing; send {JSON_CONTENT_TYPE}")
    media_type, parameters = _parameters(content_type)
    if media_type != JSON_CONTENT_TYPE:
        raise RequestError(
            HTTP_UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be {JSON_CONTENT_TYPE}, got {describe(content_type)}"
        )
    charset = parameters.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        # RFC 8259 section 8.1: JSON exchanged between systems is UTF-8.
        raise RequestError(
            HTTP_UNSUPPORTED_MEDIA_TYPE, f"Content-Type charset must be utf-8 (JSON is UTF-8), got {describe(charset)}"
        )


QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
"""RFC 9110 section 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )."""


def check_accept(accept: str | None, answer_type: str = JSON_CONTENT_TYPE) -> None:
    """406 unless the most specific range of `accept` that covers `answer_type` has q > 0.

    No Accept (or an empty one) accepts anything.
    """
    if accept is None or not accept.strip():
        return
    # The ranges that cover answer_type, the most specific first (RFC 9110 section 12.5.1).
    ranks = {answer_type: 3, answer_type.split("/")[0] + "/*": 2, "*/*": 1}
    best: tuple[int, float] | None = None
    for item in accept.split(","):
        media_type, parameters = _parameters(item)
        quality = parameters.get("q", "1")
        if not QVALUE.fullmatch(quality):
            raise bad_request(f"Accept has q={describe(quality)}; a q value is 0 to 1 with at most 3 decimals")
        rank = ranks.get(media_type)
        if rank and (best is None or rank > best[0]):
            best = (rank, float(quality))
    if best is None or best[1] == 0:
        hint = " (the type of a streamed answer)" if answer_type != JSON_CONTENT_TYPE else ""
        raise RequestError(HTTP_NOT_ACCEPTABLE, f"Accept must allow {answer_type}{hint}, got {describe(accept)}")


def _reject_constant(name: str) -> Any:
    raise bad_request(f"body has {name}, which is not a JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise bad_request(f"body has the key {describe(key)} twice in one object")
        result[key] = value
    return result


def parse_json_body(body: Any) -> Any:
    """The JSON value of a UTF-8 body (a leading byte order mark is ignored, as RFC 8259 section 8.1 allows).

    Stricter than json.loads: NaN and Infinity, duplicate keys and any encoding but UTF-8 are refused, and
    nesting past the interpreter's recursion limit is a 400, not a RecursionError.
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise bad_request(f"body is not UTF-8 (byte {error.start}: {describe(error.reason)})") from None
    if not isinstance(body, str):
        return body  # already decoded by TorchServe (decode_input_request=true)
    text = body.removeprefix("\ufeff")
    if not text.strip():
        raise bad_request("body is empty; send a JSON object with messages")
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates)
    except RecursionError:
        raise bad_request("body nests JSON arrays or objects too deeply") from None
    except json.JSONDecodeError as error:
        raise bad_request(f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except ValueError as error:
        # e.g. an integer of more digits than int() converts (sys.get_int_max_str_digits)
        raise bad_request(f"body is not valid JSON: {describe(str(error))}") from None


# ---------------------------------------------------------------------------------------------
# The answer's wire format


def json_line(value: Mapping[str, Any]) -> bytes:
    """One line of JSON Lines: UTF-8 JSON, whose strings escape every line break, ended by "\n"."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n"


class AnswerFormat(Protocol):
    """How a request's answer is written, in the format its body was written in. `response` is the answer as the
    scheduler makes it (generated_text, usage, finish_reason; a streamed one starts with "text", what is left to
    send); `request_id` is TorchServe's; `first` says whether nothing of the stream was sent yet."""

    max_tokens_field: str
    """The body's name for the most new tokens, as error messages name it."""

    def content_type(self, stream: bool) -> str: ...

    def answer(self, response: Mapping[str, Any], request_id: str) -> bytes:
        """A whole (not streamed) answer."""

    def text(self, delta: str, request_id: str, first: bool) -> bytes:
        """A piece of a streamed answer's text."""

    def end(self, response: Mapping[str, Any], request_id: str, first: bool) -> bytes:
        """The last bytes of a streamed answer: what is left of its text and how it ended."""

    def stream_error(self, message: str, request_id: str) -> bytes:
        """The last bytes of a stream that failed after its first bytes were sent (the status is sent already)."""


class JsonLinesFormat:
    """This endpoint's own answer (the module's docstring): a JSON object, or JSON Lines when streamed."""

    max_tokens_field = "max_new_tokens"

    def content_type(self, stream: bool) -> str:
        return JSONLINES_CONTENT_TYPE if stream else JSON_CONTENT_TYPE

    def answer(self, response: Mapping[str, Any], request_id: str) -> bytes:
        return json.dumps(response, ensure_ascii=False).encode("utf-8")

    def text(self, delta: str, request_id: str, first: bool) -> bytes:
        return json_line({"text": delta})

    def end(self, response: Mapping[str, Any], request_id: str, first: bool) -> bytes:
        return json_line(response)

    def stream_error(self, message: str, request_id: str) -> bytes:
        return json_line({"error": message})


NATIVE = JsonLinesFormat()


# ---------------------------------------------------------------------------------------------
# Request fields


@dataclass(frozen=True)
class GenerationRequest:
    messages: tuple[Mapping[str, str], ...]
    role: str = DEFAULT_ROLE
    max_new_tokens: int | None = None
    """None: DEFAULT_MAX_NEW_TOKENS, or fewer when the prompt leaves less room."""
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    stop: tuple[str, ...] = ()
    stream: bool = False
    """Answer the text as it is generated (JSON Lines, or server-sent events for an OpenAI body)."""
    api: AnswerFormat = NATIVE
    """The format the body was written in, and so its answer's."""

    @property
    def answer_type(self) -> str:
        return self.api.content_type(self.stream)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    # An int is finite however large; math.isfinite(10**400) would raise OverflowError.
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def is_text(value: Any) -> bool:
    """A str that is valid Unicode: JSON's \\ud800 escapes give lone surrogates, which the tokenizer refuses
    with a TypeError and UTF-8 cannot encode."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_content(value: Any, field: str) -> str:
    if not is_text(value):
        raise bad_request(f"{field} must be a string of valid Unicode, got {describe(value)}")
    return value


def parse_messages(
    value: Any,
    roles: Mapping[str, str] = OWN_ROLES,
    content: Callable[[Any, str], str] = _text_content,
) -> tuple[Mapping[str, str], ...]:
    """The body's messages, each {role, content}: its role one of `roles` (mapped to the chat template's name), its
    content read by `content(value, field)`."""
    if not isinstance(value, list) or not value:
        raise bad_request(f"messages must be a non-empty list of {{role, content}} objects, got {describe(value)}")
    messages = []
    for index, message in enumerate(value):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad_request(f"{field} must be an object with role and content, got {describe(message)}")
        reject_unknown_fields(message, MESSAGE_FIELDS, owner=field)
        role = message.get("role")
        if not isinstance(role, str) or role not in roles:
            raise bad_request(f"{field}.role must be one of {', '.join(roles)}, got {describe(role)}")
        messages.append({"role": roles[role], "content": content(message.get("content"), f"{field}.content")})
    return tuple(messages)


def _parse_role(value: Any) -> str:
    if value == "":
        # The 0.0.x handler treated an empty role as "no override": clients written for it keep working.
        return DEFAULT_ROLE
    if not is_text(value) or not 0 < len(value) <= MAX_ROLE_CHARS or not value.isprintable():
        raise bad_request(f"role must be a string of 1 to {MAX_ROLE_CHARS} printable characters, got {describe(value)}")
    return value


def parse_stop(value: Any, one_string: bool = False) -> tuple[str, ...]:
    """The stop strings of a list (with `one_string`, also of a single string, as OpenAI's format allows)."""
    strings = [value] if one_string and isinstance(value, str) else value
    if (
        not isinstance(strings, list)
        or len(strings) > MAX_STOP_STRINGS
        or not all(is_text(item) and 0 < len(item) <= MAX_STOP_CHARS for item in strings)
    ):
        shape = "a string or a list" if one_string else "a list"
        raise bad_request(
            f"stop must be {shape} of at most {MAX_STOP_STRINGS} strings of 1 to {MAX_STOP_CHARS} characters,"
            f" got {describe(value)}"
        )
    return tuple(strings)


def _parse_bounded(payload: Mapping[str, Any], field: str, check: Callable[[Any], bool], expected: str) -> Any:
    value = payload[field]
    if not check(value):
        raise bad_request(f"{field} must be {expected}, got {describe(value)}")
    return value


def reject_unknown_fields(value: Mapping[str, Any], allowed: Sequence[str], owner: str | None = None) -> None:
    """RequestError naming up to three fields of `value` that are not `allowed` (`owner`: the object they are in)."""
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        names = ", ".join(describe(name) for name in unknown[:3])
        subject = f"{owner} has unknown field(s)" if owner else "unknown field(s)"
        raise bad_request(f"{subject} {names}; allowed: {', '.join(allowed)}")


def parse_request(payload: Any) -> GenerationRequest:
    """Checks every field of the decoded body; raises RequestError naming the field."""
    if not isinstance(payload, dict):
        raise bad_request(f"body must be a JSON object with messages, got {describe(payload)}")
    reject_unknown_fields(payload, REQUEST_FIELDS)
    if "messages" not in payload:
        raise bad_request("messages is required")

    fields: dict[str, Any] = {"messages": parse_messages(payload["messages"])}
    if "role" in payload:
        fields["role"] = _parse_role(payload["role"])
    if "max_new_tokens" in payload:
        fields["max_new_tokens"] = _parse_bounded(
            payload, "max_new_tokens", lambda value: is_int(value) and value >= 1, "an integer >= 1"
        )
    if "temperature" in payload:
        fields["temperature"] = float(
            _parse_bounded(
                payload,
                "temperature",
                lambda value: is_number(value) and GREEDY_TEMPERATURE <= value <= MAX_TEMPERATURE,
                f"a number from {GREEDY_TEMPERATURE} (greedy) to {MAX_TEMPERATURE}",
            )
        )
    if "top_p" in payload:
        fields["top_p"] = float(
            _parse_bounded(payload, "top_p", lambda value: is_number(value) and 0 < value <= 1, "a number in (0, 1]")
        )
    if "top_k" in payload:
        fields["top_k"] = _parse_bounded(
            payload, "top_k", lambda value: is_int(value) and value >= 1, "an integer >= 1"
        )
    if "stop" in payload:
        fields["stop"] = parse_stop(payload["stop"])
    if STREAM_FIELD in payload:
        fields["stream"] = _parse_bounded(payload, STREAM_FIELD, lambda value: isinstance(value, bool), "true or false")
    return GenerationRequest(**fields)
