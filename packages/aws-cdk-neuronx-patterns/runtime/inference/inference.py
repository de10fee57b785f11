"""TorchServe handler for a Llama chat model compiled by the compile job (transformers-neuronx).

TorchServe calls `handle(data, context)` in <model dir>/code/inference.py directly
(TS_DEFAULT_SERVICE_HANDLER=inference:handle, contract `endpoint.serviceHandlerFunction`); the SageMaker
PyTorch inference toolkit only starts TorchServe and serves /ping and /invocations. TorchServe 0.11.0
calls `handle(None, context)` once when the worker starts (ts/model_loader.py, _get_function_entry_point):
that call loads the model, and a load that fails raises, so the worker does not come up. Every later call
gets a batch: a list of requests, each a dict whose "body" is the request's bytes (the toolkit's
default-ts.properties sets decode_input_request=false), and returns one response per request.

The model dir is the compile job's artifact prefix: <checkpointDir> (config, tokenizer,
generation_config.json, weights), <compiledDir> (NEFFs) and the marker (manifest), beside code/.

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
Each generation ends within NEURONX_GENERATION_TIME_LIMIT_SECONDS (the whole batch shares it), inside
SageMaker's 60 s invocation limit, with the answer so far. A bad request is answered 4xx with
{"error": message naming the field}; anything else that fails in one request is a 500 for that request
only, with a generic message, and its traceback in the log. The other requests of a batch are answered.

Batching (TorchServe's dynamic batching: up to SAGEMAKER_TS_BATCH_SIZE requests that arrive within
SAGEMAKER_TS_MAX_BATCH_DELAY ms come in one call): every request is checked on its own first; the good ones
are generated together, one row each, in as few model calls as the compiled batch size allows. Rows of one
call share the sampling parameters (transformers-neuronx 0.13's sample() takes one top_k, top_p and
temperature for the whole batch) and fit n_positions together (prompts are left-padded to the longest);
requests that cannot share a call get calls of their own, one after another, each with an equal share of
the time left. Each row stops on its own: its end of turn, its stop strings, its max_new_tokens.

The contract and how the model is built (llama_from_pretrained_kwargs) come from neuronx_common.py, which
is placed beside this file in code/ (with contract.json) and ships beside the compile job too.

Only the functions at the end import torch, transformers and transformers_neuronx; everything
else is plain Python, tested with real tokenizers and a fake model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from neuronx_common import (
    CONTRACT,
    LAYOUT,
    MANIFEST,
    OPTION_DEFAULTS,
    compiled_batch_sizes,
    installed_versions,
    llama_from_pretrained_kwargs,
)

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
GENERATION_CONFIG = "generation_config.json"

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

CHATML_TURN_START = "<|im_start|>"
"""ChatML (calm3's template) opens a turn with <|im_start|>{role}\\n: the only family whose answering
role a request may choose."""

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Errors


class RequestError(Exception):
    """A bad request: `status_code` (4xx) and a `message` naming the field (ASCII, bounded)."""

    def __init__(self, status_code: int, message: str):
        self.status_code = status_code
        self.message = bounded_ascii(message)
        super().__init__(status_code, self.message)


def _bad(message: str) -> RequestError:
    return RequestError(HTTP_BAD_REQUEST, message)


class ModelConfigurationError(RuntimeError):
    """The artifacts in the model dir or the endpoint's environment are not what this handler serves."""


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
    """406 unless the most specific range of `accept` that covers `answer_type` (application/...) has q > 0.

    No Accept (or an empty one) accepts anything.
    """
    if accept is None or not accept.strip():
        return
    # The ranges that cover answer_type, the most specific first (RFC 9110 section 12.5.1).
    ranks = {answer_type: 3, "application/*": 2, "*/*": 1}
    best: tuple[int, float] | None = None
    for item in accept.split(","):
        media_type, parameters = _parameters(item)
        quality = parameters.get("q", "1")
        if not QVALUE.fullmatch(quality):
            raise _bad(f"Accept has q={describe(quality)}; a q value is 0 to 1 with at most 3 decimals")
        rank = ranks.get(media_type)
        if rank and (best is None or rank > best[0]):
            best = (rank, float(quality))
    if best is None or best[1] == 0:
        hint = " (the type of a streamed answer)" if answer_type == JSONLINES_CONTENT_TYPE else ""
        raise RequestError(HTTP_NOT_ACCEPTABLE, f"Accept must allow {answer_type}{hint}, got {describe(accept)}")


def _reject_constant(name: str) -> Any:
    raise _bad(f"body has {name}, which is not a JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _bad(f"body has the key {describe(key)} twice in one object")
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
            raise _bad(f"body is not UTF-8 (byte {error.start}: {describe(error.reason)})") from None
    if not isinstance(body, str):
        return body  # already decoded by TorchServe (decode_input_request=true)
    text = body.removeprefix("\ufeff")
    if not text.strip():
        raise _bad("body is empty; send a JSON object with messages")
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates)
    except RecursionError:
        raise _bad("body nests JSON arrays or objects too deeply") from None
    except json.JSONDecodeError as error:
        raise _bad(f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except ValueError as error:
        # e.g. an integer of more digits than int() converts (sys.get_int_max_str_digits)
        raise _bad(f"body is not valid JSON: {describe(str(error))}") from None


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
    """Answer in JSON Lines, the text as it is generated."""

    @property
    def answer_type(self) -> str:
        return JSONLINES_CONTENT_TYPE if self.stream else JSON_CONTENT_TYPE


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # An int is finite however large; math.isfinite(10**400) would raise OverflowError.
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _is_text(value: Any) -> bool:
    """A str that is valid Unicode: JSON's \\ud800 escapes give lone surrogates, which the tokenizer refuses
    with a TypeError and UTF-8 cannot encode."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_messages(value: Any) -> tuple[Mapping[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _bad(f"messages must be a non-empty list of {{role, content}} objects, got {describe(value)}")
    messages = []
    for index, message in enumerate(value):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"{field} must be an object with role and content, got {describe(message)}")
        unknown = sorted(set(message) - set(MESSAGE_FIELDS))
        if unknown:
            raise _bad(
                f"{field} has unknown field(s) {', '.join(describe(name) for name in unknown[:3])};"
                f" allowed: {', '.join(MESSAGE_FIELDS)}"
            )
        if message.get("role") not in MESSAGE_ROLES:
            raise _bad(f"{field}.role must be one of {', '.join(MESSAGE_ROLES)}, got {describe(message.get('role'))}")
        if not _is_text(message.get("content")):
            raise _bad(f"{field}.content must be a string of valid Unicode, got {describe(message.get('content'))}")
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)


def _parse_role(value: Any) -> str:
    if value == "":
        # The 0.0.x handler treated an empty role as "no override": clients written for it keep working.
        return DEFAULT_ROLE
    if not _is_text(value) or not 0 < len(value) <= MAX_ROLE_CHARS or not value.isprintable():
        raise _bad(f"role must be a string of 1 to {MAX_ROLE_CHARS} printable characters, got {describe(value)}")
    return value


def _parse_stop(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP_STRINGS
        or not all(_is_text(item) and 0 < len(item) <= MAX_STOP_CHARS for item in value)
    ):
        raise _bad(
            f"stop must be a list of at most {MAX_STOP_STRINGS} strings of 1 to {MAX_STOP_CHARS} characters,"
            f" got {describe(value)}"
        )
    return tuple(value)


def _parse_bounded(payload: Mapping[str, Any], field: str, check: Callable[[Any], bool], expected: str) -> Any:
    value = payload[field]
    if not check(value):
        raise _bad(f"{field} must be {expected}, got {describe(value)}")
    return value


def parse_request(payload: Any) -> GenerationRequest:
    """Checks every field of the decoded body; raises RequestError naming the field."""
    if not isinstance(payload, dict):
        raise _bad(f"body must be a JSON object with messages, got {describe(payload)}")
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        raise _bad(
            f"unknown field(s) {', '.join(describe(name) for name in unknown[:3])}; allowed: {', '.join(REQUEST_FIELDS)}"
        )
    if "messages" not in payload:
        raise _bad("messages is required")

    fields: dict[str, Any] = {"messages": _parse_messages(payload["messages"])}
    if "role" in payload:
        fields["role"] = _parse_role(payload["role"])
    if "max_new_tokens" in payload:
        fields["max_new_tokens"] = _parse_bounded(
            payload, "max_new_tokens", lambda value: _is_int(value) and value >= 1, "an integer >= 1"
        )
    if "temperature" in payload:
        fields["temperature"] = float(
            _parse_bounded(
                payload,
                "temperature",
                lambda value: _is_number(value) and GREEDY_TEMPERATURE <= value <= MAX_TEMPERATURE,
                f"a number from {GREEDY_TEMPERATURE} (greedy) to {MAX_TEMPERATURE}",
            )
        )
    if "top_p" in payload:
        fields["top_p"] = float(
            _parse_bounded(payload, "top_p", lambda value: _is_number(value) and 0 < value <= 1, "a number in (0, 1]")
        )
    if "top_k" in payload:
        fields["top_k"] = _parse_bounded(
            payload, "top_k", lambda value: _is_int(value) and value >= 1, "an integer >= 1"
        )
    if "stop" in payload:
        fields["stop"] = _parse_stop(payload["stop"])
    if STREAM_FIELD in payload:
        fields["stream"] = _parse_bounded(payload, STREAM_FIELD, lambda value: isinstance(value, bool), "true or false")
    return GenerationRequest(**fields)


# ---------------------------------------------------------------------------------------------
# Chat template, generation and response


Sampler = Callable[..., list[list[int]]]
"""sample(prompts, *, max_new_tokens, top_k, top_p, temperature, stop_token_ids, should_stop) -> for each
prompt (a list of token ids), its ids followed by its new ids. One row per prompt, generated together;
max_new_tokens and should_stop have one entry per row. The model calls should_stop[row](token_id) with each
new token of the row as it produces it; a row ends after the first token for which it returns True (or at a
stop token, or after its max_new_tokens), and the generation ends when every row has."""


@dataclass(frozen=True)
class Generator:
    """The loaded model: the tokenizer, the compiled model's sampler and its limits."""

    tokenizer: Any
    sample: Sampler
    n_positions: int
    stop_token_ids: frozenset[int]
    """The end-of-turn tokens: the completion ends before the first of them."""
    special_tokens: tuple[str, ...]
    """Every special token of the tokenizer: none may appear in message content or the role."""
    turn_markers: tuple[str, ...] = ()
    """Markup the chat template writes around turns that is plain text to the tokenizer (Zephyr's <|user|>,
    Mistral's [INST]): the model takes it for a turn all the same, so no message may contain it either."""
    batch_size: int = 1
    """The most rows one sample() call takes (the compiled batch size)."""


SENTINEL = "sentinel-d1b6"
"""Message content no template changes: what surrounds it in a rendering is the template's own text."""


def template_end_of_turn_id(tokenizer: Any, special_tokens: Sequence[str]) -> int | None:
    """The special token the chat template writes right after an assistant message (<|im_end|>, <|eot_id|>,
    </s>), or None. It ends a turn even when neither eos_token_id names it."""
    exchange = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": SENTINEL}]
    try:
        text = tokenizer.apply_chat_template(exchange, tokenize=False)
    except Exception:  # a template that refuses this exchange says nothing about its end of turn
        log.warning("the chat template does not render a user/assistant exchange", exc_info=True)
        return None
    if SENTINEL not in text:
        return None
    after = tokenizer.encode(text[text.rindex(SENTINEL) + len(SENTINEL) :], add_special_tokens=False)
    special_ids = set(tokenizer.convert_tokens_to_ids(list(special_tokens)))
    return after[0] if after and after[0] in special_ids else None


MARKUP = re.compile(r"[<\[]\S*[>\]]")
"""A piece of a template's own text that looks like a marker: <|user|>, [INST], [/INST], <<SYS>>."""


def template_turn_markers(tokenizer: Any, special_tokens: Sequence[str]) -> tuple[str, ...]:
    """The markup pieces of what the chat template writes around messages, special tokens left out."""
    for roles in (("system", "user", "assistant", "user"), ("user", "assistant", "user")):
        messages = [{"role": role, "content": f"{SENTINEL}{index}"} for index, role in enumerate(roles)]
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # e.g. a template that refuses a system message: try without
            continue
        for token in (*special_tokens, *(f"{SENTINEL}{index}" for index in range(len(roles)))):
            text = text.replace(token, " ")
        return tuple(sorted({piece for piece in text.split() if MARKUP.fullmatch(piece)}))
    return ()


def generation_config_eos_ids(checkpoint_dir: Path) -> tuple[int, ...]:
    """eos_token_id of the checkpoint's generation_config.json (an int or a list; none without the file)."""
    path = checkpoint_dir / GENERATION_CONFIG
    if not path.is_file():
        return ()
    value = json.loads(path.read_text()).get("eos_token_id")
    ids = [value] if _is_int(value) or value is None else value
    if not isinstance(ids, list) or not all(_is_int(item) or item is None for item in ids):
        raise ModelConfigurationError(f"{path}: eos_token_id must be an integer or a list of integers, got {value!r}")
    return tuple(item for item in ids if item is not None)


def require_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelConfigurationError(
            "the checkpoint's tokenizer has no chat template (tokenizer_config.json chat_template):"
            " this handler serves chat models only; use a chat or instruct model"
        )


def make_generator(
    tokenizer: Any, sample: Sampler, n_positions: int, eos_token_ids: Sequence[int] = (), batch_size: int = 1
) -> Generator:
    """Refuses a tokenizer without a chat template; the end-of-turn tokens are the tokenizer's eos,
    `eos_token_ids` (generation_config.json) and the template's own end of an assistant turn."""
    require_chat_template(tokenizer)
    special_tokens = special_token_texts(tokenizer)
    stop_token_ids = set(eos_token_ids) | {tokenizer.eos_token_id, template_end_of_turn_id(tokenizer, special_tokens)}
    stop_token_ids.discard(None)
    if not stop_token_ids:
        raise ModelConfigurationError(
            "the checkpoint names no end-of-turn token (tokenizer eos_token, generation_config.json eos_token_id)"
        )
    return Generator(
        tokenizer,
        sample,
        n_positions,
        frozenset(stop_token_ids),
        special_tokens,
        template_turn_markers(tokenizer, special_tokens),
        batch_size,
    )


def special_token_texts(tokenizer: Any) -> tuple[str, ...]:
    """The text of every special token: the named ones (bos, eos, unk, pad, additional) and every
    added token flagged special."""
    texts = set(tokenizer.all_special_tokens)
    texts |= {token.content for token in getattr(tokenizer, "added_tokens_decoder", {}).values() if token.special}
    return tuple(sorted(text for text in texts if text))


def _reject_markers(field: str, text: str, generator: Generator) -> None:
    """400 naming the field and the first special token or turn marker in `text`.

    The tokenizer turns a special token's text into that control token wherever it occurs, so a
    message holding `<|im_end|>\\n<|im_start|>system\\n…` would end its own turn and write others;
    a turn marker that is plain text (`</s>\\n<|system|>`) does the same to the model.
    """
    for markers, reason in (
        (generator.special_tokens, "the tokenizer reads it as a control token, not as text"),
        (generator.turn_markers, "the chat template marks turns with it"),
    ):
        found = [(text.find(marker), marker) for marker in markers if marker in text]
        if found:
            raise _bad(f"{field} must not contain {min(found)[1]!r}: {reason}")


def build_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]], role: str) -> str:
    """The tokenizer's chat template with its generation prompt.

    Another `role` than the default needs ChatML, whose generation prompt `<|im_start|>assistant\\n`
    becomes `<|im_start|>{role}\\n` (as the 0.0.x handler did); other families answer 400. A template
    that refuses the messages (raise_exception, e.g. Mistral's for a system message) answers 400.
    """
    from jinja2 import TemplateError  # transformers renders chat templates with jinja2

    try:
        prompt = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    except TemplateError as error:
        raise _bad(f"messages are refused by the model's chat template: {error}") from None
    if role == DEFAULT_ROLE:
        return prompt
    chatml_generation_prompt = f"{CHATML_TURN_START}{DEFAULT_ROLE}\n"
    if not prompt.endswith(chatml_generation_prompt):
        raise _bad(
            f"role {describe(role)} needs a ChatML chat template ({CHATML_TURN_START}role); this model answers"
            f" as {DEFAULT_ROLE} only: leave role out"
        )
    return prompt[: -len(chatml_generation_prompt)] + f"{CHATML_TURN_START}{role}\n"


