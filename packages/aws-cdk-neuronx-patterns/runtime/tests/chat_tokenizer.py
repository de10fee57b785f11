"""Real, tiny chat tokenizers built from local files: no network, the same code path as the real models'.

One per chat family the handler serves. Each template is written here to render what the family's published
template renders (the Hugging Face tokenizer_config.json `chat_template` of the model named), and each
tokenizer has that family's special tokens, so that a special token's text in a message becomes the control
token, as in the real tokenizer.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

# cyberagent/calm3-22b-chat: ChatML.
CALM3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# meta-llama/Meta-Llama-3-8B-Instruct: bos, then one header + trimmed content + <|eot_id|> per message.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for turn in messages %}"
    "{{ '<|start_header_id|>' + turn['role'] + '<|end_header_id|>\n\n' + (turn['content'] | trim) + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# TinyLlama/TinyLlama-1.1B-Chat-v1.0 (Zephyr style): <|role|> markers are plain text, each turn ends with eos;
# the template writes the line breaks between its blocks.
ZEPHYR_CHAT_TEMPLATE = (
    "{% for turn in messages %}\n"
    "{{ '<|' + turn['role'] + '|>\n' + turn['content'] + eos_token }}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)
# mistralai/Mistral-7B-Instruct-v0.2: roles must alternate user/assistant from the first message, so a system
# message is refused with raise_exception; [INST] markers are plain text; no generation prompt of its own.
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for turn in messages %}"
    "{% if (turn['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if turn['role'] == 'user' %}{{ '[INST] ' + turn['content'] + ' [/INST]' }}"
    "{% else %}{{ turn['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)

WORDS = [
    "system", "user", "assistant", "narrator", "you", "are", "helpful", "hello", "world", "again", "STOP", "bye",
    "<|system|>", "<|user|>", "<|assistant|>", "[INST]", "[/INST]",
]  # fmt: skip


@dataclass(frozen=True)
class Family:
    template: str
    special_tokens: list[str]
    """[unk, bos or None, eos, ...]: the named ones first, then added control tokens."""
    bos: str | None
    eos: str
    additional: list[str] = field(default_factory=list)
    """Listed as additional_special_tokens (the others are only added tokens flagged special)."""
    generation_eos: list[str] | None = None
    """generation_config.json's eos_token_id, as token texts (None: no such file)."""

    @property
    def vocab(self) -> dict[str, int]:
        return {token: index for index, token in enumerate(self.special_tokens + WORDS)}


FAMILIES = {
    "chatml": Family(
        CALM3_CHAT_TEMPLATE,
        ["[UNK]", "<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None,
        eos="<|endoftext|>",
        additional=["<|im_start|>", "<|im_end|>"],
    ),
    "llama3": Family(
        LLAMA3_CHAT_TEMPLATE,
        [
            "[UNK]",
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
        ],
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",  # as first published; generation_config.json adds the end-of-turn tokens
        generation_eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
    ),  # fmt: skip
    "zephyr": Family(ZEPHYR_CHAT_TEMPLATE, ["<unk>", "<s>", "</s>"], bos="<s>", eos="</s>", generation_eos=["</s>"]),
    "mistral": Family(MISTRAL_CHAT_TEMPLATE, ["<unk>", "<s>", "</s>"], bos="<s>", eos="</s>"),
}
VOCAB = FAMILIES["chatml"].vocab


def build_chat_tokenizer(directory: Path, family: str = "chatml", chat_template: str | None = ""):
    """Saves a WordLevel tokenizer with the family's special tokens, chat template and generation_config.json,
    then loads it back with AutoTokenizer, as the handler loads the checkpoint's tokenizer.

    `chat_template` None saves none; "" keeps the family's.
    """
    spec = FAMILIES[family]
    backend = Tokenizer(models.WordLevel(vocab=spec.vocab, unk_token=spec.special_tokens[0]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in spec.special_tokens])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=spec.special_tokens[0],
        bos_token=spec.bos,
        eos_token=spec.eos,
        additional_special_tokens=spec.additional,
        chat_template=spec.template if chat_template == "" else chat_template,
    )
    tokenizer.save_pretrained(directory)
    if spec.generation_eos is not None:
        ids = [spec.vocab[token] for token in spec.generation_eos]
        (Path(directory) / "generation_config.json").write_text(json.dumps({"eos_token_id": ids}))
    return AutoTokenizer.from_pretrained(directory)
