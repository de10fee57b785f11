"""TorchServe handler for a Llama chat model compiled by the compile job (transformers-neuronx).

TorchServe calls `handle(data, context)` in <model dir>/code/<hash>/inference.py directly, through the served code's
entry code/neuronx_code_<hash>.py (TS_DEFAULT_SERVICE_HANDLER=neuronx_code_<hash>:handle, contract
`endpoint.servedCode`, `endpoint.serviceHandlerFunction`); the SageMaker
PyTorch inference toolkit only starts TorchServe and serves /ping and /invocations. TorchServe 0.11.0
calls `handle(None, context)` once when the worker starts (ts/model_loader.py, _get_function_entry_point):
that call loads the model, and a load that fails raises, so the worker does not come up. Every later call
gets a batch: a list of requests, each a dict whose "body" is the request's bytes (the toolkit's
default-ts.properties sets decode_input_request=false), and returns one response per request.

The model dir is the compile job's artifact prefix: <checkpointDir> (config, tokenizer,
generation_config.json, weights), <compiledDir> (NEFFs) and the marker (manifest), beside code/.

The request and its answer are written in neuronx_request.py (the contract), neuronx_openai.py (the OpenAI Chat
Completions format, for a body with "model"), neuronx_chat.py (the prompt),
neuronx_answer.py (an answer as its tokens come) and neuronx_scheduler.py (which requests generate together);
neuronx_loading.py loads the model. All are placed beside this file in code/<hash>/, with neuronx_common.py (shared
with the compile job) and contract.json.

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
import signal
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Mapping

from neuronx_admission import OVERLOADED, RETRY_AFTER, Admission, Refusal
from neuronx_chat import Generator, ModelConfigurationError, PreparedRequest, prepare
from neuronx_common import CONTRACT
from neuronx_loading import generation_time_limit, load_generator
from neuronx_openai import is_chat_completion, parse_chat_completion
from neuronx_request import (
    BODY_KEY,
    HTTP_INTERNAL_ERROR,
    JSON_CONTENT_TYPE,
    GenerationRequest,
    RequestError,
    bad_request,
    bounded_ascii,
    check_accept,
    check_content_type,
    header,
    parse_json_body,
    parse_request,
)
from neuronx_scheduler import RequestSequence, StepScheduler, generate_rows, plan_calls

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The TorchServe entry point


@dataclass(frozen=True)
class Worker:
    generator: Generator
    time_limit: float
    """Seconds a whole batch (or, step by step, each request) may generate."""
    steps: StepWorker | None = None
    """With artifacts compiled for continuous batching: the running batch, one handle() call per step."""


_worker: Worker | None = None
clock: Callable[[], float] = time.monotonic


def handle(data: list[Mapping[str, Any]] | None, context: Any) -> list[bytes] | None:
    """TorchServe's entry point: `handle(None, context)` loads the model; `handle(batch, context)` answers
    each request of the batch, with its own status and content type; it raises for no request's fault."""
    global _worker
    if data is None:
        _worker = _load_worker(context)
        return None
    if _worker is None:
        raise ModelConfigurationError("handle was called with requests before the model was loaded")
    if _worker.steps is not None:
        return _worker.steps.handle(data, context)
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

    def send_text(index: int, request: GenerationRequest, delta: str) -> None:
        first = index not in streaming
        if first:
            # The frontend writes the status line and headers with a request's first chunk
            # (TorchServe 0.11.0 RestJob.responseInference), taking the content type from that message.
            context.set_response_content_type(index, request.answer_type)
            streaming.add(index)
        send_intermediate(context, {index: request.api.text(delta, request_ids[index], first)})

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
                on_text=lambda row, delta, call=call: send_text(
                    positions[call[row]], prepared[call[row]].request, delta
                ),
            )
        except Exception as error:
            for i in call:
                index = positions[i]
                answers[index] = _failure(error, request_ids[index])
                if index in streaming:
                    # Too late for a status: the stream ends with the error's line.
                    request = prepared[i].request
                    line = request.api.stream_error(answers[index][1], request_ids[index])
                    answers[index] = (200, None, request.answer_type, line)
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
            request, index = prepared[i].request, positions[i]
            if request.stream:
                body = request.api.end(response, request_ids[index], first=index not in streaming)
            else:
                body = request.api.answer(response, request_ids[index])
            answers[index] = (200, None, request.answer_type, body)
    bodies = []
    for index, answer in enumerate(answers):
        assert answer is not None
        status, error, content_type, body = answer
        if error is not None:
            context.set_response_status(status, error, index)
        context.set_response_content_type(index, content_type)
        bodies.append(body)
    return bodies


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
    payload = parse_json_body(request[BODY_KEY])
    # The body's own key says which format it is in (contract endpoint.chatCompletions).
    parsed = parse_chat_completion(payload) if is_chat_completion(payload) else parse_request(payload)
    # After the body, which says whether the answer is streamed (and so its type).
    check_accept(header(headers, "accept"), parsed.answer_type)
    return prepare(generator, parsed)