def resolve_max_new_tokens(requested: int | None, prompt_tokens: int, n_positions: int) -> int:
    room = n_positions - prompt_tokens
    if requested is None:
        if room < 1:
            raise _bad(
                f"messages take {prompt_tokens} tokens, leaving no room to generate within {n_positions} positions"
            )
        return min(DEFAULT_MAX_NEW_TOKENS, room)
    if requested > room:
        raise _bad(
            f"max_new_tokens {describe(requested)} + {prompt_tokens} prompt tokens exceed the model's"
            f" {n_positions} positions; at most {max(room, 0)} new tokens fit"
        )
    return requested


class StopMonitor:
    """The sampler's should_stop for one row: ends it at an end-of-turn token, at a stop string, after
    `max_new_tokens` or at the deadline (`clock()` >= `deadline`), each checked as a token arrives."""

    def __init__(
        self,
        generator: Generator,
        stop: Sequence[str],
        deadline: float,
        clock: Callable[[], float],
        max_new_tokens: int | None = None,
    ):
        self.generator, self.stop, self.deadline, self.clock = generator, stop, deadline, clock
        self.max_new_tokens = max_new_tokens
        # A character is at most 4 byte-level tokens, so the last 4 tokens per character (and a margin for
        # a partial character at the window's start) hold any stop string that just appeared.
        self.window = 4 * max((len(string) for string in stop), default=0) + 8
        self.new_ids: list[int] = []
        self.timed_out = False

    def __call__(self, token_id: int) -> bool:
        self.new_ids.append(token_id)
        if token_id in self.generator.stop_token_ids:
            return True
        if self.max_new_tokens is not None and len(self.new_ids) >= self.max_new_tokens:
            return True
        if self.stop:
            tail = self.generator.tokenizer.decode(self.new_ids[-self.window :], skip_special_tokens=True)
            if any(string in tail for string in self.stop):
                return True
        self.timed_out = self.clock() >= self.deadline
        return self.timed_out


