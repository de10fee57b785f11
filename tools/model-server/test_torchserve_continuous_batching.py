"""What TorchServe 0.11.0's continuous batching does on the image's stack, probed before a scheduler is built on it.

The server is the image's `serve` (toolkit 2.0.25 starting TorchServe 0.11.0) on the example app's lowCost model
dir, with two additions a continuous-batching endpoint would need: MAR-INF/MANIFEST.json naming a model config
YAML (the only place TorchServe 0.11.0 reads `continuousBatching` from) and, as its handler, the few lines of
continuous_batching_probe.py (its docstring has what the sources say; each test here checks one of those lines).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

import serving_stack
from conftest import STATIC_BATCHING, all_ready, wait_until

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 4
"""TorchServe's batchSize in the model config: at most this many jobs in the aggregator (3 running in steady state
under 0.11.0's admission bug, which the last test shows)."""
STEP_SECONDS = 0.05  # continuous_batching_probe.STEP_SECONDS

pytestmark = pytest.mark.xdist_group("cb-probe")


def model_config(workers: int, response_timeout: int) -> str:
    """The model config YAML a continuous-batching endpoint would ship: the settings the toolkit's SAGEMAKER_TS_*
    variables give today (they are overridden by the YAML's, ModelManager.createModel) plus continuousBatching."""
    return (
        f"minWorkers: {workers}\nmaxWorkers: {workers}\nbatchSize: {BATCH_SIZE}\nmaxBatchDelay: 10\n"
        f"responseTimeout: {response_timeout}\ncontinuousBatching: true\n"
    )


MANIFEST = {
    # ModelArchive.validate requires model.modelName, model.modelVersion and runtime, and deletes the model dir when
    # one is missing; modelVersion 1.0 is the version the toolkit's models= property configures.
    "runtime": "python",
    "model": {"modelName": "model", "modelVersion": "1.0", "configFile": "code/model-config.yaml"},
    "archiverVersion": "0.11.0",
}


def start_probe(root: Path, preset: str):
    """The preset's endpoint with the probe as its handler, TorchServe's continuous batching on (model config YAML named
    by MAR-INF/MANIFEST.json), once its workers are READY; stopped after the module."""
    # Without the template's own batching (the probe brings its model config), on the template's workers.
    deployment = serving_stack.with_static_batching(serving_stack.read_deployment(preset), 1)
    steps = root / "steps.jsonl"
    server = serving_stack.ModelServer(
        root, deployment, load_seconds=1,
        overrides={"TS_DEFAULT_SERVICE_HANDLER": "continuous_batching_probe:handle", "CB_PROBE_LOG": str(steps)},
    )  # fmt: skip
    code = server.model_dir / "code"
    shutil.copy(HERE / "continuous_batching_probe.py", code)
    (code / "model-config.yaml").write_text(model_config(deployment.workers, deployment.startup_timeout))
    (server.model_dir / "MAR-INF").mkdir()
    (server.model_dir / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(MANIFEST))
    server.start()
    try:
        if not wait_until(lambda: all_ready(server), 120):
            pytest.fail(f"{preset}: the probe's workers are not READY\n{server.logs()[-3000:]}")
        server.steps = steps
        server.first_workers = server.workers()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    yield from start_probe(tmp_path_factory.mktemp("cb-probe"), "lowCost")


def send(server, body, **options):
    return server.invoke(json.dumps(body).encode(), {"Content-Type": "application/json"}, **options)