def _refused(refusal: Refusal, request_id: str) -> Held:
    """A request refused before it started (neuronx_admission.py): 503 with Retry-After, and the seconds in the body
    too, since SageMaker passes a model's status and body on (ModelError) but not its headers."""
    log.info("request %s: %d %s", request_id, OVERLOADED, refusal.message)
    body = json.dumps({"error": refusal.message, "retry_after_seconds": refusal.retry_after}).encode("ascii")
    return Held(None, False, (OVERLOADED, refusal.message, JSON_CONTENT_TYPE, body),
                headers={RETRY_AFTER: str(refusal.retry_after)})


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
# Continuous batching: TorchServe 0.11.0 calls handle once per decoding step


CONTINUOUS_BATCHING = "continuousBatching"
"""The model config YAML's key (TorchServe 0.11.0 frontend ModelConfig); the worker sees the YAML as
context.model_yaml_config (ts/context.py)."""
WORKERS_VARIABLE = CONTRACT["endpoint"]["environment"]["workers"]
"""TorchServe's workers per model, as the toolkit passes them (SAGEMAKER_MODEL_SERVER_WORKERS)."""
STREAM_NEXT = "ts_stream_next"
"""The prediction header by which the frontend keeps a job (\"true\": a chunk) or lets it go (\"false\": the last chunk);
without it a prediction is a whole HTTP response (RestJob.responseInference)."""


def _load_worker(context: Any) -> Worker:
    """The model, and the running batch when the artifacts were compiled for continuous batching. TorchServe must
    run the model in the same mode: its continuous batching sends every step a job that is not answered yet, its
    dynamic batching a batch once."""
    generator = load_generator(context.system_properties["model_dir"])
    time_limit = generation_time_limit(os.environ)
    continuous = bool((getattr(context, "model_yaml_config", None) or {}).get(CONTINUOUS_BATCHING))
    if continuous != (generator.step is not None):
        compiled = "for" if generator.step is not None else "without"
        runs = "with" if continuous else "without"
        raise ModelConfigurationError(
            f"the artifacts were compiled {compiled} continuous batching, but TorchServe runs the model {runs} it"
            f" (the model config's {CONTINUOUS_BATCHING}); compile and serve with the same setting"
        )
    workers = os.environ.get(WORKERS_VARIABLE, "1").strip()
    if continuous and workers != "1":
        # tools/model-server/test_torchserve_continuous_batching.py, test_with_several_workers_...: Model.pollInferJob
        # holds the model's lock while an idle worker waits for a job, and a busy worker needs it for every step.
        raise ModelConfigurationError(
            f"{WORKERS_VARIABLE}={workers!r}: TorchServe 0.11.0's continuous batching stalls a running request when"
            " a model has several workers (an idle one waits for a job holding the lock the busy one needs for its"
            " next step); serve continuous batching with 1 worker per model"
        )
    steps = StepWorker(generator, time_limit) if continuous else None
    if continuous:
        _drain_on_sigterm()
    return Worker(generator, time_limit, steps)


