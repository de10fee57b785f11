"""handle() under TorchServe 0.11.0's continuous batching: one call per decoding step, against a frontend that plays
what tools/model-server/test_torchserve_continuous_batching.py checked on the real one (wlm/ContinuousBatching.java,
job/RestJob.java, ts/protocol/otf_message_handler.py create_predict_response)."""

import json

import pytest

import inference
import neuronx_loading
from chat_tokenizer import VOCAB, build_chat_tokenizer
from conftest import CONTRACT, Context, FakeClock, RequestProcessor

IM_END = VOCAB["<|im_end|>"]
JSON = "application/json"
SLOTS = 2
STEP_SECONDS = 0.1


class FakeStepModel:
    """One decoding step: each slot's next token from the script of the first scripted word in its prompt, then
    "hello" for ever; STEP_SECONDS on the clock per call."""

    def __init__(self, clock, scripts):
        self.clock, self.scripts, self.calls, self.by_slot = clock, scripts, [], {}

    def __call__(self, *, prefill, decode, sampling):
        self.calls.append({"prefill": dict(prefill), "decode": dict(decode), "sampling": dict(sampling)})
        self.clock.now += STEP_SECONDS
        for slot, prompt in prefill.items():
            script = next((self.scripts[w] for w in self.scripts if VOCAB[w] in prompt), [])
            self.by_slot[slot] = [VOCAB[t] if isinstance(t, str) else t for t in script]
        return {slot: (self.by_slot[slot].pop(0) if self.by_slot[slot] else VOCAB["hello"]) for slot in [*prefill, *decode]}


class Job:
    def __init__(self, body, headers):
        self.body, self.headers = body, headers
        self.cached = False
        self.streams = 0
        self.status = self.phrase = self.content_type = None
        self.chunks: list[bytes] = []
        self.complete = False
        self.violations: list[str] = []
        self.steps = 0


class Frontend:
    """TorchServe 0.11.0's continuous batching as seen from the worker, and what each client receives."""

    def __init__(self, handle, context, batch_size):
        self.handle, self.context, self.batch_size = handle, context, batch_size
        self.queue: list[Job] = []
        self.jobs: dict[str, Job] = {}
        self.count = 0

    def send(self, body, headers=None):
        job = Job(json.dumps(body).encode() if not isinstance(body, bytes) else body, headers or {"Content-Type": JSON})
        self.queue.append(job)
        return job

    def step(self):
        # Model.pollInferJob with 0.11.0's admission: batchSize - jobs - 1 while jobs run, batchSize when none do.
        quota = self.batch_size - len(self.jobs) - (1 if self.jobs else 0)
        while self.queue and quota > 0:
            self.count += 1
            self.jobs[f"job-{self.count}"] = self.queue.pop(0)
            quota -= 1
        if not self.jobs:
            return
        data, processors = [], []
        for job in self.jobs.values():
            job.steps += 1
            if job.cached:  # sent by its id alone
                data.append({})
                processors.append(RequestProcessor({}))
            else:
                content_type = next((v for k, v in job.headers.items() if k.lower() == "content-type"), "")
                processors.append(RequestProcessor({"body": {"content-type": content_type}, **job.headers}))
                data.append({"body": job.body})
        self.context.request_ids = {index: job_id for index, job_id in enumerate(self.jobs)}
        self.context.request_processor = processors
        self.context.stopping_criteria = None
        answers = self.handle(data, self.context)
        assert isinstance(answers, list) and len(answers) == len(data)
        for index, job_id in dict(self.context.request_ids).items():
            self._respond(job_id, index, answers[index])

    def _respond(self, job_id, index, body):
        job = self.jobs[job_id]
        headers = self.context.get_response_headers(index)
        if self.context.stopping_criteria:
            headers["ts_stream_next"] = "false" if self.context.stopping_criteria[index](body) else "true"
        elif headers.get("ts_stream_next") == "true":
            headers["ts_stream_next"] = "false"
        stream_next = headers.get("ts_stream_next")
        status, phrase = self.context.get_response_status(index)
        if stream_next is None:
            if job.complete:
                job.violations.append("a second whole response")
            job.status, job.phrase, job.content_type = status, phrase, headers.get("content-type")
            job.chunks, job.complete = [body], True
        elif stream_next == "true":
            job.streams += 1
            if job.streams == 1:
                if job.complete:
                    job.violations.append("a status line after a complete response")
                job.status, job.phrase, job.content_type = status, phrase, headers.get("content-type")
            job.chunks.append(body)
        else:
            if job.streams > 0:
                job.chunks.append(body)
                job.complete = True
            elif not job.complete:
                job.violations.append("a last chunk with no status line: the client hangs")
            elif body:
                job.violations.append("bytes after a complete response")
            del self.jobs[job_id]
            return
        job.cached = True

    def run(self, *jobs, limit=200):
        for _ in range(limit):
            if all(job.complete and all(j is not job for j in self.jobs.values()) for job in jobs):
                return
            self.step()
        raise AssertionError("the jobs did not end")


