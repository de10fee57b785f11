"""SageMaker inference handler for a Llama chat model compiled by the compile job (transformers-neuronx).

Served by the SageMaker PyTorch inference toolkit from <model dir>/code/inference.py, beside
<model dir>/code/contract.json. The model dir is the compile job's artifact prefix:
<checkpointDir> (config, tokenizer, weights), <compiledDir> (NEFFs) and the marker (manifest).

Request (Content-Type application/json):
  {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],   required, non-empty;
                           content without the tokenizer's special tokens (<|im_start|>, <|im_end|>, eos, ...)
   "max_new_tokens": int,   1..n_positions - prompt tokens; default min(256, what is left)
   "temperature": number,   0..2, default 0.7; 0 means greedy (top_k 1)
   "top_p": number,         (0, 1], default 1.0
   "top_k": int,            >= 1, default 50
   "stop": [str],           up to 4 non-empty strings; the completion ends before the first found
   "role": str}             answering role, default "assistant"; "" also means the default (see build_prompt)
Any other field is rejected. Response (application/json):
  {"generated_text": str, "usage": {"prompt_tokens": n, "completion_tokens": m},
   "finish_reason": "stop" (end of turn or stop string) | "length" (max_new_tokens reached)}
A bad request is answered 4xx with a message naming the field, never 500.

Only the functions at the end import torch, transformers and transformers_neuronx; everything
else is plain Python, tested with a real tokenizer and a fake model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

HERE = Path(__file__).resolve().parent


def _load_contract() -> dict[str, Any]:
    """contract.json beside this file (code/ in the model dir) or one level up (repository layout)."""
    for candidate in (HERE / "contract.json", HERE.parent / "contract.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise FileNotFoundError(f"contract.json is neither in {HERE} nor in {HERE.parent}")


CONTRACT = _load_contract()
ENV = CONTRACT["endpoint"]["environment"]
LAYOUT = CONTRACT["layout"]
MANIFEST = CONTRACT["manifest"]

JSON_CONTENT_TYPE = "application/json"
ACCEPTED_RESPONSE_TYPES = (JSON_CONTENT_TYPE, "application/*", "*/*")

HTTP_BAD_REQUEST = 400
HTTP_NOT_ACCEPTABLE = 406
HTTP_UNSUPPORTED_MEDIA_TYPE = 415

MESSAGE_ROLES = ("system", "user", "assistant")
MESSAGE_FIELDS = ("role", "content")
DEFAULT_ROLE = "assistant"
MAX_ROLE_CHARS = 64
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_TEMPERATURE = 0.7
MAX_TEMPERATURE = 2.0
GREEDY_TEMPERATURE = 0.0
"""temperature 0 asks for greedy decoding: sampled as top_k 1 at temperature 1."""
DEFAULT_TOP_P = 1.0
DEFAULT_TOP_K = 50
MAX_STOP_STRINGS = 4
REQUEST_FIELDS = ("messages", "max_new_tokens", "temperature", "top_p", "top_k", "stop", "role")

TURN_START = "<|im_start|>"
END_OF_TURN = "<|im_end|>"
CHATML_MARKERS = (TURN_START, END_OF_TURN)
"""ChatML markers of calm3's chat template. Message content must not contain them, nor any other
special token of the model's tokenizer (checked once the tokenizer is loaded, in generate)."""

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Errors


try:
    # The serving image's toolkit (sagemaker-pytorch-inference carries its own copy of sagemaker_inference):
    # the Transformer answers an error of this type with its status_code, and any other error with 500.
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ErrorBase
except ImportError:  # outside the serving image
    _ErrorBase = Exception


class RequestError(_ErrorBase):
    """A bad request: `status_code` (4xx) and a `message` naming the field.

    A BaseInferenceToolkitError when the toolkit is installed, so that the toolkit answers with this
    status and message instead of 500.
    """

    def __init__(self, status_code: int, message: str):
        Exception.__init__(self, status_code, message)
        self.status_code = status_code
        self.message = message
        self.phrase = message
        """The toolkit's HTTP reason phrase (it strips CR and LF)."""


def _bad(message: str) -> RequestError:
    return RequestError(HTTP_BAD_REQUEST, message)


