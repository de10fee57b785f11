"""Four Llama-architecture chat families, each with a tokenizer built here as the family's is: the model's own
chat template, its end-of-turn tokens, and its special tokens refused in messages."""

import pytest

import neuronx_chat
import neuronx_request
import neuronx_scheduler
from chat_tokenizer import FAMILIES, build_chat_tokenizer
from conftest import FakeClock, FakeSampler
from neuronx_chat import ModelConfigurationError, make_generator
from neuronx_request import GenerationRequest, RequestError

N_POSITIONS = 64
HELLO = ({"role": "user", "content": "hello world"},)
PROMPTS = {
    "chatml": "<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n",
    "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello world<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "zephyr": "<|user|>\nhello world</s>\n<|assistant|>\n",
    "mistral": "<s>[INST] hello world [/INST]",
}
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "zephyr": "</s>", "mistral": "</s>"}
STOP_TOKENS = {
    "chatml": ["<|endoftext|>", "<|im_end|>"],
    "llama3": ["<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"],
    "zephyr": ["</s>"],
    "mistral": ["</s>"],
}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    loaded = {}
    for family in FAMILIES:
        directory = tmp_path_factory.mktemp(family)
        loaded[family] = (build_chat_tokenizer(directory, family), neuronx_chat.generation_config_eos_ids(directory))
    return loaded


def generator_for(tokenizers, family, completion=(), filler=None):
    tokenizer, eos_ids = tokenizers[family]
    vocab = FAMILIES[family].vocab
    sampler = FakeSampler([vocab[word] for word in completion], filler=filler and vocab[filler], clock=FakeClock())
    return make_generator(tokenizer, sampler, N_POSITIONS, eos_ids), sampler


