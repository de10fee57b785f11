"""Shared test setup: no bytecode next to the shipped sources, the contract as tests see it, and the
handler's surroundings as fakes that follow the real APIs: TorchServe 0.11.0's context and the model's sampler."""

import itertools
import json
import sys
from pathlib import Path

import pytest

# compile/ is zipped and inference/ copied as they are: keep __pycache__ out of them.
sys.dont_write_bytecode = True

CONTRACT_PATH = Path(__file__).resolve().parent.parent / "contract.json"
CONTRACT = json.loads(CONTRACT_PATH.read_text())
JSON = "application/json"


@pytest.fixture(scope="session")
def contract() -> dict:
    return json.loads(CONTRACT_PATH.read_text())


# ---------------------------------------------------------------------------------------------
# TorchServe 0.11.0 (pytorch/serve v0.11.0, ts/context.py, ts/service.py)


class RequestProcessor:
    """ts/context.py RequestProcessor: one request's headers in, its status and headers out."""

    def __init__(self, request_header: dict) -> None:
        self._status_code = 200
        self._reason_phrase = None
        self._response_header = {}
        self._request_header = request_header

    def get_request_property(self, key):
        return self._request_header.get(key)

    def report_status(self, code, reason_phrase=None):
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self):
        return self._status_code

    def get_response_status_phrase(self):
        return self._reason_phrase

    def add_response_property(self, key, value):
        self._response_header[key] = value

    def get_response_headers(self):
        return self._response_header

    def get_request_properties(self):
        return self._request_header


class Context:
    """ts/context.py Context, with the same methods and signatures (metrics and sequence ids left out)."""

    def __init__(self, model_dir):
        self.model_name = "model"
        self._system_properties = {"model_dir": str(model_dir), "gpu_id": None, "batch_size": 1}
        self.request_ids = None
        self.request_processor = None

    @property
    def system_properties(self):
        return self._system_properties

    def get_request_id(self, idx=0):
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx, key):
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx):
        return self.request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx, value):
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx):
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx):
        return (
            self.request_processor[idx].get_response_status_code(),
            self.request_processor[idx].get_response_status_phrase(),
        )

    def set_response_status(self, code=200, phrase="", idx=0):
        if self.request_processor is not None and self.request_processor[idx] is not None:
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx):
        return self.request_processor[idx].get_response_headers()

    def set_response_header(self, idx, key, value):
        self.request_processor[idx].add_response_property(key, value)


def torchserve_batch(context, requests):
    """What TorchServe 0.11.0 hands the entry point for `requests` [(body bytes, {header: value})]: the
    frontend sends the body as parameter "body" with the Content-Type's MIME type (Netty HttpUtil.getMimeType:
    parameters dropped; "" when absent) and the headers as the client named them; ts/service.py
    retrieve_data_for_inference makes each request {"body": bytes} and its headers
    {"body": {"content-type": mime}} updated with the request's headers."""
    data, processors = [], []
    for body, headers in requests:
        content_type = next((value for key, value in headers.items() if key.lower() == "content-type"), "")
        properties = {"body": {"content-type": content_type.split(";")[0].strip()}}
        properties.update(headers)
        processors.append(RequestProcessor(properties))
        data.append({"body": body})
    context.request_ids = {index: f"request-{index}" for index in range(len(requests))}
    context.request_processor = processors
    return data


def framed_like_torchserve(phrase: str) -> bool:
    """TorchServe 0.11.0 writes the phrase's length in characters, then its UTF-8 bytes
    (ts/protocol/otf_message_handler.py create_predict_response): the frontend reads the right bytes only
    when the two agree; an unencodable phrase raises in the worker, outside the handler."""
    try:
        return len(phrase) == len(phrase.encode("utf-8"))
    except UnicodeEncodeError:
        return False


# ---------------------------------------------------------------------------------------------
# The compiled model


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeSampler:
    """Plays transformers-neuronx 0.13's LlamaForSampling.sample as the handler's sample() wraps it
    (sampling.sample_loop_llama): one step per token for every row at once, each row `completion` then `filler`
    for ever; after each step each row's should_stop (streamer.put, then the stopping criterion); a row ends at
    its max_new_tokens, at a stop token (eos_token_override) or when its should_stop says so, the call when
    every row has; returns each row's prompt followed by its new tokens. Each step takes `seconds_per_token` on
    `clock`. `calls` has one entry per row: (prompt, sampling arguments with the row's sequence_length, stop
    ids); `batches` the rows of each call."""

    def __init__(self, completion=(), filler=None, clock=None, seconds_per_token=0.0, echo_prompt=True):
        self.completion = list(completion)
        self.filler = filler
        self.clock = clock
        self.seconds_per_token = seconds_per_token
        self.echo_prompt = echo_prompt
        self.calls = []
        self.batches = []

    def __call__(self, prompts, *, max_new_tokens, top_k, top_p, temperature, stop_token_ids, should_stop):
        assert isinstance(top_k, int) and isinstance(top_p, float) and isinstance(temperature, float)
        assert len(prompts) == len(max_new_tokens) == len(should_stop)
        sampling = {"top_k": top_k, "top_p": top_p, "temperature": temperature}
        for prompt, limit in zip(prompts, max_new_tokens):
            self.calls.append(
                (list(prompt), {"sequence_length": len(prompt) + limit, **sampling}, list(stop_token_ids))
            )
        self.batches.append(len(prompts))
        new = [[] for _ in prompts]
        ended = [False] * len(prompts)
        stream = itertools.chain(self.completion, itertools.repeat(self.filler) if self.filler is not None else ())
        for token in stream:
            if all(ended):
                break
            if self.clock is not None:
                self.clock.now += self.seconds_per_token
            for row, stop in enumerate(should_stop):
                if ended[row]:
                    continue
                new[row].append(token)
                ended[row] = bool(stop(token)) or token in stop_token_ids or len(new[row]) >= max_new_tokens[row]
        return [(list(prompt) if self.echo_prompt else []) + tokens for prompt, tokens in zip(prompts, new)]


