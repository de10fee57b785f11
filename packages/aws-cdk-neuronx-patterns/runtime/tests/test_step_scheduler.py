"""The step-level scheduler (neuronx_scheduler.StepScheduler) with a real ChatML tokenizer and a fake step model:
requests join at the next step when a slot is free and leave at the step they end, each with its own stop strings,
max_new_tokens, sampling, stream and deadline, and a failure ends only what it concerns."""

import pytest

from chat_tokenizer import VOCAB, build_chat_tokenizer
from conftest import FakeClock
from neuronx_chat import make_generator, prepare
from neuronx_request import GenerationRequest
from neuronx_scheduler import RequestSequence, StepScheduler

IM_END = VOCAB["<|im_end|>"]
N_POSITIONS = 64
STEP_SECONDS = 0.1
FAR = 10.0**9


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_chat_tokenizer(tmp_path_factory.mktemp("tokenizer"))


class FakeStepModel:
    """Plays one decoding step of the running batch: each slot's next token from its script (a list of words, then
    "hello" for ever), chosen by the content of its last user message; every call is recorded and takes
    STEP_SECONDS on the clock."""

    def __init__(self, clock, scripts):
        self.clock, self.scripts = clock, scripts
        self.calls = []
        self.by_slot = {}

    def __call__(self, *, prefill, decode, sampling):
        self.calls.append({"prefill": dict(prefill), "decode": dict(decode), "sampling": dict(sampling)})
        self.clock.now += STEP_SECONDS
        tokens = {}
        for slot, prompt in prefill.items():
            words = [word for word in VOCAB if VOCAB[word] in prompt]
            script = next((self.scripts[word] for word in words if word in self.scripts), [])
            self.by_slot[slot] = [VOCAB[word] if isinstance(word, str) else word for word in script]
        for slot in [*prefill, *decode]:
            script = self.by_slot[slot]
            tokens[slot] = script.pop(0) if script else VOCAB["hello"]
        return tokens


@pytest.fixture
def start(tokenizer):
    def start(scripts, slots=2):
        clock = FakeClock()
        model = FakeStepModel(clock, scripts)
        generator = make_generator(tokenizer, lambda *a, **k: None, N_POSITIONS)
        return StepScheduler(generator, model, slots, clock), model, clock, generator

    return start


def sequence(generator, clock, word, request_id=None, deadline=FAR, stream=False, **fields):
    request = GenerationRequest(messages=({"role": "user", "content": word},), stream=stream, **fields)
    return RequestSequence(request_id or word, prepare(generator, request), generator, clock.now + deadline, clock, stream)


def run(scheduler, steps):
    """The sequences that end in each of `steps` steps."""
    return [[s.request_id for s in scheduler.step()] for _ in range(steps)]


def test_a_short_request_joins_at_the_next_step_and_leaves_before_the_long_one_ends(start):
    scheduler, model, clock, generator = start({"bye": ["bye", IM_END]})
    long = sequence(generator, clock, "world", max_new_tokens=8)
    scheduler.admit(long)
    assert run(scheduler, 2) == [[], []]
    short = sequence(generator, clock, "bye")
    scheduler.admit(short)
    assert run(scheduler, 3) == [[], ["bye"], []]
    # It joined at the step after it came (prefill beside the long one's decode) and left two steps later.
    assert list(model.calls[2]["prefill"]) == [1] and list(model.calls[2]["decode"]) == [0]
    prompt_tokens = len(short.prepared.prompt_ids)
    assert short.response == {"generated_text": "bye", "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2},
                              "finish_reason": "stop"}
    assert run(scheduler, 3)[-1] == ["world"]
    assert long.response["usage"]["completion_tokens"] == 8 and long.response["finish_reason"] == "length"


def test_a_waiting_request_takes_the_first_slot_that_frees(start):
    scheduler, model, clock, generator = start({"bye": ["bye", IM_END]}, slots=1)
    first, second = sequence(generator, clock, "bye", "first"), sequence(generator, clock, "bye", "second")
    scheduler.admit(first)
    scheduler.admit(second)
    assert run(scheduler, 4) == [[], ["first"], [], ["second"]]
    assert [list(call["prefill"]) for call in model.calls] == [[0], [], [0], []]
    assert not scheduler.busy


def test_every_running_request_is_decoded_at_its_own_position(start):
    scheduler, model, clock, generator = start({})
    a = sequence(generator, clock, "world", max_new_tokens=5)
    scheduler.admit(a)
    run(scheduler, 2)
    b = sequence(generator, clock, "hello world", "b", max_new_tokens=5)
    scheduler.admit(b)
    run(scheduler, 2)
    prompt_a, prompt_b = len(a.prepared.prompt_ids), len(b.prepared.prompt_ids)
    assert model.calls[3]["decode"] == {0: (VOCAB["hello"], prompt_a + 2), 1: (VOCAB["hello"], prompt_b)}


