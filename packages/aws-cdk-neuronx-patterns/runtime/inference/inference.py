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

The request and its answer are written in neuronx_request.py (the contract), neuronx_chat.py (the prompt),
neuronx_answer.py (an answer as its tokens come) and neuronx_scheduler.py (which requests generate together);
neuronx_loading.py loads the model. All are placed beside this file in code/, with neuronx_common.py (shared with
the compile job) and contract.json.

A streamed request (Accept must allow application/jsonlines) is answered 200 with application/jsonlines, one
JSON object per line ("\n"-terminated), sent as the text settles (TorchServe's send_intermediate_predict_response,
Transfer-Encoding: chunked): {"text": delta} lines, then one last line, the response (neuronx_request.py) with "text", the last
delta. The deltas concatenate to generated_text; no delta holds half a character or any part of a stop string.
A failure after the first line was sent cannot change the status any more: the stream then ends with the line
{"error": message} instead. A request that fails before its first line is answered as any other.
Each generation ends within NEURONX_GENERATION_TIME_LIMIT_SECONDS (the whole batch shares it), inside
SageMaker's 60 s invocation limit, with the answer so far. A bad request is answered 4xx with
{"error": message naming the field}; anything else that fails in one request is a 500 for that request
only, with a generic message, and its traceback in the log. The other requests of a batch are answered.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Mapping

from neuronx_chat import Generator, ModelConfigurationError, PreparedRequest, prepare
from neuronx_loading import generation_time_limit, load_generator
from neuronx_request import (
    BODY_KEY,
    HTTP_INTERNAL_ERROR,
    JSON_CONTENT_TYPE,
    JSONLINES_CONTENT_TYPE,
    RequestError,
    bad_request,
    bounded_ascii,
    check_accept,
    check_content_type,
    header,
    parse_json_body,
    parse_request,
)
from neuronx_scheduler import generate_rows, plan_calls

log = logging.getLogger(__name__)


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
        raise bad_request("body is missing")
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