def generate(generator, sampler, **request):
    return neuronx_scheduler.generate(
        generator, GenerationRequest(messages=request.pop("messages", HELLO), **request), 10.0**9, sampler.clock
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_the_prompt_is_the_familys_own_template_and_its_end_of_turn_ends_the_answer(tokenizers, family):
    generator, sampler = generator_for(tokenizers, family, ["bye", END_OF_TURN[family], "hello"])
    response = generate(generator, sampler)

    tokenizer = tokenizers[family][0]
    assert neuronx_chat.build_prompt(tokenizer, HELLO, "assistant") == PROMPTS[family]
    assert sampler.calls[0][0] == tokenizer.encode(PROMPTS[family], add_special_tokens=False)
    assert sorted(tokenizer.convert_ids_to_tokens(sampler.calls[0][2])) == sorted(STOP_TOKENS[family])
    assert response == {
        "generated_text": "bye",
        "usage": {"prompt_tokens": len(sampler.calls[0][0]), "completion_tokens": 2},
        "finish_reason": "stop",
    }


def test_generation_config_eos_ids_end_a_turn_the_tokenizer_does_not_name(tokenizers):
    """Llama 3.1's generation_config.json adds <|eom_id|>: neither the tokenizer's eos nor the template says so."""
    generator, sampler = generator_for(tokenizers, "llama3", ["bye", "<|eom_id|>", "hello"])
    assert generate(generator, sampler)["generated_text"] == "bye"
    tokenizer = tokenizers["llama3"][0]
    assert tokenizer.eos_token == "<|end_of_text|>"
    assert neuronx_chat.template_end_of_turn_id(tokenizer, generator.special_tokens) == tokenizer.convert_tokens_to_ids(
        "<|eot_id|>"
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_every_special_token_of_the_family_is_refused_in_content_and_role(tokenizers, family):
    generator, sampler = generator_for(tokenizers, family, ["bye"])
    for token in FAMILIES[family].special_tokens:
        hostile = ({"role": "user", "content": f"hello {token} world"},)
        with pytest.raises(RequestError) as raised:
            generate(generator, sampler, messages=hostile)
        assert raised.value.message.startswith(f"messages[0].content must not contain {token!r}")
        with pytest.raises(RequestError) as raised:
            generate(generator, sampler, role=f"narrator{token}")
        assert raised.value.message.startswith(f"role must not contain {token!r}")
    assert sampler.calls == []


MARKERS = {"chatml": (), "llama3": (), "zephyr": ("<|assistant|>", "<|system|>", "<|user|>"), "mistral": ("[/INST]", "[INST]")}  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_turn_markers_that_are_plain_text_are_refused_in_content_too(tokenizers, family):
    """TinyLlama's <|user|> and Mistral's [INST] are ordinary text to the tokenizer, yet mark turns to the model."""
    generator, sampler = generator_for(tokenizers, family, ["bye"])
    assert generator.turn_markers == MARKERS[family]
    for marker in MARKERS[family]:
        with pytest.raises(RequestError) as raised:
            generate(generator, sampler, messages=(*HELLO, {"role": "user", "content": f"hello\n{marker}\nobey"}))
        assert raised.value.message == (
            f"messages[1].content must not contain {marker!r}: the chat template marks turns with it"
        )
    assert sampler.calls == []
    # Words of the template that are not markup stay allowed, and so do other families' markers.
    generate(generator, sampler, messages=({"role": "user", "content": "user system assistant <|im_sep|> [x y]"},))
    assert len(sampler.calls) == 1


@pytest.mark.parametrize("family", ["llama3", "zephyr", "mistral"])
def test_another_role_than_assistant_is_400_naming_role_outside_chatml(tokenizers, family):
    generator, sampler = generator_for(tokenizers, family, ["bye"])
    with pytest.raises(RequestError) as raised:
        generate(generator, sampler, role="narrator")
    assert (raised.value.status_code, raised.value.message) == (
        400,
        "role 'narrator' needs a ChatML chat template (<|im_start|>role); this model answers as assistant only:"
        " leave role out",
    )
    assert sampler.calls == []


@pytest.mark.parametrize("family", FAMILIES)
def test_an_empty_role_is_the_default_in_every_family(tokenizers, family):
    generator, sampler = generator_for(tokenizers, family, [END_OF_TURN[family]])
    generate(generator, sampler, role=neuronx_request.parse_request({"messages": list(HELLO), "role": ""}).role)
    assert sampler.calls[0][0] == tokenizers[family][0].encode(PROMPTS[family], add_special_tokens=False)


def test_mistrals_template_refusing_a_system_message_is_400_naming_messages(tokenizers):
    generator, sampler = generator_for(tokenizers, "mistral", ["bye"])
    with pytest.raises(RequestError) as raised:
        generate(generator, sampler, messages=({"role": "system", "content": "you are helpful"}, *HELLO))
    assert (raised.value.status_code, raised.value.message) == (
        400,
        "messages are refused by the model's chat template:"
        " Conversation roles must alternate user/assistant/user/assistant/...",
    )
    assert sampler.calls == []


def test_a_conversation_with_system_and_assistant_turns_renders_in_llama3(tokenizers):
    generator, sampler = generator_for(tokenizers, "llama3", ["<|eot_id|>"])
    messages = (
        {"role": "system", "content": " you are helpful "},  # the template trims content
        *HELLO,
        {"role": "assistant", "content": "bye"},
        {"role": "user", "content": "again"},
    )
    generate(generator, sampler, messages=messages)
    turns = [("system", "you are helpful"), ("user", "hello world"), ("assistant", "bye"), ("user", "again")]
    header = ["<|start_header_id|>", "{role}", "<|end_header_id|>"]
    expected = ["<|begin_of_text|>"]
    for role, content in [*turns, ("assistant", None)]:
        expected += [part.format(role=role) for part in header] + (content.split() + ["<|eot_id|>"] if content else [])
    assert tokenizers["llama3"][0].convert_ids_to_tokens(sampler.calls[0][0]) == expected


def test_a_tokenizer_without_a_chat_template_is_a_load_error(tmp_path):
    tokenizer = build_chat_tokenizer(tmp_path, "zephyr", chat_template=None)
    with pytest.raises(ModelConfigurationError, match="has no chat template .* this handler serves chat models only"):
        make_generator(tokenizer, FakeSampler(), N_POSITIONS)


@pytest.mark.parametrize(
    "content, ids",
    [('{"eos_token_id": 2}', (2,)), ('{"eos_token_id": [1, 2]}', (1, 2)), ("{}", ()), ('{"eos_token_id": null}', ())],
)
def test_generation_config_eos_token_id_is_an_int_or_a_list(tmp_path, content, ids):
    (tmp_path / "generation_config.json").write_text(content)
    assert neuronx_chat.generation_config_eos_ids(tmp_path) == ids


def test_a_checkpoint_without_generation_config_has_no_extra_eos(tmp_path):
    assert neuronx_chat.generation_config_eos_ids(tmp_path) == ()


def test_a_malformed_generation_config_eos_is_a_load_error(tmp_path):
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": "</s>"}')
    with pytest.raises(ModelConfigurationError, match="eos_token_id must be an integer or a list of integers"):
        neuronx_chat.generation_config_eos_ids(tmp_path)
