"""Streamed answers: a request with "stream": true is answered in JSON Lines as its text settles, through
TorchServe 0.11.0's send_intermediate_predict_response, here a fake that behaves as the real one (and the
frontend) do with the context: each message answers the requests it names and marks them ts_stream_next=true;
the frontend writes a request's status and headers with its first chunk, and the handler's return value is the
last chunk of a streamed request (ts/protocol/otf_message_handler.py create_predict_response, frontend
BatchAggregator.sendResponse and RestJob.responseInference)."""

import json
import sys
import types
from dataclasses import dataclass

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

import inference
import neuronx_answer
import neuronx_loading
import neuronx_request
from chat_tokenizer import CALM3_CHAT_TEMPLATE, FAMILIES, VOCAB
from conftest import JSON, FakeSampler, torchserve_batch

JSONLINES = "application/jsonlines"
HELLO = [{"role": "user", "content": "hello"}]
CHATML_SPECIAL = FAMILIES["chatml"].special_tokens


@dataclass
class Answer:
    status: int
    phrase: str | None
    content_type: str
    chunks: list[bytes]
    """Every chunk the client got, the last one (handle's return value) included."""

    @property
    def lines(self) -> list[dict]:
        data = b"".join(self.chunks)
        assert data.endswith(b"\n"), data
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    @property
    def deltas(self) -> list[str]:
        return [line["text"] for line in self.lines if "text" in line]

    @property
    def streamed_text(self) -> str:
        return "".join(self.deltas)


class Frontend:
    """The fake ts.handler_utils.utils and what TorchServe's frontend makes of the messages."""

    def __init__(self):
        self.context = None
        self.sent: dict[str, list[bytes]] = {}
        self.first: dict[str, tuple[int, str | None, str]] = {}
        self.messages = 0

    def send_intermediate_predict_response(self, ret, req_id_map, message, code, context):
        assert code == 200 and isinstance(message, str)
        self.messages += 1
        for index, request_id in req_id_map.items():
            context.set_response_header(index, "ts_stream_next", "true")
            assert isinstance(ret[index], bytes)
            if request_id not in self.first:
                self.first[request_id] = (*context.get_response_status(index), context.get_response_content_type(index))
            self.sent.setdefault(request_id, []).append(ret[index])

    def invoke_batch(self, requests) -> list[Answer]:
        context = self.context
        self.sent, self.first = {}, {}
        data = torchserve_batch(context, requests)
        bodies = inference.handle(data, context)
        assert len(bodies) == len(requests)
        answers = []
        for index, body in enumerate(bodies):
            request_id = context.get_request_id(index)
            if context.get_response_headers(index).get("ts_stream_next") == "true":
                status, phrase, content_type = self.first[request_id]
                answers.append(Answer(status, phrase, content_type, [*self.sent[request_id], body]))
            else:
                status, phrase = context.get_response_status(index)
                answers.append(Answer(status, phrase, context.get_response_content_type(index), [body]))
        return answers

    def invoke(self, **fields) -> Answer:
        return self.invoke_batch([request(**fields)])[0]


def request(headers=None, **fields):
    return (json.dumps({"messages": HELLO, **fields}).encode(), headers or {"Content-Type": JSON})


@pytest.fixture
def frontend(monkeypatch):
    fake = Frontend()
    utils = types.ModuleType("ts.handler_utils.utils")
    utils.send_intermediate_predict_response = fake.send_intermediate_predict_response
    for name, module in (
        ("ts", types.ModuleType("ts")),
        ("ts.handler_utils", types.ModuleType("ts.handler_utils")),
        ("ts.handler_utils.utils", utils),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    return fake


@pytest.fixture
def start(serve, frontend):
    def start(sampler, batch_size=1):
        frontend.context = serve("chatml", sampler, batch_size=batch_size).context
        return frontend

    return start


def words(*names):
    return [VOCAB[name] for name in names]


# ---------------------------------------------------------------------------------------------
# A tokenizer whose tokens are single bytes, as a byte-level BPE's are for rare characters (calm3's splits
# many kanji into two or three tokens): a character's bytes arrive over several tokens.


def byte_tokenizer(directory, clean_up=False):
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(CHATML_SPECIAL + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in CHATML_SPECIAL])
    PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=CHATML_SPECIAL[0],
        eos_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CALM3_CHAT_TEMPLATE,
        clean_up_tokenization_spaces=clean_up,
    ).save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


@pytest.fixture
def start_bytes(serve, frontend, monkeypatch, tmp_path_factory):
    """The handler on the byte tokenizer; the sampler answers `text` token by token, then <|im_end|>."""

    def start(text, batch_size=1, clean_up=False):
        tokenizer = byte_tokenizer(tmp_path_factory.mktemp("bytes"), clean_up)
        monkeypatch.setattr(neuronx_loading, "load_chat_tokenizer", lambda checkpoint_dir: tokenizer)
        ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        assert len(ids) == len(text.encode("utf-8")) + 1  # one token per byte
        frontend.context = serve("chatml", FakeSampler(ids), batch_size=batch_size).context
        return frontend

    return start


