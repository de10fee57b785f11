"""A probe of TorchServe 0.11.0's continuous batching, written for test_torchserve_continuous_batching.py.

Not the library's handler: a handler of a few lines that TorchServe calls once per decoding step (each call a
"step"), to find out on the image's real stack (toolkit 2.0.25 starting TorchServe 0.11.0) what a step-level
scheduler can rely on before one is built on it. What the sources say (pytorch/serve v0.11.0), and this probes:

- `continuousBatching: true` is read only from a model's config YAML (frontend ModelConfig.build), named by the
  model dir's MAR-INF/MANIFEST.json (`model.configFile`, ModelArchive.getModelConfig); the toolkit's SAGEMAKER_TS_*
  variables cannot set it. With it the model's jobs go through wlm/ContinuousBatching.java: every step sends the
  worker every job it holds, a job already sent once by its request id only (RequestInput.isCachedInBackend), and
  each prediction the worker returns goes to its client at once (RestJob.responseInference).
- A prediction's `ts_stream_next` header decides: none -> a whole HTTP response (Content-Length), "true" -> a
  chunk (the first one with the status line), "false" -> the last chunk; the job leaves the aggregator only on
  "false" (a job answered without the header stays while its connection is open: fixed in 0.11.1).
- ts/protocol/otf_message_handler.py create_predict_response turns a handler's "true" into "false" unless
  `context.stopping_criteria` is set, and with it every prediction of the step gets "true" or "false": so a step
  either streams (all of its predictions carry the header) or answers whole responses (none does, or "false").
- A request left out of the step's `context.request_ids` gets no prediction: the aggregator keeps it as it is and
  sends it again, body and all, with the next step. This is how a step answers only some of its requests.
- Model.pollInferJob admits `batchSize - jobs - 1` new jobs per step while jobs are running (0.11.0; fixed in
  0.11.1), so the running batch holds batchSize - 1 in steady state.
- Model.pollInferJob also takes the model's lock, and an idle worker waits for a job while holding it: with several
  workers per model, a worker whose job runs cannot get its next step until another request comes.

A request's body: {"steps": n, "stream": bool, "bad": bool}. A good request takes n steps; streamed, it gets one
line per step ("<step>\\n") and then a last line {"steps": n}; plain, one whole answer {"steps": n}. A bad one is
answered 400 {"error": ...} as a whole response. Every step is logged as a JSON line to $CB_PROBE_LOG.
"""

from __future__ import annotations

import json
import os
import time

STEP_SECONDS = 0.05
STREAM_NEXT = "ts_stream_next"

_requests: dict[str, dict] = {}
"""Each request the handler knows, by TorchServe's request id."""
_last_mode = "plain"


def _log(record: dict) -> None:
    with open(os.environ["CB_PROBE_LOG"], "a") as log:
        log.write(json.dumps(record) + "\n")


def handle(data, context):
    global _last_mode
    if data is None:
        return None
    ids = dict(context.request_ids)
    _log({"at": time.time(), "pid": os.getpid(), "ids": list(ids.values()),
          "bodies": [index for index, request in enumerate(data) if request.get("body") is not None]})
    for index, request_id in ids.items():
        if request_id not in _requests:
            body = json.loads(data[index]["body"])
            _requests[request_id] = {
                "steps": body.get("steps", 1), "done": 0, "stream": body.get("stream", False),
                "bad": body.get("bad", False), "text": "", "answered": False, "started": False,
            }
    running = [r for i, r in _requests.items() if i in ids.values() and not r["bad"] and r["done"] < r["steps"]]
    if running:
        time.sleep(STEP_SECONDS)
        for request in running:
            request["done"] += 1
            if request["stream"]:
                request["text"] += f"{request['done']}\n"

    def finished(request):
        return request["bad"] or request["done"] >= request["steps"]

    def whole_answer(request):  # answered as one HTTP response: a plain request once done, a bad one at once
        return (request["bad"] or not request["stream"]) and finished(request) and not request["answered"]

    whole = {i for i, r in ids.items() if whole_answer(_requests[r])}
    streams = {i for i, r in ids.items() if _requests[r]["stream"] and not _requests[r]["bad"]}
    stale = {i for i, r in ids.items() if _requests[r]["answered"]}
    mode = "stream" if streams and (not whole or _last_mode == "plain") else "plain"
    _last_mode = mode
    answers: list = [b""] * len(data)
    stopping = {}
    for index, request_id in ids.items():
        request = _requests[request_id]
        if index in stale:
            # Answered whole before; back because the aggregator kept it (no header): "false" lets it go.
            context.set_response_header(index, STREAM_NEXT, "false")
            stopping[index] = True
            del _requests[request_id]
        elif mode == "plain" and index in whole:
            request["answered"] = True
            if request["bad"]:
                context.set_response_status(400, "bad request", index)
                answers[index] = json.dumps({"error": "bad request"}).encode()
            else:
                answers[index] = json.dumps({"steps": request["steps"]}).encode()
            context.set_response_content_type(index, "application/json")
        elif mode == "stream" and index in streams:
            context.set_response_content_type(index, "application/jsonlines")
            last = finished(request)
            answers[index] = (request["text"] + (json.dumps({"steps": request["steps"]}) + "\n" if last else "")).encode()
            request["text"] = ""
            stopping[index] = last
            if last:
                del _requests[request_id]
        else:
            del context.request_ids[index]  # no prediction: the job comes again with the next step
    context.stopping_criteria = None
    if mode == "stream":
        order = list(context.request_ids)
        context.stopping_criteria = {index: (lambda _, done=stopping[index]: done) for index in order}
    return answers
