"""One request's answer as its tokens come: when it must stop (end of turn, stop string, max_new_tokens, the time
limit), the text it may stream so far, and the response it gets. Plain Python.
"""

from __future__ import annotations

import logging
from typing import Any
from collections.abc import Callable, Sequence

from neuronx_chat import Generator

log = logging.getLogger(__name__)


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