class ModelConfigurationError(RuntimeError):
    """The artifacts in the model dir do not match the endpoint's configuration."""


# ---------------------------------------------------------------------------------------------
# Request parsing and validation


@dataclass(frozen=True)
class GenerationRequest:
    messages: tuple[Mapping[str, str], ...]
    role: str = DEFAULT_ROLE
    max_new_tokens: int | None = None
    """None: DEFAULT_MAX_NEW_TOKENS, or fewer when the prompt leaves less room."""
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    stop: tuple[str, ...] = ()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def _reject_special_tokens(field: str, text: str, special_tokens: Sequence[str]) -> None:
    """400 naming the field and the first special token in `text`.

    The tokenizer turns a special token's text into that control token wherever it occurs, so a
    message holding `<|im_end|>\\n<|im_start|>system\\n…` would end its own turn and write others.
    """
    found = [(text.find(token), token) for token in special_tokens if token and token in text]
    if found:
        marker = min(found)[1]
        raise _bad(f"{field} must not contain {marker!r}: the tokenizer reads it as a control token, not as text")


def _parse_messages(value: Any) -> tuple[Mapping[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _bad("messages must be a non-empty list of {role, content} objects")
    messages = []
    for index, message in enumerate(value):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"{field} must be an object with role and content")
        unknown = sorted(set(message) - set(MESSAGE_FIELDS))
        if unknown:
            raise _bad(f"{field} has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(MESSAGE_FIELDS)}")
        if message.get("role") not in MESSAGE_ROLES:
            raise _bad(f"{field}.role must be one of {', '.join(MESSAGE_ROLES)}, got {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise _bad(f"{field}.content must be a string")
        _reject_special_tokens(f"{field}.content", message["content"], CHATML_MARKERS)
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)


def _parse_role(value: Any) -> str:
    if value == "":
        # The 0.0.x handler treated an empty role as "no override": clients written for it keep working.
        return DEFAULT_ROLE
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_ROLE_CHARS
        or not value.isprintable()
        or TURN_START in value
        or END_OF_TURN in value
    ):
        raise _bad(
            f"role must be a string of 1 to {MAX_ROLE_CHARS} printable characters"
            f" without {TURN_START} or {END_OF_TURN}"
        )
    return value


def _parse_stop(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP_STRINGS
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise _bad(f"stop must be a list of at most {MAX_STOP_STRINGS} non-empty strings")
    return tuple(value)


def parse_request(body: bytes | str, content_type: str | None) -> GenerationRequest:
    """Checks the content type, the JSON and every field; raises RequestError naming the field."""
    if _media_type(content_type) != JSON_CONTENT_TYPE:
        raise RequestError(
            HTTP_UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be {JSON_CONTENT_TYPE}, got {content_type!r}"
        )
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise _bad(f"body is not valid UTF-8 JSON: {error}") from error
    if not isinstance(payload, dict):
        raise _bad("body must be a JSON object")
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(REQUEST_FIELDS)}")
    if "messages" not in payload:
        raise _bad("messages is required")

    fields: dict[str, Any] = {"messages": _parse_messages(payload["messages"])}
    if "role" in payload:
        fields["role"] = _parse_role(payload["role"])
    if "max_new_tokens" in payload:
        value = payload["max_new_tokens"]
        if not _is_int(value) or value < 1:
            raise _bad(f"max_new_tokens must be an integer >= 1, got {value!r}")
        fields["max_new_tokens"] = value
    if "temperature" in payload:
        value = payload["temperature"]
        if not _is_number(value) or not GREEDY_TEMPERATURE <= value <= MAX_TEMPERATURE:
            raise _bad(
                f"temperature must be a number from {GREEDY_TEMPERATURE} (greedy) to {MAX_TEMPERATURE}, got {value!r}"
            )
        fields["temperature"] = float(value)
    if "top_p" in payload:
        value = payload["top_p"]
        if not _is_number(value) or not 0 < value <= 1:
            raise _bad(f"top_p must be a number in (0, 1], got {value!r}")
        fields["top_p"] = float(value)
    if "top_k" in payload:
        value = payload["top_k"]
        if not _is_int(value) or value < 1:
            raise _bad(f"top_k must be an integer >= 1, got {value!r}")
        fields["top_k"] = value
    if "stop" in payload:
        fields["stop"] = _parse_stop(payload["stop"])
    return GenerationRequest(**fields)