JAPANESE = "こんにちは。日本語で答えます。"


# ---------------------------------------------------------------------------------------------
# The field and the headers


@pytest.mark.parametrize("value", ["true", 1, 0, None, [], {}])
def test_stream_must_be_a_boolean(start, value):
    answer = start(FakeSampler(words("bye", "<|im_end|>"))).invoke(stream=value)
    assert (answer.status, answer.content_type, len(answer.chunks)) == (400, JSON, 1)
    assert json.loads(answer.chunks[0]) == {"error": f"stream must be true or false, got {neuronx_request.describe(value)}"}


def test_without_stream_or_with_false_the_answer_is_one_json_object_as_before(start):
    server = start(FakeSampler(words("hello", "world", "<|im_end|>")))
    for fields in ({}, {"stream": False}):
        answer = server.invoke(**fields)
        assert (answer.status, answer.content_type, len(answer.chunks)) == (200, JSON, 1)
        assert json.loads(answer.chunks[0])["generated_text"] == "hello world"
    assert server.messages == 0


@pytest.mark.parametrize(
    "accept", [None, JSONLINES, "application/*", "*/*", "application/json;q=0, */*", f"{JSONLINES}; q=0.5"]
)
def test_a_streamed_answer_is_json_lines_for_an_accept_that_allows_it(start, accept):
    headers = {"Content-Type": JSON, **({"Accept": accept} if accept is not None else {})}
    answer = start(FakeSampler(words("hello", "world", "<|im_end|>"))).invoke_batch([request(headers, stream=True)])[0]
    assert (answer.status, answer.content_type) == (200, JSONLINES)


@pytest.mark.parametrize("accept", [JSON, "text/event-stream", f"{JSONLINES};q=0, */*"])
def test_a_streamed_request_whose_accept_refuses_json_lines_is_406(start, accept):
    answer = start(FakeSampler(words("bye", "<|im_end|>"))).invoke_batch(
        [request({"Content-Type": JSON, "Accept": accept}, stream=True)]
    )[0]
    assert (answer.status, answer.content_type) == (406, JSON)
    assert answer.phrase.startswith("Accept must allow application/jsonlines (the type of a streamed answer), got")


# ---------------------------------------------------------------------------------------------
# The text


def test_the_text_comes_in_several_lines_and_the_last_carries_the_whole_answer(start):
    answer = start(FakeSampler(words("hello", "world", "again", "bye", "<|im_end|>"))).invoke(stream=True)
    assert (answer.status, answer.content_type) == (200, JSONLINES)
    assert len(answer.chunks) >= 4  # a line per settled word, then the last
    *deltas, last = answer.lines
    assert all(set(line) == {"text"} for line in deltas)
    assert last == {
        "text": last["text"],
        "generated_text": "hello world again bye",
        "usage": {"prompt_tokens": 6, "completion_tokens": 5},
        "finish_reason": "stop",
    }
    assert answer.streamed_text == "hello world again bye"


@pytest.mark.parametrize("fields", [{}, {"max_new_tokens": 3}, {"stop": ["again"]}, {"stop": ["world again"]}])
def test_the_deltas_concatenate_to_the_generated_text_of_the_same_request_not_streamed(start, fields):
    server = start(FakeSampler(words("hello", "world", "again", "bye", "<|im_end|>")))
    plain = json.loads(server.invoke(temperature=0, **fields).chunks[0])
    streamed = server.invoke(temperature=0, stream=True, **fields)
    assert streamed.streamed_text == plain["generated_text"]
    assert {key: value for key, value in streamed.lines[-1].items() if key != "text"} == plain


def test_a_character_split_across_tokens_is_never_sent_in_halves(start_bytes):
    answer = start_bytes(JAPANESE).invoke(stream=True)
    assert answer.status == 200
    assert len(answer.deltas) >= len("こんにちは")  # sent as the characters complete, not at the end
    assert all(neuronx_answer.INCOMPLETE_CHARACTER not in delta for delta in answer.deltas)
    for chunk in answer.chunks:
        chunk.decode("utf-8")  # every chunk is whole UTF-8 on its own
    assert answer.streamed_text == JAPANESE == answer.lines[-1]["generated_text"]