@pytest.fixture
def frontend(model_dir, endpoint_env, monkeypatch, tmp_path_factory):
    def start(scripts=None, batch_size=SLOTS + 1, time_limit=None):
        build_chat_tokenizer(model_dir / CONTRACT["layout"]["checkpointDir"])
        marker = model_dir / CONTRACT["layout"]["marker"]
        manifest = json.loads(marker.read_text())
        manifest["options"].update(batchSize=SLOTS, continuousBatching=True)
        marker.write_text(json.dumps(manifest))
        monkeypatch.setenv(endpoint_env["batchSize"], str(SLOTS))
        if time_limit is not None:
            monkeypatch.setenv(endpoint_env["generationTimeLimit"], str(time_limit))
        clock = FakeClock()
        model = FakeStepModel(clock, scripts or {})
        monkeypatch.setattr(inference, "clock", clock)
        monkeypatch.setattr(neuronx_loading, "_load_neuron_step_model", lambda *args: model)
        monkeypatch.setattr(inference, "_worker", None)
        context = Context(model_dir)
        context.model_yaml_config = {"continuousBatching": True}
        assert inference.handle(None, context) is None
        front = Frontend(inference.handle, context, batch_size)
        front.model, front.clock = model, clock
        return front

    return start


def chat(content, **fields):
    return {"messages": [{"role": "user", "content": content}], **fields}


def answer(job):
    assert not job.violations, job.violations
    return job.status, job.phrase, job.content_type, json.loads(b"".join(job.chunks))


def lines(job):
    assert not job.violations, job.violations
    body = b"".join(job.chunks)
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.split(b"\n")[:-1]]


def test_a_short_request_sent_while_a_long_one_generates_answers_before_it_ends(frontend):
    front = frontend({"bye": ["bye", IM_END]})
    long = front.send(chat("world", max_new_tokens=30))
    for _ in range(3):
        front.step()
    short = front.send(chat("bye"))
    front.run(short)
    assert answer(short) == (200, None, JSON, {"generated_text": "bye", "finish_reason": "stop",
                                               "usage": {"prompt_tokens": 6, "completion_tokens": 2}})
    assert not long.complete and long.chunks == []  # nothing sent to the long one yet: its status is still open
    front.run(long)
    status, _, _, response = answer(long)
    assert status == 200 and response["usage"]["completion_tokens"] == 30
    # The short one joined the running batch: its prompt was encoded in the step after it came, beside a decode.
    joined = next(call for call in front.model.calls if 1 in call["prefill"])
    assert list(joined["decode"]) == [0]


def test_a_bad_a_streamed_a_timed_out_and_a_plain_request_in_one_running_batch_each_get_their_own_answer(frontend):
    front = frontend({"bye": ["hello", "world", "bye", IM_END]}, batch_size=4, time_limit=1.0)
    front.batch_size = 5  # room for all four at once beside the slots' waiting line
    timed = front.send(chat("world", max_new_tokens=500))
    front.step()
    streamed = front.send(chat("bye", stream=True), {"Content-Type": JSON, "Accept": "application/jsonlines"})
    bad = front.send(chat("hello", temperature=5))
    plain = front.send(chat("again", max_new_tokens=3))
    front.run(timed, streamed, bad, plain)
    status, phrase, content_type, body = answer(bad)
    assert (status, content_type) == (400, JSON) and body == {"error": phrase} and "temperature" in phrase
    received = lines(streamed)
    assert streamed.status == 200 and streamed.content_type == "application/jsonlines" and len(streamed.chunks) > 1
    assert "".join(line.get("text", "") for line in received) == received[-1]["generated_text"] == "hello world bye"
    assert received[-1]["finish_reason"] == "stop"
    status, _, _, response = answer(timed)
    assert status == 200 and response["finish_reason"] == "length"
    assert response["usage"]["completion_tokens"] <= 1.0 / STEP_SECONDS + 1
    assert answer(plain)[3]["usage"]["completion_tokens"] == 3
    assert not front.jobs and not inference._worker.steps.held  # every job let go, nothing held


