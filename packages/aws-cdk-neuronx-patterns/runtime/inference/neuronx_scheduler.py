"""The scheduler: which requests the model generates together and how.

Batching (TorchServe's dynamic batching: up to SAGEMAKER_TS_BATCH_SIZE requests that arrive within
SAGEMAKER_TS_MAX_BATCH_DELAY ms come in one call): every request is checked on its own first; the good ones
are generated together, one row each, in as few model calls as the compiled batch size allows. Rows of one
call share the sampling parameters (transformers-neuronx 0.13's sample() takes one top_k, top_p and
temperature for the whole batch) and fit n_positions together (prompts are left-padded to the longest);
requests that cannot share a call get calls of their own, one after another, each with an equal share of
the time left. Each row stops on its own: its end of turn, its stop strings, its max_new_tokens.
Each generation ends within the time limit it is given, with the answer so far.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from collections.abc import Callable, Sequence

from neuronx_answer import StopMonitor, TextStream, shape_response
from neuronx_chat import Generator, PreparedRequest, prepare
from neuronx_request import GenerationRequest

log = logging.getLogger(__name__)


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