def test_a_stop_string_spanning_tokens_is_never_sent(start_bytes):
    # "です" first appears in "ですね" (sent once "ね" shows it is not the stop), then as the stop's start.
    server = start_bytes("日本語ですね。ですか？はい")
    plain = json.loads(server.invoke(stop=["ですか"]).chunks[0])
    answer = server.invoke(stop=["ですか"], stream=True)
    assert plain["generated_text"] == "日本語ですね。"
    assert answer.streamed_text == "日本語ですね。"  # no "です" of the stop sent ahead of its "か"
    assert "ですね" in answer.deltas  # held back while it could have been the stop's start
    assert answer.lines[-1]["finish_reason"] == "stop"


def test_a_tokenizer_clean_up_that_changes_text_already_decoded_does_not_change_what_was_sent(start_bytes):
    # transformers' clean-up drops the space before "." once the "." comes: "hello ." -> "hello."
    server = start_bytes("hello . world , again", clean_up=True)
    plain = json.loads(server.invoke().chunks[0])
    answer = server.invoke(stream=True)
    assert plain["generated_text"] == "hello. world, again"
    assert answer.streamed_text == "hello. world, again"
    assert len(answer.deltas) >= 3


def test_the_text_is_decoded_piece_by_piece_not_whole_after_every_token(start_bytes, monkeypatch):
    # Decoding all of a long completion after each token would cost more than the decoding step itself.
    text = "日本語の長い答えです。" * 30  # 990 byte tokens: within the 1024 positions
    server = start_bytes(text)
    tokenizer = inference._worker.generator.tokenizer
    decoded = []
    decode = tokenizer.decode
    monkeypatch.setattr(tokenizer, "decode", lambda ids, **options: decoded.append(len(ids)) or decode(ids, **options))
    answer = server.invoke(stream=True, max_new_tokens=len(text.encode()) + 1)
    assert answer.streamed_text == text
    tokens = len(text.encode())
    assert sum(decoded) < 40 * tokens, (sum(decoded), tokens)  # whole decodes: about tokens**2 / 2


def test_settled_text_holds_back_what_a_later_token_may_change():
    assert neuronx_answer.settled_text("日本\ufffd", ()) == "日本"
    assert neuronx_answer.settled_text("hello ", ()) == "hello"
    assert neuronx_answer.settled_text("日本語です", ["ですか"]) == "日本語"
    assert neuronx_answer.settled_text("日本語ですね", ["ですか"]) == "日本語ですね"
    assert neuronx_answer.settled_text("abc STOP def", ["STOP"]) == "abc"
    assert neuronx_answer.settled_text("abc ST", ["STOP", "T"]) == "abc"


# ---------------------------------------------------------------------------------------------
# A batch


def test_a_batch_mixing_streamed_plain_and_bad_requests(start):
    sampler = FakeSampler(words("hello", "world", "again", "<|im_end|>"))
    server = start(sampler, batch_size=4)
    answers = server.invoke_batch(
        [
            request(stream=True),
            request(),
            request(stream="yes"),
            request({"Content-Type": JSON, "Accept": JSON}, stream=True),
            request(stream=True, stop=["again"]),
        ]
    )
    assert [(answer.status, answer.content_type) for answer in answers] == [
        (200, JSONLINES),
        (200, JSON),
        (400, JSON),
        (406, JSON),
        (200, JSONLINES),
    ]
    assert answers[0].streamed_text == "hello world again" and len(answers[0].chunks) >= 3
    assert [len(answer.chunks) for answer in answers[1:4]] == [1, 1, 1]  # nothing sent ahead to the others
    assert json.loads(answers[1].chunks[0])["generated_text"] == "hello world again"
    assert answers[2].phrase == "stream must be true or false, got 'yes'"
    assert answers[4].streamed_text == "hello world "
    assert sampler.batches == [3]  # the good ones, in one model call


class FailingAfter(FakeSampler):
    """Calls back for `tokens` tokens, then fails as a broken device would."""

    def __init__(self, completion, tokens):
        super().__init__(completion)
        self.tokens = tokens

    def __call__(self, prompts, *, should_stop, **kwargs):
        for token in self.completion[: self.tokens]:
            for stop in should_stop:
                stop(token)
        raise RuntimeError("device error")


def test_a_failure_after_the_first_line_ends_the_stream_with_an_error_line(start):
    server = start(FailingAfter(words("hello", "world", "again", "<|im_end|>"), tokens=3), batch_size=4)
    streamed, plain = server.invoke_batch([request(stream=True), request()])
    assert (streamed.status, streamed.content_type) == (200, JSONLINES)
    assert streamed.deltas == ["hello", " world", " again"]
    assert streamed.lines[-1] == {"error": "internal error; the endpoint's log has the traceback (request request-0)"}
    assert plain.status == 500


def test_a_failure_before_the_first_line_is_a_500_as_for_any_request(start):
    answer = start(FailingAfter(words("hello"), tokens=0)).invoke(stream=True)
    assert (answer.status, answer.content_type, len(answer.chunks)) == (500, JSON, 1)
    assert json.loads(answer.chunks[0])["error"].startswith("internal error")