def test_requests_with_other_sampling_parameters_share_a_step(start):
    scheduler, model, clock, generator = start({})
    scheduler.admit(sequence(generator, clock, "world", max_new_tokens=2, temperature=0.0))
    scheduler.admit(sequence(generator, clock, "hello", max_new_tokens=2, top_k=5, top_p=0.5, temperature=1.5))
    run(scheduler, 1)
    assert model.calls[0]["sampling"] == {0: (1, 1.0, 1.0), 1: (5, 0.5, 1.5)}


def test_each_request_stops_at_its_own_stop_string_and_max_new_tokens(start):
    scheduler, model, clock, generator = start({"bye": ["hello", "bye", "world", "again"]})
    stopped = sequence(generator, clock, "bye", stop=["bye"])
    limited = sequence(generator, clock, "world", max_new_tokens=3)
    scheduler.admit(stopped)
    scheduler.admit(limited)
    assert run(scheduler, 3) == [[], ["bye"], ["world"]]
    assert stopped.response["generated_text"] == "hello " and stopped.response["finish_reason"] == "stop"
    assert limited.response["usage"]["completion_tokens"] == 3 and limited.response["finish_reason"] == "length"


def test_a_request_past_its_deadline_ends_with_its_answer_so_far_and_the_others_go_on(start):
    scheduler, model, clock, generator = start({})
    hurried = sequence(generator, clock, "world", "hurried", deadline=2.5 * STEP_SECONDS, max_new_tokens=50)
    patient = sequence(generator, clock, "hello", "patient", max_new_tokens=5)
    scheduler.admit(hurried)
    scheduler.admit(patient)
    assert run(scheduler, 5) == [[], [], ["hurried"], [], ["patient"]]
    assert hurried.response["finish_reason"] == "length" and hurried.response["usage"]["completion_tokens"] == 3
    assert patient.response["usage"]["completion_tokens"] == 5


def test_a_streamed_request_has_its_text_as_it_settles_and_the_rest_in_its_response(start):
    scheduler, model, clock, generator = start({"bye": ["hello", "world", "bye", IM_END]})
    streamed = sequence(generator, clock, "bye", stream=True)
    scheduler.admit(streamed)
    texts = []
    for _ in range(4):
        scheduler.step()
        texts.append(streamed.take_text())
    assert "".join(texts) + streamed.response["text"] == streamed.response["generated_text"] == "hello world bye"
    assert texts[:3] == ["hello", " world", " bye"] and texts[3] == "" and streamed.response["text"] == ""


def test_a_request_whose_own_work_fails_ends_alone(start, monkeypatch):
    scheduler, model, clock, generator = start({})
    broken = sequence(generator, clock, "world", "broken", max_new_tokens=5)
    sound = sequence(generator, clock, "hello", "sound", max_new_tokens=3)
    monkeypatch.setattr(broken, "accept", lambda token: (_ for _ in ()).throw(ValueError("its own")))
    scheduler.admit(broken)
    scheduler.admit(sound)
    assert run(scheduler, 3) == [["broken"], [], ["sound"]]
    assert isinstance(broken.error, ValueError) and sound.response["usage"]["completion_tokens"] == 3


def test_a_failing_model_step_ends_every_request_in_it_and_frees_the_slots(start):
    scheduler, model, clock, generator = start({})
    scheduler.admit(sequence(generator, clock, "world", "a"))
    scheduler.admit(sequence(generator, clock, "hello", "b"))
    scheduler.model = lambda **kwargs: (_ for _ in ()).throw(RuntimeError("device"))
    ended = scheduler.step()
    assert sorted(s.request_id for s in ended) == ["a", "b"] and all(isinstance(s.error, RuntimeError) for s in ended)
    assert sorted(scheduler.free) == [0, 1] and not scheduler.busy


def test_a_removed_request_frees_its_slot_for_the_next(start):
    scheduler, model, clock, generator = start({}, slots=1)
    gone, next_one = sequence(generator, clock, "world", "gone"), sequence(generator, clock, "hello", "next")
    scheduler.admit(gone)
    scheduler.admit(next_one)
    scheduler.step()
    scheduler.remove(gone)  # its client hung up
    scheduler.step()
    assert model.calls[-1]["prefill"].keys() == {0} and next_one.slot == 0