def shape_response(
    generator: Generator, output_ids: Sequence[int], prompt_tokens: int, stop: Sequence[str]
) -> dict[str, Any]:
    """Decodes only the ids after the prompt, up to the first end token, then cuts at stop strings."""
    new_ids = list(output_ids[prompt_tokens:])
    end = next((i for i, token in enumerate(new_ids) if token in generator.stop_token_ids), None)
    completion_ids = new_ids if end is None else new_ids[:end]
    text = generator.tokenizer.decode(completion_ids, skip_special_tokens=True)
    finish_reason = "length" if end is None else "stop"
    stop_at = [text.find(string) for string in stop if string in text]
    if stop_at:
        text = text[: min(stop_at)]
        finish_reason = "stop"
    return {
        "generated_text": text,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(new_ids) if end is None else end + 1},
        "finish_reason": finish_reason,
    }


INCOMPLETE_CHARACTER = "\ufffd"
"""What tokenizer.decode makes of the bytes of a character whose last byte-level token has not come yet (its
bytes are decoded with errors="replace"; calm3's tokenizer, like every byte-level BPE, splits rare kanji into
several tokens)."""


def settled_text(text: str, stop: Sequence[str]) -> str:
    """The beginning of a completion decoded so far (`text`) that no later token can change or cut: without
    an incomplete character at its end, without the first stop string or any end of it that may be the start
    of one (a stop string completed later cuts the completion there), and without trailing whitespace
    (the tokenizer's clean-up drops a space before punctuation that comes next, as in "hello ." -> "hello.")."""
    text = text.rstrip(INCOMPLETE_CHARACTER)
    end = len(text)
    for string in stop:
        found = text.find(string)
        if found >= 0:
            end = min(end, found)
        for start in range(max(0, len(text) - len(string) + 1), len(text)):
            if string.startswith(text[start:]):
                end = min(end, start)
                break
    return text[:end].rstrip()