# ---------------------------------------------------------------------------------------------
# Prompt, generation and response


Sampler = Callable[..., Sequence[int]]
"""sample(prompt_ids, *, sequence_length, top_k, top_p, temperature, eos_token_id) -> prompt ids + new ids."""


@dataclass(frozen=True)
class Generator:
    """What model_fn returns: the tokenizer, the compiled model's sampler and its limits."""

    tokenizer: Any
    sample: Sampler
    n_positions: int
    end_of_turn_id: int
    stop_token_ids: frozenset[int]
    """End of turn and the tokenizer's eos: the completion ends before the first of them."""
    special_tokens: tuple[str, ...] = CHATML_MARKERS
    """Every special token of the tokenizer: none may appear in message content or the role."""


def make_generator(tokenizer: Any, sample: Sampler, n_positions: int) -> Generator:
    end_of_turn_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end_of_turn_id is None or end_of_turn_id == tokenizer.unk_token_id:
        raise ModelConfigurationError(f"the tokenizer has no {END_OF_TURN} token: not a ChatML chat model")
    stop_token_ids = {end_of_turn_id}
    if tokenizer.eos_token_id is not None:
        stop_token_ids.add(tokenizer.eos_token_id)
    return Generator(
        tokenizer, sample, n_positions, end_of_turn_id, frozenset(stop_token_ids), special_token_texts(tokenizer)
    )


def special_token_texts(tokenizer: Any) -> tuple[str, ...]:
    """The text of every special token: the named ones (bos, eos, unk, pad, additional) and every
    added token flagged special, with the ChatML markers whatever the tokenizer says."""
    texts = set(CHATML_MARKERS) | set(tokenizer.all_special_tokens)
    texts |= {token.content for token in getattr(tokenizer, "added_tokens_decoder", {}).values() if token.special}
    return tuple(sorted(text for text in texts if text))


def build_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]], role: str) -> str:
    """The tokenizer's chat template with a generation prompt for `role`.

    For the default role this is the template's own generation prompt; for another role the prompt
    ends with `<|im_start|>{role}\\n` instead of `<|im_start|>assistant\\n`, as the 0.0.x handler did.
    """
    if role == DEFAULT_ROLE:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return (
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=False)
        + f"{TURN_START}{role}\n"
    )


def resolve_max_new_tokens(requested: int | None, prompt_tokens: int, n_positions: int) -> int:
    room = n_positions - prompt_tokens
    if requested is None:
        if room < 1:
            raise _bad(
                f"messages take {prompt_tokens} tokens, leaving no room to generate within {n_positions} positions"
            )
        return min(DEFAULT_MAX_NEW_TOKENS, room)
    if requested > room:
        raise _bad(
            f"max_new_tokens {requested} + {prompt_tokens} prompt tokens exceed the model's {n_positions} positions;"
            f" at most {max(room, 0)} new tokens fit"
        )
    return requested


def shape_response(
    generator: Generator, output_ids: Sequence[int], prompt_tokens: int, stop: Sequence[str]
) -> dict[str, Any]:
    """Decodes only the ids after the prompt, up to the first end token, then cuts at stop strings."""
    new_ids = list(output_ids[prompt_tokens:])
    end = next((i for i, token in enumerate(new_ids) if token in generator.stop_token_ids), None)
    completion_ids = new_ids if end is None else new_ids[:end]
    text = generator.tokenizer.decode(completion_ids, skip_special_tokens=True)
    finish_reason = "length" if end is None else "stop"
    stop_at = [text.find(string) for string in stop if string in text]
    if stop_at:
        text = text[: min(stop_at)]
        finish_reason = "stop"
    return {
        "generated_text": text,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(new_ids) if end is None else end + 1},
        "finish_reason": finish_reason,
    }


