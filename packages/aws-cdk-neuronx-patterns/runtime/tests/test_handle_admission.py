"""Admission, deadlines and draining under continuous batching (neuronx_admission.py), against the frontend that
test_handle_continuous.py plays (TorchServe 0.11.0's continuous batching), with batchSize well above the slots as the
endpoint sets it (contract endpoint.continuousBatching.jobsBeyondSlots) so the handler sees the requests that wait."""

import json
import re
import signal
from pathlib import Path

import pytest

import inference
from neuronx_admission import DRAIN_RETRY_AFTER, Admission
from test_handle_continuous import IM_END, SLOTS, STEP_SECONDS, Frontend, answer, chat, frontend  # noqa: F401

pytestmark = pytest.mark.usefixtures("restore_sigterm")


@pytest.fixture
def restore_sigterm(monkeypatch):
    """Loading a continuous-batching worker installs its SIGTERM handler in this process: put the old one back."""
    original = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(inference, "_sigterm_at", None)
    yield
    signal.signal(signal.SIGTERM, original)


def headers_of(front: Frontend):
    """Each job's response headers, as the frontend copies them into the HTTP response (job/RestJob.java)."""
    seen = {}
    respond = front._respond

    def capture(job_id, index, body):
        seen.setdefault(id(front.jobs[job_id]), {}).update(front.context.get_response_headers(index))
        respond(job_id, index, body)

    front._respond = capture
    return lambda job: seen.get(id(job), {})


def test_a_request_that_cannot_start_in_time_is_refused_at_once_with_503_and_retry_after(frontend):
    front = frontend(batch_size=20, time_limit=10.0)
    headers = headers_of(front)
    jobs = [front.send(chat("world", max_new_tokens=500)) for _ in range(10)]
    front.step()
    front.step()  # a whole answer goes out in the step after the one that decided it, at the latest
    refused = [job for job in jobs if job.complete]
    # Two run, and the line holds as many as can expect a slot within half the time limit (5 s): with nothing
    # measured yet, each sequence is expected to hold its slot for the whole limit, so one slot release every 5 s.
    assert len(refused) == 7 and not any(job.complete for job in jobs[:3]), [job.status for job in jobs]
    for job in refused:
        status, phrase, content_type, body = answer(job)
        assert (status, content_type) == (503, "application/json") and body["error"] == phrase
        assert body["retry_after_seconds"] == int(headers(job)["Retry-After"]) == 5
        assert "retry after 5 s" in phrase
    assert front.clock.now - 1000.0 <= 2 * STEP_SECONDS + 1e-9  # refused within two steps of arriving


def test_the_line_grows_with_the_measured_time_a_sequence_holds_its_slot():
    admission = Admission(slots=4, time_limit=50.0)
    assert [admission.refuse(4, waiting) is None for waiting in range(6)] == [True, True, False, False, False, False]
    for _ in range(60):
        admission.ran(7.6)  # 1.9 s between releases of 4 slots: up to 4 can wait (the line is never longer than the slots)
    assert [admission.refuse(4, waiting) is None for waiting in range(6)] == [True] * 4 + [False, False]
    assert admission.refuse(2, 1) is None  # a free slot: it starts at the next step
    assert admission.retry_after() == 2


def test_a_waiting_request_whose_deadline_passes_is_refused_within_it_and_never_started(frontend):
    front = frontend(batch_size=20, time_limit=1.0)
    # Seen in the same step, all three have one deadline: the two that run are cut at it, and the one that waited
    # for their slots could only start past it.
    jobs = [front.send(chat("world", max_new_tokens=500)) for _ in range(SLOTS + 1)]
    front.run(*jobs)
    *running, waiting = jobs
    status, _, _, body = answer(waiting)
    assert status == 503 and "no slot was free in time" in body["error"]
    assert front.clock.now - 1000.0 <= 1.0 + 2 * STEP_SECONDS + 1e-9
    prompts = [prompt for call in front.model.calls for prompt in call["prefill"].values()]
    assert len(prompts) == SLOTS  # the waiting one was never encoded
    assert all(answer(job)[3]["finish_reason"] == "length" for job in running)


