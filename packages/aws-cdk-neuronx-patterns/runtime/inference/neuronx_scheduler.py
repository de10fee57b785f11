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

from neuronx_admission import DRAIN_RETRY_AFTER, Admission, Refusal
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


# ---------------------------------------------------------------------------------------------
# Step-level (continuous) scheduling


StepModel = Callable[..., dict[int, int]]
"""step(prefill={slot: prompt ids}, decode={slot: (last token, its position)}, sampling={slot: (top_k, top_p,
temperature)}) -> {slot: next token id} for every slot of prefill and decode. One call is one decoding step of the
running batch: each new sequence's prompt is encoded into its slot's KV cache (transformers-neuronx 0.13's
continuous batching encodes a context at batch 1 into the slot named by start_ids, with cache_ids 0..n-1) and
every running sequence gets one token (the decode graph over the slots, each at its own cache_ids position).
Each slot is sampled with its own parameters, on the host from that slot's logits: requests with different
temperature, top_k and top_p share a step."""


class RequestSequence:
    """One request's life in the running batch: its prompt, its stop monitor, its text stream when streamed, its
    deadline, the slot (KV cache row) it holds while it runs, and its response once it ends (or its refusal, when it
    could not start before its deadline)."""

    def __init__(self, request_id: str, prepared: PreparedRequest, generator: Generator, deadline: float,
                 clock: Callable[[], float], streamed: bool):
        self.request_id, self.prepared, self.deadline = request_id, prepared, deadline
        self.monitor = StopMonitor(generator, prepared.request.stop, deadline, clock, prepared.max_new_tokens)
        self.stream = TextStream(generator, prepared.request.stop) if streamed else None
        self.slot: int | None = None
        self.started: float | None = None
        """When it took its slot."""
        self.refusal: Refusal | None = None
        self.unsent = ""
        """Streamed text settled since it was last taken (take_text)."""
        self.response: dict[str, Any] | None = None
        self.error: Exception | None = None
        self.generator = generator

    @property
    def finished(self) -> bool:
        return self.response is not None or self.error is not None or self.refusal is not None

    @property
    def position(self) -> int:
        """Where the last token sits in the slot's cache: after the prompt and the tokens before it."""
        return len(self.prepared.prompt_ids) + len(self.monitor.new_ids) - 1

    def accept(self, token_id: int) -> None:
        """The sequence's next token: it ends here at its end of turn, a stop string, max_new_tokens or the deadline."""
        ended = self.monitor(token_id)
        if self.stream is not None:
            self.unsent += self.stream.update(self.monitor.new_ids)
        if ended:
            prompt = self.prepared.prompt_ids
            self.response = shape_response(self.generator, [*prompt, *self.monitor.new_ids], len(prompt),
                                           self.prepared.request.stop)
            if self.monitor.timed_out:
                log.warning("generation time limit reached after %d tokens",
                            self.response["usage"]["completion_tokens"])
            if self.stream is not None:
                self.response = {"text": self.stream.rest(self.response["generated_text"]), **self.response}

    def take_text(self) -> str:
        text, self.unsent = self.unsent, ""
        return text


class StepScheduler:
    """Continuous batching over `slots` KV cache rows: a sequence joins at the next step when a slot is free (the
    longest waiting first), and leaves at the step its answer ends, freeing its slot for the next one. A failure of
    one sequence's own work (its stop check, its text) ends that sequence only; a failing model step ends every
    sequence in it, since they share the call. With `admission` (neuronx_admission.py), offer() refuses at once a
    request that could not start in time, and a waiting sequence whose deadline passes leaves refused, unstarted.
    drain() (SIGTERM) refuses what waits and cuts what runs at a deadline of its own."""

    def __init__(self, generator: Generator, model: StepModel, slots: int, clock: Callable[[], float] = time.monotonic,
                 admission: Admission | None = None):
        self.generator, self.model, self.clock, self.admission = generator, model, clock, admission
        self.free = list(range(slots))
        self.waiting: list[RequestSequence] = []
        self.running: dict[int, RequestSequence] = {}
        """By slot."""

    def admit(self, sequence: RequestSequence) -> None:
        self.waiting.append(sequence)

    def offer(self, sequence: RequestSequence) -> Refusal | None:
        """Admits `sequence` unless the admission rule refuses it (the refusal, and `sequence` is not kept)."""
        refusal = None if self.admission is None else self.admission.refuse(len(self.running), len(self.waiting))
        if refusal is None:
            self.admit(sequence)
        return refusal

    def drain(self, grace: float) -> None:
        """From now on every new request is refused, what waits is refused at the next step, and what runs ends
        within `grace` seconds with what it has (finish_reason "length")."""
        if self.admission is None:
            self.admission = Admission(len(self.free) + len(self.running), grace)
        self.admission.draining = True
        for sequence in self.running.values():
            sequence.monitor.deadline = min(sequence.monitor.deadline, self.clock() + grace)

    def remove(self, sequence: RequestSequence) -> None:
        """Forgets `sequence` (its client is gone, or it was answered): its slot is free for the next step."""
        if sequence in self.waiting:
            self.waiting.remove(sequence)
        if sequence.slot is not None and self.running.get(sequence.slot) is sequence:
            del self.running[sequence.slot]
            self.free.append(sequence.slot)
            sequence.slot = None

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def step(self) -> list[RequestSequence]:
        """One decoding step; returns the sequences that ended in it (their slots are free again)."""
        refused = self._refuse_waiting()
        joining = []
        while self.waiting and self.free:
            sequence = self.waiting.pop(0)
            sequence.slot = self.free.pop(0)
            sequence.started = self.clock()
            self.running[sequence.slot] = sequence
            joining.append(sequence)
        if not self.running:
            return refused
        prefill = {s.slot: list(s.prepared.prompt_ids) for s in joining}
        decode = {
            slot: (s.monitor.new_ids[-1], s.position) for slot, s in self.running.items() if s not in joining
        }
        sampling = {slot: s.prepared.sampling for slot, s in self.running.items()}
        try:
            tokens = self.model(prefill=prefill, decode=decode, sampling=sampling)
        except Exception as error:
            log.error("a model step failed: every sequence of the step ends", exc_info=error)
            ended = list(self.running.values())
            for sequence in ended:
                sequence.error = error
                self.remove(sequence)
            return refused + ended
        ended = refused
        for slot, sequence in list(self.running.items()):
            try:
                sequence.accept(int(tokens[slot]))
            except Exception as error:
                log.error("request %s failed", sequence.request_id, exc_info=error)
                sequence.error = error
            if sequence.finished:
                ended.append(sequence)
                self.remove(sequence)
                if self.admission is not None and sequence.started is not None:
                    self.admission.ran(self.clock() - sequence.started)
        return ended

    def _refuse_waiting(self) -> list[RequestSequence]:
        """The waiting sequences that may not start any more: past their deadline (refused within it, never started
        late), or all of them while draining."""
        if self.admission is None:
            return []
        now = self.clock()
        refused = [s for s in self.waiting if self.admission.draining or now >= s.deadline]
        for sequence in refused:
            sequence.refusal = (
                Refusal(DRAIN_RETRY_AFTER, "the endpoint is shutting down") if self.admission.draining
                else Refusal(self.admission.retry_after(), "no slot was free in time")
            )  # fmt: skip
            self.remove(sequence)
        return refused