def generate(generator: Generator, request: GenerationRequest) -> dict[str, Any]:
    for index, message in enumerate(request.messages):
        _reject_special_tokens(f"messages[{index}].content", message["content"], generator.special_tokens)
    _reject_special_tokens("role", request.role, generator.special_tokens)
    prompt = build_prompt(generator.tokenizer, request.messages, request.role)
    prompt_ids = generator.tokenizer.encode(prompt, add_special_tokens=False)
    max_new_tokens = resolve_max_new_tokens(request.max_new_tokens, len(prompt_ids), generator.n_positions)
    greedy = request.temperature == GREEDY_TEMPERATURE
    output_ids = generator.sample(
        prompt_ids,
        sequence_length=len(prompt_ids) + max_new_tokens,
        top_k=1 if greedy else request.top_k,
        top_p=request.top_p,
        temperature=1.0 if greedy else request.temperature,
        eos_token_id=generator.end_of_turn_id,
    )
    if list(output_ids[: len(prompt_ids)]) != prompt_ids:
        raise RuntimeError("the model's output does not start with the prompt: cannot cut the completion")
    return shape_response(generator, output_ids, len(prompt_ids), request.stop)


# ---------------------------------------------------------------------------------------------
# Model dir checks


def read_manifest(model_dir: Path) -> dict[str, Any]:
    marker = model_dir / LAYOUT["marker"]
    if not marker.is_file():
        raise ModelConfigurationError(f"{marker} is missing: the compile job did not finish for these artifacts")
    manifest = json.loads(marker.read_text())
    if manifest.get("schemaVersion") != MANIFEST["schemaVersion"]:
        raise ModelConfigurationError(
            f"{marker} has schemaVersion {manifest.get('schemaVersion')!r},"
            f" this handler reads {MANIFEST['schemaVersion']}"
        )
    return manifest