def test_every_generation_ends_by_its_deadline_counted_from_when_the_handler_first_saw_it(frontend):
    front = frontend(batch_size=20, time_limit=2.0)
    first = [front.send(chat("world", max_new_tokens=500)) for _ in range(SLOTS)]
    front.step()
    late = front.send(chat("hello", max_new_tokens=500))  # waits for a slot, and its wait counts
    sent_at = front.clock.now
    front.run(*first, late)
    status, _, _, body = answer(late)
    # It started when the first two were cut (2 s), and was cut itself 2 s after it arrived, not 2 s after it started.
    assert status == 200 and body["finish_reason"] == "length" and body["usage"]["completion_tokens"] <= 2
    assert front.clock.now - sent_at <= 2.0 + 2 * STEP_SECONDS + 1e-9


def test_sigterm_drains_the_worker_what_runs_ends_early_with_what_it_has_what_waits_and_comes_is_refused(frontend):
    front = frontend(batch_size=20, time_limit=100.0)
    headers = headers_of(front)
    running = [front.send(chat("world", max_new_tokens=1000)) for _ in range(SLOTS)]
    front.step()
    waiting = front.send(chat("again", max_new_tokens=5))
    front.step()
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # what os.kill(worker, SIGTERM) runs, in this process
    sigterm_at = front.clock.now
    later = front.send(chat("hello", max_new_tokens=5))
    front.run(*running, waiting, later, limit=400)
    for job in running:
        status, _, _, body = answer(job)
        assert status == 200 and body["finish_reason"] == "length" and 0 < body["usage"]["completion_tokens"] < 1000
    assert front.clock.now - sigterm_at <= inference.DRAIN_GRACE_SECONDS + 2 * STEP_SECONDS + 1e-9
    for job in (waiting, later):
        status, _, _, body = answer(job)
        assert status == 503 and "shutting down" in body["error"]
        assert headers(job)["Retry-After"] == str(DRAIN_RETRY_AFTER)
    assert not front.jobs and not inference._worker.steps.held


def test_each_step_of_the_drain_leaves_the_next_its_time_and_the_jvm_agent_waits_as_the_contract_says():
    draining = inference.CONTRACT["endpoint"]["draining"]
    names = ("workerGraceSeconds", "frontendWaitSeconds", "sagemakerKillSeconds")
    worker, frontend_wait, kill = (draining[name] for name in names)
    assert inference.DRAIN_GRACE_SECONDS == worker < frontend_wait < kill
    agent = Path(inference.__file__).parent / "readiness" / "src" / "io" / "github" / "awscdkneuronx" / "patterns"
    source = (agent / "readiness" / "DrainOnTerm.java").read_text()
    assert re.findall(r"static final long WAIT_SECONDS = (\d+);", source) == [str(frontend_wait)]


def test_a_refused_streamed_request_is_a_whole_503_not_a_stream(frontend):
    front = frontend(batch_size=20, time_limit=10.0)
    jobs = [front.send(chat("world", max_new_tokens=500)) for _ in range(SLOTS + 1)]
    streamed = front.send(chat("bye", stream=True), {"Content-Type": "application/json", "Accept": "application/jsonlines"})
    front.step()
    front.step()
    status, _, content_type, body = answer(streamed)
    assert (status, content_type, streamed.streams) == (503, "application/json", 0)
    assert json.dumps(body)
    assert not any(job.complete for job in jobs)


def test_a_model_error_carries_the_status_and_body_but_no_header_so_the_seconds_are_in_the_body():
    """SageMaker Runtime's service model, as botocore ships it: what an InvokeEndpoint caller gets of a 503."""
    import botocore.session

    model_error = botocore.session.get_session().get_service_model("sagemaker-runtime").shape_for("ModelError")
    assert {"OriginalStatusCode", "OriginalMessage"} <= set(model_error.members)
    assert not any(member.lower().replace("-", "") == "retryafter" for member in model_error.members)
    assert all(shape.serialization.get("location") != "header" for shape in model_error.members.values())