def in_thread(function, *args):
    """Runs function(*args) in a thread; returns the thread and a list that gets its result."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    return thread, result


def header(response, name: str) -> str | None:
    return next((value for key, value in response.headers.items() if key.lower() == name), None)


def steps_of(server) -> list[dict]:
    return [json.loads(line) for line in server.steps.read_text().splitlines()]


def quiet(server, seconds: float = 0.5) -> bool:
    """True when no step came in the last `seconds`."""
    count = len(steps_of(server))
    time.sleep(seconds)
    return len(steps_of(server)) == count


def test_the_model_config_reaches_torchserve_through_the_model_dirs_manifest(probe):
    status, body = serving_stack.request("GET", "/models/model", port=probe.ports.management)
    assert status == 200
    (model,) = json.loads(body)
    assert model["continuousBatching"] is True
    assert model["batchSize"] == BATCH_SIZE
    assert model["minWorkers"] == model["maxWorkers"] == 1


def test_a_short_request_joins_a_running_batch_and_answers_before_the_long_one_ends(probe):
    started = time.monotonic()
    long_thread, long_result = in_thread(send, probe, {"steps": 60})  # 3 s of steps
    time.sleep(0.5)
    short = send(probe, {"steps": 2})
    short_done = time.monotonic() - started
    long_thread.join()
    long_done = time.monotonic() - started
    assert (short.status, short.json()) == (200, {"steps": 2})
    assert header(short, "content-length") and not header(short, "transfer-encoding")  # whole, not chunks
    (long,) = long_result
    assert (long.status, long.json()) == (200, {"steps": 60})
    assert short_done < 1.5 < long_done - 0.5, (short_done, long_done)


def test_bad_plain_and_streamed_requests_in_one_running_batch_each_get_their_own_answer(probe):
    long_thread, long_result = in_thread(send, probe, {"steps": 40})
    time.sleep(0.3)
    stream_thread, stream_result = in_thread(
        lambda: probe.invoke_streaming(json.dumps({"steps": 10, "stream": True}).encode(), {"Content-Type": "application/json"})
    )
    bad = send(probe, {"bad": True})
    plain = send(probe, {"steps": 3})
    stream_thread.join()
    long_thread.join()
    assert (bad.status, bad.reason, bad.json()) == (400, "bad request", {"error": "bad request"})
    assert header(bad, "content-length") and not header(bad, "transfer-encoding")
    assert (plain.status, plain.json()) == (200, {"steps": 3})
    (stream,) = stream_result
    assert stream.status == 200 and header(stream, "transfer-encoding") == "chunked"
    assert stream.lines() == [*range(1, 11), {"steps": 10}]
    assert len(stream.chunks) > 2  # as the steps come, not at once
    (long,) = long_result
    assert (long.status, long.json()) == (200, {"steps": 40})


def test_a_request_left_out_of_a_steps_answers_comes_again_with_its_body_and_leaves_after_false(probe):
    # Alone in the batch: an earlier test's last job leaves by a step of its own, which may still be to come.
    assert wait_until(lambda: quiet(probe), 5, interval=0.1)
    before = len(steps_of(probe))
    assert send(probe, {"steps": 5}).json() == {"steps": 5}

    def mine():
        # By this request's id: the step that lets an earlier test's last job go may come after `before` was read.
        later = steps_of(probe)[before:]
        first = next((step for step in later if step["bodies"]), None)
        return [step for step in later if first and first["ids"][0] in step["ids"]]

    # The step by its id alone comes after the whole answer, when the frontend next polls: waited for (a busy
    # machine delays it), then a moment more, in which no further step may come.
    wait_until(lambda: len(mine()) >= 6, 5, interval=0.1)
    time.sleep(0.5)
    mine = mine()
    # Left out of every answer until it is done, it is sent again whole each step (not by its id alone); answered
    # whole (no ts_stream_next), 0.11.0's aggregator keeps it and sends it once more by its id alone; answered
    # "false" then, it leaves: no step after that.
    assert [step["bodies"] for step in mine] == [[0]] * 5 + [[]]
    assert all(len(step["ids"]) == 1 for step in mine)


def test_a_connection_reused_after_a_whole_answer_is_not_disturbed_by_its_job_leaving(probe):
    # The answered job stays in 0.11.0's aggregator until a "false" lets it go; that last chunk is written to a
    # connection whose response is complete (Netty's encoder refuses it): the next request on the connection must
    # get its own answer, intact.
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", probe.ports.inference, timeout=30)
    try:
        answers = []
        for steps in (2, 3, 1):
            connection.request("POST", "/invocations", json.dumps({"steps": steps}), {"Content-Type": "application/json"})
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
        assert answers == [(200, {"steps": 2}), (200, {"steps": 3}), (200, {"steps": 1})]
    finally:
        connection.close()


def test_the_running_batch_holds_batch_size_minus_one_under_the_admission_bug(probe):
    first_thread, _ = in_thread(send, probe, {"steps": 40})
    time.sleep(0.3)  # the first is running: later ones are admitted by pollInferJob's no-wait loop
    before = len(steps_of(probe))
    threads = [in_thread(send, probe, {"steps": 20})[0] for _ in range(BATCH_SIZE + 1)]
    for thread in [first_thread, *threads]:
        thread.join()
    sizes = [len(step["ids"]) for step in steps_of(probe)[before:]]
    assert max(sizes) == BATCH_SIZE - 1, sizes


def test_no_worker_was_restarted(probe):
    workers = probe.workers()
    assert [w["pid"] for w in workers] == [w["pid"] for w in probe.first_workers]
    assert all(w["status"] == "READY" for w in workers)


@pytest.fixture(scope="module")
def probe_of_three_workers(tmp_path_factory):
    """The probe on the static-batching template's three workers (one model, three worker threads in the frontend)."""
    yield from start_probe(tmp_path_factory.mktemp("cb-probe-3"), STATIC_BATCHING)


def test_with_several_workers_a_running_request_stalls_until_another_comes(probe_of_three_workers):
    # Model.pollInferJob (0.11.0) takes the model's lock, and a worker with no job waits for one while holding it
    # (jobsQueue.poll(Long.MAX_VALUE) inside lock.lockInterruptibly()). A worker whose job runs asks for its next
    # step through the same method, so with idle workers beside it it waits for the next request to come: 0.11.0's
    # continuous batching serves one worker per model only. (Step by step, a worker asks again after every step;
    # with dynamic batching it asks only when its batch is answered, so the lock never holds a batch up.)
    server = probe_of_three_workers
    with pytest.raises(TimeoutError):
        send(server, {"steps": 5}, timeout=5)  # 5 steps of 50 ms
    steps = steps_of(server)
    assert len(steps) == 1, steps  # the first step ran, the second never came