def test_requests_beyond_the_slots_wait_their_turn_and_every_one_is_answered(frontend):
    front = frontend({"bye": ["bye", IM_END]}, batch_size=SLOTS + 1)
    jobs = [front.send(chat("bye")) for _ in range(7)]
    front.run(*jobs)
    assert all(answer(job)[3]["generated_text"] == "bye" for job in jobs)
    assert max(len(call["prefill"]) + len(call["decode"]) for call in front.model.calls) <= SLOTS


def test_requests_with_other_sampling_parameters_share_a_step(frontend):
    front = frontend()
    greedy = front.send(chat("world", max_new_tokens=2, temperature=0))
    hot = front.send(chat("hello", max_new_tokens=2, temperature=1.5, top_k=5, top_p=0.5))
    front.run(greedy, hot)
    assert front.model.calls[0]["sampling"] == {0: (1, 1.0, 1.0), 1: (5, 0.5, 1.5)}


def test_a_job_whose_client_left_frees_its_slot(frontend):
    front = frontend(batch_size=SLOTS + 1)
    gone = front.send(chat("world", max_new_tokens=100))
    front.step()
    other = front.send(chat("hello", max_new_tokens=100))
    waiting = front.send(chat("again", max_new_tokens=2))
    front.step()
    front.step()
    job_id = next(i for i, job in front.jobs.items() if job is gone)
    del front.jobs[job_id]  # the aggregator drops a job whose channel closed
    front.run(waiting)
    assert answer(waiting)[0] == 200 and not other.complete


def test_a_failing_model_step_answers_500_to_the_requests_in_it_and_the_worker_serves_on(frontend):
    front = frontend()
    job = front.send(chat("world", max_new_tokens=5))
    model = inference._worker.steps.scheduler.model
    inference._worker.steps.scheduler.model = lambda **kwargs: (_ for _ in ()).throw(RuntimeError("device"))
    front.run(job)
    status, phrase, _, body = answer(job)
    assert status == 500 and body == {"error": phrase} and "internal error" in phrase
    inference._worker.steps.scheduler.model = model
    again = front.send(chat("world", max_new_tokens=2))
    front.run(again)
    assert answer(again)[0] == 200


@pytest.mark.parametrize("compiled, served", [(True, False), (False, True)])
def test_artifacts_and_torchserve_must_agree_on_continuous_batching(model_dir, endpoint_env, monkeypatch, compiled, served):
    build_chat_tokenizer(model_dir / CONTRACT["layout"]["checkpointDir"])
    marker = model_dir / CONTRACT["layout"]["marker"]
    manifest = json.loads(marker.read_text())
    manifest["options"]["continuousBatching"] = compiled
    marker.write_text(json.dumps(manifest))
    monkeypatch.setattr(neuronx_loading, "_load_neuron_step_model", lambda *args: object())
    monkeypatch.setattr(neuronx_loading, "_load_neuron_sampler", lambda *args: object())
    context = Context(model_dir)
    context.model_yaml_config = {"continuousBatching": served}
    with pytest.raises(inference.ModelConfigurationError, match="compile and serve with the same setting"):
        inference.handle(None, context)


def test_continuous_batching_with_several_workers_fails_the_load_naming_the_stall(model_dir, endpoint_env, monkeypatch):
    build_chat_tokenizer(model_dir / CONTRACT["layout"]["checkpointDir"])
    marker = model_dir / CONTRACT["layout"]["marker"]
    manifest = json.loads(marker.read_text())
    manifest["options"]["continuousBatching"] = True
    marker.write_text(json.dumps(manifest))
    monkeypatch.setenv(endpoint_env["workers"], "3")
    monkeypatch.setattr(neuronx_loading, "_load_neuron_step_model", lambda *args: object())
    context = Context(model_dir)
    context.model_yaml_config = {"continuousBatching": True}
    with pytest.raises(inference.ModelConfigurationError, match="SAGEMAKER_MODEL_SERVER_WORKERS='3'.*1 worker per model"):
        inference.handle(None, context)


def test_a_whole_answer_is_not_held_up_by_a_stream_that_sends_every_step(frontend):
    # Steps that stream and steps that answer whole alternate while both have something to send: a stream with a
    # line every step does not keep a plain answer waiting for the stream's end.
    front = frontend()
    streamed = front.send(chat("world", max_new_tokens=40, stream=True), {"Content-Type": JSON, "Accept": "application/jsonlines"})
    front.step()
    plain = front.send(chat("hello", max_new_tokens=2))
    front.run(plain)
    assert answer(plain)[0] == 200 and plain.steps <= 5, plain.steps
    assert not streamed.complete and len(streamed.chunks) > 1  # the stream went on meanwhile
    front.run(streamed)
    assert lines(streamed)[-1]["usage"]["completion_tokens"] == 40