# ---------------------------------------------------------------------------------------------
# The model dir as SageMaker lays out the compile job's prefix, and the handler started on it

OPTIONS = {"tpDegree": 2, "nPositions": 1024, "batchSize": 1, "amp": "bf16", "quantDtype": "s8", "optLevel": 3}
FILES = {"checkpoint/config.json": b"{}", "compiled/model.neff": b"neff"}
COMPILED_WITH = {"neuronx-cc": "2.16.372.0", "transformers-neuronx": "0.13.380"}


@pytest.fixture
def model_dir(tmp_path, contract):
    layout = contract["layout"]
    assert {key.split("/")[0] + "/" for key in FILES} == {layout["checkpointDir"], layout["compiledDir"]}
    for key, content in FILES.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(content)
    manifest = {
        "schemaVersion": contract["manifest"]["schemaVersion"],
        "modelId": "cyberagent/calm3-22b-chat",
        "modelRevision": "main",
        "modelCommit": "0123abcd" * 5,
        "imageUri": "image",
        "neuronPackages": COMPILED_WITH,
        "compilerTarget": "trn1",
        "options": OPTIONS,
        "files": [{"key": key, "bytes": len(content)} for key, content in FILES.items()],
        "phases": {"compile": 1.0},
        "completedAt": "2026-01-01T00:00:00Z",
    }
    (tmp_path / layout["marker"]).write_text(json.dumps(manifest))
    return tmp_path


@pytest.fixture
def endpoint_env(contract, monkeypatch):
    """The endpoint environment the constructs set for OPTIONS; unset variables take defaults."""
    names = contract["endpoint"]["environment"]
    for name in names.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(names["tpDegree"], "2")
    monkeypatch.setenv(names["nPositions"], "1024")
    monkeypatch.setenv(names["quantDtype"], "s8")
    monkeypatch.setenv(names["coresPerWorker"], "2")
    return names


class Server:
    """The handler in a TorchServe worker: started with handle(None, context), then sent batches."""

    def __init__(self, handle, context, sampler, clock):
        self.handle, self.context, self.sampler, self.clock = handle, context, sampler, clock

    def invoke_batch(self, requests):
        """[(body, headers)] -> [(status, phrase, content type, decoded JSON body)], as the frontend would answer."""
        data = torchserve_batch(self.context, requests)
        bodies = self.handle(data, self.context)
        assert isinstance(bodies, list) and len(bodies) == len(requests)
        answers = []
        for index, body in enumerate(bodies):
            status, phrase = self.context.get_response_status(index)
            assert isinstance(body, bytes)
            assert phrase is None or (framed_like_torchserve(phrase) and len(phrase) <= 200), phrase
            answers.append((status, phrase, self.context.get_response_content_type(index), json.loads(body)))
        return answers

    def invoke(self, body, headers=None):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return self.invoke_batch([(body, {"Content-Type": JSON} if headers is None else headers)])[0]


@pytest.fixture
def serve(model_dir, endpoint_env, monkeypatch):
    """start(family, sampler, batch_size) -> Server: the family's tokenizer (and generation_config.json) in checkpoint/, the
    sampler in place of the compiled model, a fake clock; handle(None, context) as TorchServe's load calls it."""
    import inference
    import neuronx_loading
    from chat_tokenizer import build_chat_tokenizer

    def start(family="chatml", sampler=None, batch_size=1, **tokenizer_options):
        build_chat_tokenizer(model_dir / CONTRACT["layout"]["checkpointDir"], family, **tokenizer_options)
        if batch_size != 1:
            # Artifacts compiled for batch_size, and the endpoint configured for them.
            marker = model_dir / CONTRACT["layout"]["marker"]
            manifest = json.loads(marker.read_text())
            manifest["options"]["batchSize"] = batch_size
            marker.write_text(json.dumps(manifest))
            monkeypatch.setenv(endpoint_env["batchSize"], str(batch_size))
        sampler = sampler or FakeSampler()
        clock = sampler.clock or FakeClock()
        sampler.clock = clock
        monkeypatch.setattr(inference, "clock", clock)
        monkeypatch.setattr(neuronx_loading, "_load_neuron_sampler", lambda checkpoint, compiled, options: sampler)
        monkeypatch.setattr(inference, "_worker", None)
        context = Context(model_dir)
        assert inference.handle(None, context) is None
        return Server(inference.handle, context, sampler, clock)

    return start