class TextStream:
    """A streamed row's text as its tokens come: `update(new_ids)` returns what may be sent now (possibly "").
    What it has sent is the start of the completion shape_response makes of the same ids; `rest` completes it.

    The text is decoded incrementally, as text-generation-inference and vLLM do, since decoding the whole
    completion after every token costs more than a decoding step once it is long (about 26 ms for 4000 byte
    tokens through transformers 4.45's decode): a new token is decoded after the tokens of the last piece
    (context for decoders that read a token by its neighbours, as SentencePiece drops a first token's leading
    space) and the piece is what that adds to the context's own text, once it does not end in an incomplete
    character. Where it changes the context's text instead (a tokenizer's clean-up of spaces), the whole
    completion is decoded again, once."""

    def __init__(self, generator: Generator, stop: Sequence[str]):
        self.generator, self.stop = generator, stop
        self.text = ""
        """The completion so far, as decoding the ids read up to read_offset gives it."""
        self.prefix_offset = self.read_offset = 0
        self.sent = ""

    def _decode(self, ids: Sequence[int]) -> str:
        return self.generator.tokenizer.decode(ids, skip_special_tokens=True)

    def update(self, new_ids: Sequence[int]) -> str:
        if new_ids and new_ids[-1] in self.generator.stop_token_ids:
            return ""  # the end of the turn: no text (a row ends at its first such token)
        context = self._decode(new_ids[self.prefix_offset : self.read_offset])
        text = self._decode(new_ids[self.prefix_offset :])
        if not text.startswith(context):
            self.text = self._decode(new_ids)
            self.prefix_offset, self.read_offset = len(new_ids) - 1, len(new_ids)
        elif len(text) > len(context) and not text.endswith(INCOMPLETE_CHARACTER):
            self.text += text[len(context) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(new_ids)
        settled = settled_text(self.text, self.stop)
        if len(settled) <= len(self.sent) or not settled.startswith(self.sent):
            return ""
        delta, self.sent = settled[len(self.sent) :], settled
        return delta

    def rest(self, completion: str) -> str:
        """What is left to send of `completion`, the whole generated_text."""
        if not completion.startswith(self.sent):
            # Not seen with any tokenizer tried; the last line's generated_text is the answer all the same.
            log.error("the streamed text is not the start of the completion; the last line has it whole")
            return ""
        return completion[len(self.sent) :]


@dataclass(frozen=True)
class PreparedRequest:
    """A checked request, rendered and tokenized: ready to be a row of a batch."""

    request: GenerationRequest
    prompt_ids: list[int]
    max_new_tokens: int

    @property
    def sampling(self) -> tuple[int, float, float]:
        """(top_k, top_p, temperature) as the model takes them: temperature 0 is top_k 1 at temperature 1."""
        if self.request.temperature == GREEDY_TEMPERATURE:
            return 1, self.request.top_p, 1.0
        return self.request.top_k, self.request.top_p, self.request.temperature


def prepare(generator: Generator, request: GenerationRequest) -> PreparedRequest:
    """The prompt's ids and the new tokens to allow; RequestError (4xx) when the request cannot be served."""
    if len(request.messages) > generator.n_positions:
        # Every message takes at least one token: this many can never fit (and are not worth checking).
        raise _bad(f"messages has {len(request.messages)} entries; the model holds {generator.n_positions} tokens")
    for index, message in enumerate(request.messages):
        _reject_markers(f"messages[{index}].content", message["content"], generator)
    _reject_markers("role", request.role, generator)
    prompt = build_prompt(generator.tokenizer, request.messages, request.role)
    prompt_ids = generator.tokenizer.encode(prompt, add_special_tokens=False)
    max_new_tokens = resolve_max_new_tokens(request.max_new_tokens, len(prompt_ids), generator.n_positions)
    return PreparedRequest(request, prompt_ids, max_new_tokens)


def fits_together(rows: Sequence[PreparedRequest], generator: Generator) -> bool:
    """Whether `rows` can be one sample() call: at most batch_size rows, the same sampling parameters, and the
    longest prompt (all are left-padded to it) plus the most new tokens asked within n_positions."""
    return (
        len(rows) <= generator.batch_size
        and len({row.sampling for row in rows}) == 1
        and max(len(row.prompt_ids) for row in rows) + max(row.max_new_tokens for row in rows) <= generator.n_positions
    )


def plan_calls(rows: Sequence[PreparedRequest], generator: Generator) -> list[list[int]]:
    """The indices of `rows` grouped into sample() calls: each row joins the first call it fits, in order."""
    calls: list[list[int]] = []
    for index, row in enumerate(rows):
        call = next((call for call in calls if fits_together([*(rows[i] for i in call), row], generator)), None)
        if call is None:
            calls.append([index])
        else:
            call.append(index)
    return calls


def generate_rows(
    generator: Generator,
    rows: Sequence[PreparedRequest],
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    on_text: Callable[[int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """The responses to `rows` (which fit together), generated in one sample() call, each until its own end
    of turn, stop string or max_new_tokens, or until `deadline`.

    With `on_text`, each streamed row (request.stream) has its text sent as it settles, on_text(row, delta),
    from within the model's loop; its response starts with "text", what is left to send."""
    monitors = [StopMonitor(generator, row.request.stop, deadline, clock, row.max_new_tokens) for row in rows]
    streams = [
        TextStream(generator, row.request.stop) if on_text is not None and row.request.stream else None
        for row in rows
    ]
    should_stop: list[Callable[[int], bool]] = list(monitors)
    for index, stream in enumerate(streams):
        if stream is not None:
            should_stop[index] = _streaming(monitors[index], stream, lambda delta, row=index: on_text(row, delta))
    top_k, top_p, temperature = rows[0].sampling
    outputs = generator.sample(
        [row.prompt_ids for row in rows],
        max_new_tokens=[row.max_new_tokens for row in rows],
        top_k=top_k,
        top_p=top_p,
        temperature=temperature,
        stop_token_ids=sorted(generator.stop_token_ids),
        should_stop=should_stop,
    )
    responses = []
    for row, monitor, stream, output_ids in zip(rows, monitors, streams, outputs, strict=True):
        if list(output_ids[: len(row.prompt_ids)]) != row.prompt_ids:
            raise RuntimeError("the model's output does not start with the prompt: cannot cut the completion")
        response = shape_response(generator, output_ids, len(row.prompt_ids), row.request.stop)
        if monitor.timed_out:
            log.warning("generation time limit reached after %d tokens", response["usage"]["completion_tokens"])
        if stream is not None:
            response = {"text": stream.rest(response["generated_text"]), **response}
        responses.append(response)
    return responses


def _streaming(monitor: StopMonitor, stream: TextStream, send: Callable[[str], None]) -> Callable[[int], bool]:
    """`monitor` as the sampler's should_stop, which also sends what the new token settles of the text."""

    def should_stop(token_id: int) -> bool:
        stop = monitor(token_id)
        delta = stream.update(monitor.new_ids)
        if delta:
            send(delta)
        return stop

    return should_stop


def generate(
    generator: Generator, request: GenerationRequest, deadline: float, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """The response to `request` alone, generated until an end of turn, a stop string, max_new_tokens or
    `deadline`."""
    return generate_rows(generator, [prepare(generator, request)], deadline, clock)[0]


# ---------------------------------------------------------------------------------------------
# Model dir checks


def read_manifest(model_dir: Path) -> dict[str, Any]:
    marker = model_dir / LAYOUT["marker"]
    if not marker.is_file():
        raise ModelConfigurationError(f"{marker} is missing: the compile job did not finish for these artifacts")
    manifest = json.loads(marker.read_text())
    if manifest.get("schemaVersion") != MANIFEST["schemaVersion"]:
        raise ModelConfigurationError(
            f"{marker} has schemaVersion {manifest.get('schemaVersion')!r},"
            f" this handler reads {MANIFEST['schemaVersion']}"
        )
    return manifest


def configuration_mismatches(compiled: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Every difference between the compiled options and the endpoint's environment.

    Unset variables take the contract's defaults; tpDegree and nPositions have none.
    """
    mismatches = []
    for key in (key for key in MANIFEST["optionKeys"] if key in ENV):
        configured = environ.get(ENV[key], str(OPTION_DEFAULTS.get(key, ""))).strip()
        if configured != str(compiled[key]):
            mismatches.append(f"{ENV[key]}={configured!r} but the artifacts were compiled with {key}={compiled[key]!r}")
    cores = environ.get(ENV["coresPerWorker"])
    if cores is not None and cores.strip() != str(compiled["tpDegree"]):
        mismatches.append(
            f"{ENV['coresPerWorker']}={cores!r} but each worker needs tpDegree={compiled['tpDegree']} NeuronCores"
        )
    return mismatches


def describe_versions(versions: Mapping[str, str | None] | None) -> str:
    if not versions:
        return "versions the manifest does not record"
    return ", ".join(f"{package} {version or '(not installed)'}" for package, version in versions.items())


def missing_files(model_dir: Path, files: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        entry["key"]
        for entry in files
        if not (model_dir / entry["key"]).is_file() or (model_dir / entry["key"]).stat().st_size != entry["bytes"]
    ]


# ---------------------------------------------------------------------------------------------
# Loading (the worker's initialization)


def load_generator(model_dir: str | Path) -> Generator:
    """Checks the artifacts against the configuration, then loads the NEFFs (never compiles)."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    mismatches = configuration_mismatches(manifest["options"], os.environ)
    if mismatches:
        raise ModelConfigurationError(
            "the endpoint's configuration does not match the compiled artifacts (it would recompile): "
            + "; ".join(mismatches)
        )
    missing = missing_files(model_dir, manifest["files"])
    if missing:
        raise ModelConfigurationError(
            f"{len(missing)} file(s) listed in the manifest are missing or truncated in {model_dir}:"
            f" {', '.join(missing)}"
        )
    # Manifests written before these keys existed have neither.
    compiled_with = manifest.get("neuronPackages")
    installed = installed_versions(MANIFEST["neuronPackages"])
    log.info(
        "loading %s (revision %r, commit %s) compiled for %s with %s and %s; this image has %s",
        manifest["modelId"],
        manifest["modelRevision"],
        manifest.get("modelCommit") or "not recorded",
        manifest["compilerTarget"],
        manifest["options"],
        describe_versions(compiled_with),
        describe_versions(installed),
    )
    if compiled_with and dict(compiled_with) != installed:
        log.warning("the artifacts were compiled with other Neuron packages than this image has; loading may fail")
    try:
        return _load_neuron_generator(
            model_dir / LAYOUT["checkpointDir"], model_dir / LAYOUT["compiledDir"], manifest["options"]
        )
    except ModelConfigurationError:
        raise
    except Exception as error:
        raise ModelConfigurationError(
            f"loading the compiled artifacts from {model_dir} failed ({type(error).__name__}: {error});"
            f" they were compiled with {describe_versions(compiled_with)},"
            f" this image has {describe_versions(installed)}"
        ) from error


def generation_time_limit(environ: Mapping[str, str]) -> float:
    """Seconds a batch may generate (contract endpoint.environment.generationTimeLimit; default
    defaults.generationTimeLimitSeconds): SageMaker ends an InvokeEndpoint call after 60 s."""
    name = ENV["generationTimeLimit"]
    raw = environ.get(name)
    if raw is None:
        return float(CONTRACT["defaults"]["generationTimeLimitSeconds"])
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ModelConfigurationError(f"{name}={raw!r} must be a number of seconds > 0")
    return seconds


# ---------------------------------------------------------------------------------------------
# The TorchServe entry point


@dataclass(frozen=True)
class Worker:
    generator: Generator
    time_limit: float
    """Seconds a whole batch may generate."""


_worker: Worker | None = None
clock: Callable[[], float] = time.monotonic


def handle(data: list[Mapping[str, Any]] | None, context: Any) -> list[bytes] | None:
    """TorchServe's entry point: `handle(None, context)` loads the model; `handle(batch, context)` answers
    each request of the batch, with its own status and content type; it raises for no request's fault."""
    global _worker
    if data is None:
        _worker = Worker(load_generator(context.system_properties["model_dir"]), generation_time_limit(os.environ))
        return None
    if _worker is None:
        raise ModelConfigurationError("handle was called with requests before the model was loaded")
    generator = _worker.generator
    deadline = clock() + _worker.time_limit
    # (status, reason phrase or None, content type, body) of each request
    answers: list[tuple[int, str | None, str, bytes] | None] = [None] * len(data)
    request_ids = [bounded_ascii(str(context.get_request_id(index))) for index in range(len(data))]
    prepared: list[PreparedRequest] = []
    positions: list[int] = []
    for index, request in enumerate(data):
        try:
            prepared.append(_prepare(generator, request, context, index))
            positions.append(index)
        except Exception as error:
            answers[index] = _failure(error, request_ids[index])
    streaming: set[int] = set()
    """The requests whose first line is sent: their status and content type are the client's already."""

    def send_line(index: int, line: Mapping[str, Any]) -> None:
        if index not in streaming:
            # The frontend writes the status line and headers with a request's first chunk
            # (TorchServe 0.11.0 RestJob.responseInference), taking the content type from that message.
            context.set_response_content_type(index, JSONLINES_CONTENT_TYPE)
            streaming.add(index)
        send_intermediate(context, {index: json_line(line)})

    calls = plan_calls(prepared, generator)
    for number, call in enumerate(calls):
        # Calls run one after another: each gets an equal share of the time still left.
        own_deadline = clock() + (deadline - clock()) / (len(calls) - number)
        started = clock()
        try:
            responses = generate_rows(
                generator,
                [prepared[i] for i in call],
                own_deadline,
                clock,
                on_text=lambda row, delta, call=call: send_line(positions[call[row]], {"text": delta}),
            )
        except Exception as error:
            for i in call:
                index = positions[i]
                answers[index] = _failure(error, request_ids[index])
                if index in streaming:
                    # Too late for a status: the stream ends with the error's line.
                    answers[index] = (200, None, JSONLINES_CONTENT_TYPE, json_line({"error": answers[index][1]}))
            continue
        for i, response in zip(call, responses, strict=True):
            log.info(
                "request %s: prompt_tokens=%d completion_tokens=%d finish_reason=%s seconds=%.2f batch=%d",
                request_ids[positions[i]],
                response["usage"]["prompt_tokens"],
                response["usage"]["completion_tokens"],
                response["finish_reason"],
                clock() - started,
                len(call),
            )
            if prepared[i].request.stream:
                answers[positions[i]] = (200, None, JSONLINES_CONTENT_TYPE, json_line(response))
            else:
                body = json.dumps(response, ensure_ascii=False).encode("utf-8")
                answers[positions[i]] = (200, None, JSON_CONTENT_TYPE, body)
    bodies = []
    for index, answer in enumerate(answers):
        assert answer is not None
        status, error, content_type, body = answer
        if error is not None:
            context.set_response_status(status, error, index)
        context.set_response_content_type(index, content_type)
        bodies.append(body)
    return bodies


def json_line(value: Mapping[str, Any]) -> bytes:
    """One line of JSON Lines: UTF-8 JSON, whose strings escape every line break, ended by "\n"."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n"


def send_intermediate(context: Any, chunks: Mapping[int, bytes]) -> None:
    """Sends `chunks` ({index in the batch: bytes}) to those requests only, ahead of the batch's answers.

    TorchServe 0.11.0's ts/handler_utils/utils.py send_intermediate_predict_response(ret, req_id_map, ...)
    writes one predict response (ts/protocol/otf_message_handler.py create_predict_response) for the
    requests of req_id_map, each body ret[index], with the header ts_stream_next=true; the frontend
    (BatchAggregator.sendResponse) answers the jobs it names and keeps the batch open, and RestJob sends each
    as an HTTP chunk. handle's return value is the last chunk: create_predict_response turns a request's
    ts_stream_next to false, and the frontend ends that response."""
    from ts.handler_utils.utils import send_intermediate_predict_response

    request_ids = {index: context.request_ids[index] for index in chunks}
    send_intermediate_predict_response(dict(chunks), request_ids, "Intermediate Prediction success", 200, context)


def _prepare(generator: Generator, request: Any, context: Any, index: int) -> PreparedRequest:
    """Request `index` of the batch checked (headers, body, fields) and tokenized; RequestError when bad."""
    headers = context.get_all_request_header(index) or {}
    check_content_type(header(headers, "content-type"))
    if not isinstance(request, Mapping) or BODY_KEY not in request:
        raise _bad("body is missing")
    parsed = parse_request(parse_json_body(request[BODY_KEY]))
    # After the body, which says whether the answer is streamed (and so its type).
    check_accept(header(headers, "accept"), parsed.answer_type)
    return prepare(generator, parsed)


def _failure(error: Exception, request_id: str) -> tuple[int, str, str, bytes]:
    """(status, message, content type, body) for a request that failed: 4xx with the message for a bad request,
    500 with a generic message (the traceback in the log) for anything else. The message is also the reason
    phrase."""
    if isinstance(error, RequestError):
        log.info("request %s: %d %s", request_id, error.status_code, error.message)
        status, message = error.status_code, error.message
    else:
        log.error("request %s failed", request_id, exc_info=error)
        status = HTTP_INTERNAL_ERROR
        message = bounded_ascii(f"internal error; the endpoint's log has the traceback (request {request_id})")
    return status, message, JSON_CONTENT_TYPE, json.dumps({"error": message}).encode("ascii")


# ---------------------------------------------------------------------------------------------
# The only code that needs torch, transformers and transformers-neuronx (the serving image)


class SampleStep:
    """transformers-neuronx 0.13's per-token hooks of LlamaForSampling.sample (sampling.sample_loop_llama at
    the Neuron 2.21 sync, commit 1ade6d7): after each new token the loop calls `streamer.put(token)` with a
    [batch, 1] tensor, breaks at sequence_length or when every row has an eos token, then breaks when
    `stopping_criteria_list(input_ids, probs)` is true. This is both: put() gives each row that has not ended
    its token and asks its should_stop (rows past len(should_stop) fill the compiled batch and are ignored);
    the criterion is true once every row has ended. `counts` is how many new tokens each row took."""

    def __init__(self, should_stop: Sequence[Callable[[int], bool]]):
        self.should_stop = list(should_stop)
        self.counts = [0] * len(self.should_stop)
        self.ended = [False] * len(self.should_stop)

    def put(self, token: Any) -> None:
        for row, should_stop in enumerate(self.should_stop):
            if not self.ended[row]:
                self.counts[row] += 1
                self.ended[row] = bool(should_stop(int(token[row][0])))

    def end(self) -> None:
        pass

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return all(self.ended)


def load_chat_tokenizer(checkpoint_dir: Path) -> Any:
    """The checkpoint's tokenizer; one without a chat template fails here, before the long NEFF load."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    require_chat_template(tokenizer)
    return tokenizer


def _load_neuron_generator(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> Generator:
    """The tokenizer, then the model built exactly as the compile job built it, with its NEFFs loaded."""
    tokenizer = load_chat_tokenizer(checkpoint_dir)
    sample = _load_neuron_sampler(checkpoint_dir, compiled_dir, options)
    return make_generator(
        tokenizer,
        sample,
        options["nPositions"],
        generation_config_eos_ids(checkpoint_dir),
        max(compiled_batch_sizes(options["batchSize"])),
    )


def _load_neuron_sampler(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> Sampler:
    """Builds LlamaForSampling as the compile job did, loads its NEFFs and wraps `model.sample`."""
    import torch
    import transformers_neuronx.config as neuronx_config
    from transformers_neuronx.llama.model import LlamaForSampling
    from transformers_neuronx.stopping_criteria import StoppingCriteriaList

    model = LlamaForSampling.from_pretrained(
        str(checkpoint_dir), **llama_from_pretrained_kwargs(options, neuronx_config)
    )
    model.load(str(compiled_dir))
    model.to_neuron()

    batch_sizes = compiled_batch_sizes(options["batchSize"])

    def sample(
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: Sequence[int],
        top_k: int,
        top_p: float,
        temperature: float,
        stop_token_ids: Sequence[int],
        should_stop: Sequence[Callable[[int], bool]],
    ) -> list[list[int]]:
        # The smallest compiled batch that holds the rows; the rows left over repeat the first prompt and are
        # ignored. Prompts are left-padded to the longest: start_ids is each row's padding, where its prompt
        # starts (the attention mask's first 1, as transformers-neuronx's generation adapter computes it).
        size = next(size for size in batch_sizes if size >= len(prompts))
        width = max(len(prompt) for prompt in prompts)
        padding = [width - len(prompt) for prompt in prompts] + [width - len(prompts[0])] * (size - len(prompts))
        rows = [*prompts, *[prompts[0]] * (size - len(prompts))]
        pad_id = stop_token_ids[0]  # never attended to: start_ids masks the padding
        input_ids = torch.tensor([[pad_id] * pad + list(row) for pad, row in zip(padding, rows)], dtype=torch.long)
        step = SampleStep(should_stop)
        with torch.inference_mode():
            output = model.sample(
                input_ids,
                sequence_length=width + max(max_new_tokens),
                start_ids=torch.tensor(padding, dtype=torch.int32) if size > 1 else None,
                top_k=top_k,
                top_p=top_p,
                temperature=temperature,
                eos_token_override=list(stop_token_ids),  # an int or a list (sample_loop_llama)
                streamer=step,
                stopping_criteria_list=StoppingCriteriaList([step]),
            )
        return [
            output[row].tolist()[padding[row] : width + step.counts[row]] for row in range(len(prompts))
        ]

    return sample