def configuration_mismatches(compiled: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Every difference between the compiled options and the endpoint's environment.

    Unset variables take the contract's defaults; tpDegree and nPositions have none.
    """
    defaults = {**CONTRACT["defaults"], "quantDtype": CONTRACT["quantDtypeNone"]}
    mismatches = []
    for key in (key for key in MANIFEST["optionKeys"] if key in ENV):
        configured = environ.get(ENV[key], str(defaults.get(key, ""))).strip()
        if configured != str(compiled[key]):
            mismatches.append(f"{ENV[key]}={configured!r} but the artifacts were compiled with {key}={compiled[key]!r}")
    cores = environ.get(ENV["coresPerWorker"])
    if cores is not None and cores.strip() != str(compiled["tpDegree"]):
        mismatches.append(
            f"{ENV['coresPerWorker']}={cores!r} but each worker needs tpDegree={compiled['tpDegree']} NeuronCores"
        )
    return mismatches


def installed_versions(packages: Sequence[str]) -> dict[str, str | None]:
    """The installed version of each distribution (None when it is not installed)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def describe_versions(versions: Mapping[str, str | None] | None) -> str:
    if not versions:
        return "versions the manifest does not record"
    return ", ".join(f"{package} {version or '(not installed)'}" for package, version in versions.items())


def missing_files(model_dir: Path, files: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        entry["key"]
        for entry in files
        if not (model_dir / entry["key"]).is_file() or (model_dir / entry["key"]).stat().st_size != entry["bytes"]
    ]


# ---------------------------------------------------------------------------------------------
# SageMaker inference toolkit functions


def model_fn(model_dir: str) -> Generator:
    """Checks the artifacts against the configuration, then loads the NEFFs (never compiles)."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    mismatches = configuration_mismatches(manifest["options"], os.environ)
    if mismatches:
        raise ModelConfigurationError(
            "the endpoint's configuration does not match the compiled artifacts (it would recompile): "
            + "; ".join(mismatches)
        )
    missing = missing_files(model_dir, manifest["files"])
    if missing:
        raise ModelConfigurationError(
            f"{len(missing)} file(s) listed in the manifest are missing or truncated in {model_dir}:"
            f" {', '.join(missing)}"
        )
    # Manifests written before these keys existed have neither.
    compiled_with = manifest.get("neuronPackages")
    installed = installed_versions(MANIFEST["neuronPackages"])
    log.info(
        "loading %s (revision %r, commit %s) compiled for %s with %s and %s; this image has %s",
        manifest["modelId"],
        manifest["modelRevision"],
        manifest.get("modelCommit") or "not recorded",
        manifest["compilerTarget"],
        manifest["options"],
        describe_versions(compiled_with),
        describe_versions(installed),
    )
    if compiled_with and dict(compiled_with) != installed:
        log.warning("the artifacts were compiled with other Neuron packages than this image has; loading may fail")
    try:
        return _load_neuron_generator(
            model_dir / LAYOUT["checkpointDir"], model_dir / LAYOUT["compiledDir"], manifest["options"]
        )
    except Exception as error:
        raise ModelConfigurationError(
            f"loading the compiled artifacts from {model_dir} failed ({type(error).__name__}: {error});"
            f" they were compiled with {describe_versions(compiled_with)},"
            f" this image has {describe_versions(installed)}"
        ) from error


def input_fn(input_data: bytes | str, content_type: str) -> GenerationRequest:
    return parse_request(input_data, content_type)


def predict_fn(data: GenerationRequest, model: Generator) -> dict[str, Any]:
    started = time.monotonic()
    response = generate(model, data)
    log.info(
        "generated prompt_tokens=%d completion_tokens=%d finish_reason=%s seconds=%.2f",
        response["usage"]["prompt_tokens"],
        response["usage"]["completion_tokens"],
        response["finish_reason"],
        time.monotonic() - started,
    )
    return response


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[str, str]:
    """The JSON body and its content type.

    The toolkit sets the response's Content-Type to the second element; given a bare body it would
    use the request's Accept header as it came (e.g. `application/*` or `text/html, application/json`).
    """
    accepted = [_media_type(item) for item in (accept or JSON_CONTENT_TYPE).split(",")]
    if not any(media_type in ACCEPTED_RESPONSE_TYPES for media_type in accepted):
        raise RequestError(HTTP_NOT_ACCEPTABLE, f"Accept must allow {JSON_CONTENT_TYPE}, got {accept!r}")
    return json.dumps(prediction, ensure_ascii=False), JSON_CONTENT_TYPE


# ---------------------------------------------------------------------------------------------
# The only code that needs torch, transformers and transformers-neuronx (the serving image)


def llama_from_pretrained_kwargs(options: Mapping[str, Any], neuronx_config: Any) -> dict[str, Any]:
    """LlamaForSampling.from_pretrained's keyword arguments for the manifest `options`.

    The compile job and the handler must build the model with exactly these: any difference changes
    the HLO, hence the hash the NEFFs are found by, and the endpoint would not find its artifacts.
    `neuronx_config` is the transformers_neuronx.config module. The compile job imports this function
    from here (compile/neuronx_compile.py), so there is one definition.
    """
    neuron_config = None
    if options["quantDtype"]:
        neuron_config = neuronx_config.NeuronConfig(
            quant=neuronx_config.QuantizationConfig(quant_dtype=options["quantDtype"], dequant_dtype=options["amp"])
        )
    return {
        "batch_size": options["batchSize"],
        "tp_degree": options["tpDegree"],
        "n_positions": options["nPositions"],
        "amp": options["amp"],
        "neuron_config": neuron_config,
    }


def _load_neuron_generator(checkpoint_dir: Path, compiled_dir: Path, options: Mapping[str, Any]) -> Generator:
    """Builds the model exactly as the compile job did, loads its NEFFs and wraps `model.sample`."""
    import torch
    import transformers_neuronx.config as neuronx_config
    from transformers import AutoTokenizer
    from transformers_neuronx.llama.model import LlamaForSampling

    model = LlamaForSampling.from_pretrained(
        str(checkpoint_dir), **llama_from_pretrained_kwargs(options, neuronx_config)
    )
    model.load(str(compiled_dir))
    model.to_neuron()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))

    def sample(
        prompt_ids: list[int], *, sequence_length: int, top_k: int, top_p: float, temperature: float, eos_token_id: int
    ) -> list[int]:
        # One request per call; a model compiled for a larger batch gets the prompt in every row.
        input_ids = torch.tensor([prompt_ids] * options["batchSize"], dtype=torch.long)
        with torch.inference_mode():
            output = model.sample(
                input_ids,
                sequence_length=sequence_length,
                top_k=top_k,
                top_p=top_p,
                temperature=temperature,
                eos_token_override=eos_token_id,
            )
        return output[0].tolist()

    return make_generator(tokenizer, sample, options["nPositions"])
