"""The chat prompt: what the model's tokenizer and chat template say (end-of-turn tokens, special tokens, turn
markers), the prompt a request renders to and the room it leaves; a request checked against them is a
PreparedRequest, ready for the scheduler. Plain Python: transformers' tokenizer is passed in.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from neuronx_request import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_ROLE,
    GREEDY_TEMPERATURE,
    GenerationRequest,
    bad_request,
    describe,
    is_int,
)

log = logging.getLogger(__name__)

GENERATION_CONFIG = "generation_config.json"

CHATML_TURN_START = "<|im_start|>"
"""ChatML (calm3's template) opens a turn with <|im_start|>{role}\\n: the only family whose answering
role a request may choose."""


class ModelConfigurationError(RuntimeError):
    """The artifacts in the model dir or the endpoint's environment are not what this handler serves."""


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
    """The most rows one sample() call takes (the compiled batch size); with `step`, the slots."""
    step: Callable[..., dict[int, int]] | None = None
    """With artifacts compiled for continuous batching: one decoding step of the running batch
    (neuronx_scheduler.StepModel), instead of sample()."""


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
    ids = [value] if is_int(value) or value is None else value
    if not isinstance(ids, list) or not all(is_int(item) or item is None for item in ids):
        raise ModelConfigurationError(f"{path}: eos_token_id must be an integer or a list of integers, got {value!r}")
    return tuple(item for item in ids if item is not None)


def require_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelConfigurationError(
            "the checkpoint's tokenizer has no chat template (tokenizer_config.json chat_template):"
            " this handler serves chat models only; use a chat or instruct model"
        )


def make_generator(
    tokenizer: Any,
    sample: Sampler,
    n_positions: int,
    eos_token_ids: Sequence[int] = (),
    batch_size: int = 1,
    step: Callable[..., dict[int, int]] | None = None,
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
        step,
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
            raise bad_request(f"{field} must not contain {min(found)[1]!r}: {reason}")


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
        raise bad_request(f"messages are refused by the model's chat template: {error}") from None
    if role == DEFAULT_ROLE:
        return prompt
    chatml_generation_prompt = f"{CHATML_TURN_START}{DEFAULT_ROLE}\n"
    if not prompt.endswith(chatml_generation_prompt):
        raise bad_request(
            f"role {describe(role)} needs a ChatML chat template ({CHATML_TURN_START}role); this model answers"
            f" as {DEFAULT_ROLE} only: leave role out"
        )
    return prompt[: -len(chatml_generation_prompt)] + f"{CHATML_TURN_START}{role}\n"


def resolve_max_new_tokens(
    requested: int | None, prompt_tokens: int, n_positions: int, field: str = "max_new_tokens"
) -> int:
    """`requested` (`field` of the body), or the default, checked against the room the prompt leaves."""
    room = n_positions - prompt_tokens
    if requested is None:
        if room < 1:
            raise bad_request(
                f"messages take {prompt_tokens} tokens, leaving no room to generate within {n_positions} positions"
            )
        return min(DEFAULT_MAX_NEW_TOKENS, room)
    if requested > room:
        raise bad_request(
            f"{field} {describe(requested)} + {prompt_tokens} prompt tokens exceed the model's"
            f" {n_positions} positions; at most {max(room, 0)} new tokens fit"
        )
    return requested


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
        raise bad_request(f"messages has {len(request.messages)} entries; the model holds {generator.n_positions} tokens")
    for index, message in enumerate(request.messages):
        _reject_markers(f"messages[{index}].content", message["content"], generator)
    _reject_markers("role", request.role, generator)
    prompt = build_prompt(generator.tokenizer, request.messages, request.role)
    prompt_ids = generator.tokenizer.encode(prompt, add_special_tokens=False)
    max_new_tokens = resolve_max_new_tokens(
        request.max_new_tokens, len(prompt_ids), generator.n_positions, request.api.max_tokens_field
    )
    return PreparedRequest(request, prompt_ids, max_new_tokens)