DRAIN_GRACE_SECONDS = float(CONTRACT["endpoint"]["draining"]["workerGraceSeconds"])
"""After SIGTERM, what runs ends within this long with what it has (contract endpoint.draining): the frontend waits
for its workers a little longer, and SageMaker kills the container 30 s after its SIGTERM; the rest is left for the
answers to go out and the model server to stop."""
_sigterm_at: float | None = None


def _drain_on_sigterm() -> None:
    """SIGTERM to this worker drains it (StepWorker.handle, at the next step) instead of ending it. The library's
    agent in TorchServe's JVM sends it when the container gets SIGTERM (readiness/.../DrainOnTerm.java, the runtime
    README's "Draining on SIGTERM"); TorchServe itself only ever stops a worker with SIGKILL."""

    def on_sigterm(signum: int, frame: Any) -> None:
        global _sigterm_at
        if _sigterm_at is None:
            _sigterm_at = clock()

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        log.warning("not the main thread: SIGTERM does not drain this worker")


@dataclass
class Held:
    """A request the running batch holds, from its first step until the frontend lets it go."""

    sequence: RequestSequence | None
    """None when it failed before it could run (a bad request)."""
    streamed: bool
    whole: tuple[int, str | None, str, bytes] | None = None
    """(status, reason phrase, content type, body) of an answer sent as one HTTP response, once ready."""
    started: bool = False
    """Its first line is sent: its status and content type are the client's."""
    answered: bool = False
    """Its whole answer is sent: 0.11.0's aggregator still holds the job and sends it once more, by its id."""
    headers: Mapping[str, str] | None = None
    """Response headers of the whole answer (Retry-After of a refusal)."""
    last_line: bytes | None = None
    """A started stream's last line, once it ended."""


