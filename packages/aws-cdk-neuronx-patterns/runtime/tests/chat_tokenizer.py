"""A real, tiny ChatML tokenizer built from local files: no network, same code path as calm3's."""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

CALM3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["[UNK]", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
WORDS = ["system", "user", "assistant", "narrator", "you", "are", "helpful", "hello", "world", "again", "STOP", "bye"]
VOCAB = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}


def build_chat_tokenizer(directory: Path):
    """Saves a WordLevel tokenizer with calm3's special tokens and chat template, then loads it
    back with AutoTokenizer, as the handler loads the checkpoint's tokenizer."""
    backend = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        eos_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CALM3_CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)