class StepWorker:
    """TorchServe 0.11.0's continuous batching (checked on the image's stack by tools/model-server/
    test_torchserve_continuous_batching.py): every call is one step with every job the frontend holds, new ones
    with their body, the others by their id alone once they were answered once. Each call checks the new
    requests, runs one decoding step (StepScheduler: a request joins when a slot is free, leaves when it ends)
    and answers what is ready. A step either streams (context.stopping_criteria: each prediction is a chunk, the
    first with the status line, or the last) or answers whole responses (no ts_stream_next: a 4xx, a 500 or a
    non-streamed answer with its own status); what is not ready, or not of the step's kind, gets no prediction
    (it is left out of context.request_ids) and comes again with the next step. The two kinds of step alternate
    while both have something to send."""

    def __init__(self, generator: Generator, time_limit: float):
        self.generator, self.time_limit = generator, time_limit
        admission = Admission(generator.batch_size, time_limit)
        self.scheduler = StepScheduler(generator, generator.step, generator.batch_size, lambda: clock(), admission)
        self.draining = False
        self.held: dict[str, Held] = {}
        self.last_kind = "whole"

    def handle(self, data: list[Mapping[str, Any]], context: Any) -> list[bytes]:
        if _sigterm_at is not None and not self.draining:
            self.draining = True
            log.warning("SIGTERM: draining (what waits is refused, what runs ends within %.0f s)", DRAIN_GRACE_SECONDS)
            self.scheduler.drain(_sigterm_at + DRAIN_GRACE_SECONDS - clock())
        ids = {index: str(context.get_request_id(index)) for index in range(len(data))}
        for request_id in set(self.held) - set(ids.values()):
            # The frontend let it go (its client hung up): its slot is free for the next step.
            gone = self.held.pop(request_id)
            if gone.sequence is not None:
                self.scheduler.remove(gone.sequence)
        for index, request_id in ids.items():
            if request_id not in self.held:
                self.held[request_id] = self._admit(data[index], context, index, request_id)
        if self.scheduler.busy:
            for sequence in self.scheduler.step():
                self._ended(sequence)
        return self._answer(ids, context)

    def _admit(self, request: Any, context: Any, index: int, request_id: str) -> Held:
        try:
            prepared = _prepare(self.generator, request, context, index)
        except Exception as error:
            return Held(None, False, _failure(error, bounded_ascii(request_id)))
        streamed = prepared.request.stream
        # Its time runs from now, the step after TorchServe received it (neuronx_admission.py).
        sequence = RequestSequence(request_id, prepared, self.generator, clock() + self.time_limit, clock, streamed)
        refusal = self.scheduler.offer(sequence)
        if refusal is not None:
            return _refused(refusal, bounded_ascii(request_id))
        return Held(sequence, streamed)

    def _ended(self, sequence: RequestSequence) -> None:
        held = self.held[sequence.request_id]
        request_id = bounded_ascii(sequence.request_id)
        if sequence.refusal is not None:
            self.held[sequence.request_id] = _refused(sequence.refusal, request_id)
            return
        request = sequence.prepared.request
        if sequence.error is not None:
            status, message, content_type, body = _failure(sequence.error, request_id)
            if held.started:
                held.last_line = request.api.stream_error(message, request_id)  # too late for a status
            else:
                held.whole = (status, message, content_type, body)
            return
        response = sequence.response
        assert response is not None
        log.info(
            "request %s: prompt_tokens=%d completion_tokens=%d finish_reason=%s continuous",
            request_id,
            response["usage"]["prompt_tokens"],
            response["usage"]["completion_tokens"],
            response["finish_reason"],
        )
        if not held.streamed:
            held.whole = (200, None, request.answer_type, request.api.answer(response, request_id))
        elif held.started:
            held.last_line = request.api.end(response, request_id, first=False)
        else:
            # Ended before its first line: the lines of its text and its last line, as one response.
            text = sequence.take_text()
            body = request.api.text(text, request_id, first=True) if text else b""
            held.whole = (200, None, request.answer_type, body + request.api.end(response, request_id, first=not text))

    def _answer(self, ids: Mapping[int, str], context: Any) -> list[bytes]:
        answers = [b""] * len(ids)
        whole = [i for i, r in ids.items() if self.held[r].whole is not None and not self.held[r].answered]
        streams = [i for i, r in ids.items() if self._has_lines(self.held[r])]
        kind = "stream" if streams and (not whole or self.last_kind == "whole") else "whole"
        self.last_kind = kind
        last: dict[int, bool] = {}
        for index, request_id in ids.items():
            held = self.held[request_id]
            if held.answered:
                # Back once, by its id, after its whole answer: "false" lets it go (nothing reaches its client).
                context.set_response_header(index, STREAM_NEXT, "false")
                last[index] = True
                del self.held[request_id]
            elif kind == "whole" and index in whole:
                status, message, content_type, body = held.whole
                if message is not None:
                    context.set_response_status(status, message, index)
                context.set_response_content_type(index, content_type)
                for name, value in (held.headers or {}).items():
                    context.set_response_header(index, name, value)
                answers[index] = body
                held.answered = True
            elif kind == "stream" and index in streams:
                request = held.sequence.prepared.request
                context.set_response_content_type(index, request.answer_type)
                text = held.sequence.take_text()
                line = request.api.text(text, bounded_ascii(request_id), first=not held.started) if text else b""
                answers[index] = line + (held.last_line or b"")
                held.started = True
                last[index] = held.last_line is not None
                if last[index]:
                    del self.held[request_id]
            else:
                del context.request_ids[index]  # no prediction: the frontend sends it again with the next step
        # create_predict_response sets ts_stream_next from stopping_criteria for every prediction of a step, and
        # turns a handler's own "true" into "false" without it: a streaming step needs it, a whole one must not.
        context.stopping_criteria = (
            {index: (lambda _, done=last[index]: done) for index in context.request_ids} if kind == "stream" else None
        )
        return answers

    @staticmethod
    def _has_lines(held: Held) -> bool:
        """A stream with something to send: a line of text, or its end once its first line went."""
        if not held.streamed or held.sequence is None or held.answered or held.whole is not None:
            return False
        return bool(held.sequence.unsent) or (held.started and held.last_line is not None)
