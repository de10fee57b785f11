"""The thin Neuron layer of both programs, over fake torch and transformers_neuronx modules.

The compile job and the handler must build LlamaForSampling identically: a difference in the
from_pretrained arguments changes the HLO hash, and the endpoint would not find its NEFFs. The
compile job imports the handler's argument builder; these tests check it does, that both sides call
it the same way, and the call order on each side.
"""

import shutil
import subprocess
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import pytest

import inference
import neuronx_loading
import neuronx_request
import neuronx_scheduler
import neuronx_compile
from chat_tokenizer import VOCAB, build_chat_tokenizer  # imports transformers before torch is faked

QUANTIZED = {"tpDegree": 2, "nPositions": 1024, "batchSize": 1, "amp": "bf16", "quantDtype": "s8", "optLevel": 3}
UNQUANTIZED = {"tpDegree": 8, "nPositions": 4096, "batchSize": 2, "amp": "f16", "quantDtype": "", "optLevel": 2}


class Recorded:
    """A transformers_neuronx config object: equal when built with equal arguments."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __getattr__(self, name):
        # Reads what it was built with, like the real config's attributes; anything else was never set.
        try:
            return self.__dict__["kwargs"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __eq__(self, other):
        return type(other) is type(self) and other.kwargs == self.kwargs

    def __repr__(self):
        return f"{type(self).__name__}({self.kwargs})"


class NeuronConfig(Recorded):
    pass


class QuantizationConfig(Recorded):
    pass


class StoppingCriteriaList(list):
    """transformers_neuronx.stopping_criteria.StoppingCriteriaList: true when any criterion is."""

    def __call__(self, input_ids, scores, **kwargs):
        return any(criterion(input_ids, scores) for criterion in self)


class FakeTensor:
    def __init__(self, rows, dtype=None):
        self.rows = [list(row) if isinstance(row, (list, tuple)) else row for row in rows]
        self.dtype = dtype

    def __getitem__(self, index):
        return types.SimpleNamespace(tolist=lambda: list(self.rows[index]))


class FakeNeuron:
    """Installs torch, transformers_neuronx.config and transformers_neuronx.llama.model fakes; records calls."""

    COMPLETION = [VOCAB["bye"], VOCAB["<|im_end|>"]]

    def __init__(self, monkeypatch):
        self.calls = []
        self.inference_mode_depth = 0
        neuron = self

        class LlamaForSampling:
            @classmethod
            def from_pretrained(cls, *args, **kwargs):
                neuron.calls.append(("from_pretrained", args, kwargs))
                model = cls()
                # As LlamaForSampling.__init__: its own NeuronConfig() when given None.
                model.neuron_config = kwargs.get("neuron_config") or NeuronConfig()
                return model

            def to_neuron(self):
                # NeuronModelBase.to_neuron compiles with neuron_config.compilation_worker_count workers (None: all).
                neuron.calls.append(("to_neuron", getattr(self.neuron_config, "compilation_worker_count", None)))

            def save(self, directory):
                neuron.calls.append(("save", directory))

            def load(self, directory):
                neuron.calls.append(("load", directory))

            # transformers-neuronx 0.13 LlamaForSampling.sample's signature: other keywords are a TypeError.
            def sample(
                self,
                input_ids,
                sequence_length,
                cache_ids=None,
                start_ids=None,
                top_k=50,
                top_p=1.0,
                eos_token_override=None,
                temperature=1.0,
                streamer=None,
                stopping_criteria_list=None,
                no_repeat_ngram_size=None,
            ):
                arguments = {
                    name: value for name, value in locals().items() if name not in ("self", "input_ids", "neuron")
                }
                neuron.calls.append(("sample", input_ids, arguments, neuron.inference_mode_depth))
                # sampling.sample_loop_llama's order: a token per row, streamer.put([batch, 1]), stop when every
                # row has an eos token, then when the stopping criteria say so.
                eos = [eos_token_override] if isinstance(eos_token_override, int) else eos_token_override
                new = []
                for token in neuron.COMPLETION[: sequence_length - len(input_ids.rows[0])]:
                    new.append(token)
                    if streamer:
                        streamer.put([[token]] * len(input_ids.rows))
                    if token in eos or (stopping_criteria_list and stopping_criteria_list(input_ids, None)):
                        break
                if streamer:
                    streamer.end()
                return FakeTensor([row + new for row in input_ids.rows])

        @contextmanager
        def inference_mode():
            self.inference_mode_depth += 1
            yield
            self.inference_mode_depth -= 1

        torch = types.ModuleType("torch")
        torch.long, torch.int32 = "torch.long", "torch.int32"
        torch.tensor = FakeTensor
        torch.inference_mode = inference_mode
        package = types.ModuleType("transformers_neuronx")
        config = types.ModuleType("transformers_neuronx.config")
        config.NeuronConfig, config.QuantizationConfig = NeuronConfig, QuantizationConfig
        stopping_criteria = types.ModuleType("transformers_neuronx.stopping_criteria")
        stopping_criteria.StoppingCriteriaList = StoppingCriteriaList
        llama = types.ModuleType("transformers_neuronx.llama")
        model = types.ModuleType("transformers_neuronx.llama.model")
        model.LlamaForSampling = LlamaForSampling
        package.config, package.llama, llama.model = config, llama, model
        package.stopping_criteria = stopping_criteria
        for module in (torch, package, config, llama, model, stopping_criteria):
            monkeypatch.setitem(sys.modules, module.__name__, module)

    def from_pretrained_calls(self):
        return [call[1:] for call in self.calls if call[0] == "from_pretrained"]


@pytest.fixture
def neuron(monkeypatch):
    return FakeNeuron(monkeypatch)


@pytest.fixture
def dirs(tmp_path):
    checkpoint_dir, compiled_dir = tmp_path / "checkpoint", tmp_path / "compiled"
    build_chat_tokenizer(checkpoint_dir)
    return checkpoint_dir, compiled_dir


def test_the_compile_job_and_the_handler_build_the_model_with_one_function():
    # One definition: a copy in either program could drift and change the HLO hash the NEFFs are found by.
    assert neuronx_compile.llama_from_pretrained_kwargs is neuronx_loading.llama_from_pretrained_kwargs
    assert neuronx_loading.llama_from_pretrained_kwargs.__module__ == "neuronx_common"


@pytest.mark.parametrize("options", [QUANTIZED, UNQUANTIZED], ids=["s8", "bf16-batch2"])
def test_compile_and_serve_build_the_model_with_identical_arguments(neuron, dirs, options):
    checkpoint_dir, compiled_dir = dirs

    neuronx_compile.compile_checkpoint(checkpoint_dir, compiled_dir, options, workers=4)
    neuronx_loading._load_neuron_generator(checkpoint_dir, compiled_dir, options)

    compiled, served = neuron.from_pretrained_calls()
    assert compiled == served
    quantization = QuantizationConfig(quant_dtype="s8", dequant_dtype="bf16")
    expected_config = NeuronConfig(quant=quantization) if options["quantDtype"] else None
    assert compiled == (
        (str(checkpoint_dir),),
        {
            # batchSize 1 as before; a larger batch compiles batch 1 too, for a lone request
            "batch_size": {1: 1, 2: [1, 2]}[options["batchSize"]],
            "tp_degree": options["tpDegree"],
            "n_positions": options["nPositions"],
            "amp": options["amp"],
            "neuron_config": expected_config,
        },
    )


@pytest.mark.parametrize("options", [QUANTIZED, UNQUANTIZED], ids=["s8", "bf16-batch2"])
def test_the_compile_job_compiles_with_bounded_workers_then_saves_the_neffs(neuron, dirs, options):
    checkpoint_dir, compiled_dir = dirs
    neuronx_compile.compile_checkpoint(checkpoint_dir, compiled_dir, options, workers=3)
    assert [call[0] for call in neuron.calls] == ["from_pretrained", "to_neuron", "save"]
    # The bound is on the model's NeuronConfig when to_neuron compiles (without it: one process per graph).
    assert neuron.calls[1] == ("to_neuron", 3)
    # NEFFs only: the handler reads the checkpoint.
    assert neuron.calls[-1] == ("save", str(compiled_dir))


def test_the_handler_loads_the_neffs_before_to_neuron_and_never_saves(neuron, dirs):
    checkpoint_dir, compiled_dir = dirs
    neuronx_loading._load_neuron_generator(checkpoint_dir, compiled_dir, QUANTIZED)
    assert [call[0] for call in neuron.calls] == ["from_pretrained", "load", "to_neuron"]
    assert neuron.calls[1] == ("load", str(compiled_dir))


def test_sample_left_pads_the_rows_to_the_compiled_batch_with_the_documented_keywords(neuron, dirs):
    checkpoint_dir, compiled_dir = dirs
    generator = neuronx_loading._load_neuron_generator(checkpoint_dir, compiled_dir, UNQUANTIZED)
    assert generator.batch_size == UNQUANTIZED["batchSize"] == 2
    neuron.calls.clear()
    seen = [[], []]
    end = VOCAB["<|im_end|>"]

    output = generator.sample(
        [[1, 2, 3], [4]],
        max_new_tokens=[7, 2],
        top_k=5,
        top_p=0.9,
        temperature=0.3,
        stop_token_ids=[end],
        should_stop=[lambda token, row=row: seen[row].append(token) or False for row in (0, 1)],
    )

    ((_, input_ids, arguments, inference_mode_depth),) = neuron.calls
    # Left padding (with a stop token, masked by start_ids: each row's padding).
    assert (input_ids.rows, input_ids.dtype) == ([[1, 2, 3], [end, end, 4]], "torch.long")
    start_ids = arguments.pop("start_ids")
    assert (start_ids.rows, start_ids.dtype) == ([0, 2], "torch.int32")
    step = arguments.pop("streamer")
    assert isinstance(step, neuronx_loading.SampleStep) and list(arguments.pop("stopping_criteria_list")) == [step]
    assert {name: value for name, value in arguments.items() if value is not None} == {
        "sequence_length": 3 + 7,  # the longest prompt plus the most new tokens asked
        "top_k": 5,
        "top_p": 0.9,
        "temperature": 0.3,
        "eos_token_override": [end],
    }
    assert inference_mode_depth == 1
    # Each row without its padding, with the tokens it took.
    assert output == [[1, 2, 3] + FakeNeuron.COMPLETION, [4] + FakeNeuron.COMPLETION]
    assert seen == [FakeNeuron.COMPLETION] * 2  # each token, as it came


def test_a_lone_request_runs_the_batch_1_graph_as_before(neuron, dirs):
    checkpoint_dir, compiled_dir = dirs
    generator = neuronx_loading._load_neuron_generator(checkpoint_dir, compiled_dir, UNQUANTIZED)
    neuron.calls.clear()
    generator.sample(
        [[1, 2, 3]], max_new_tokens=[7], top_k=5, top_p=0.9, temperature=0.3, stop_token_ids=[0],
        should_stop=[lambda token: False],
    )
    ((_, input_ids, arguments, _),) = neuron.calls
    assert (input_ids.rows, arguments["start_ids"]) == ([[1, 2, 3]], None)


def test_should_stop_ends_a_row_and_the_generation_when_every_row_has(neuron, dirs):
    checkpoint_dir, compiled_dir = dirs
    generator = neuronx_loading._load_neuron_generator(checkpoint_dir, compiled_dir, UNQUANTIZED)
    output = generator.sample(
        [[1], [2]], max_new_tokens=[9, 9], top_k=5, top_p=0.9, temperature=0.3, stop_token_ids=[0],
        should_stop=[lambda token: True, lambda token: False],
    )
    assert output == [[1, FakeNeuron.COMPLETION[0]], [2, *FakeNeuron.COMPLETION]]
    output = generator.sample(
        [[1]], max_new_tokens=[9], top_k=5, top_p=0.9, temperature=0.3, stop_token_ids=[0],
        should_stop=[lambda token: True],
    )
    assert output == [[1, FakeNeuron.COMPLETION[0]]]


def test_the_loaded_generator_answers_a_request_end_to_end(neuron, dirs):
    checkpoint_dir, compiled_dir = dirs
    generator = neuronx_loading._load_neuron_generator(checkpoint_dir, compiled_dir, QUANTIZED)

    response = neuronx_scheduler.generate(
        generator,
        neuronx_request.GenerationRequest(messages=({"role": "user", "content": "hello"},), temperature=0.0),
        deadline=float("inf"),
    )

    assert response["generated_text"] == "bye"
    assert generator.n_positions == QUANTIZED["nPositions"]
    (sample,) = [call for call in neuron.calls if call[0] == "sample"]
    assert (sample[2]["top_k"], sample[2]["temperature"]) == (1, 1.0)  # greedy


def _run_probe(cwd: Path, script_dir: str, probe: str) -> subprocess.CompletedProcess:
    """`probe` as a program started from `script_dir` runs: that folder first on sys.path, nothing of the repository."""
    return subprocess.run(
        [sys.executable, "-B", "-c", f"import sys; sys.path.insert(0, {script_dir!r}); {probe}"],
        cwd=cwd, capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"},
    )


def test_the_compile_layout_finds_the_shared_module_without_the_handler(tmp_path):
    # As the compile job runs in AWS: code/compile/compile_job.py started as a script, neuronx_common.py beside it and
    # code/contract.json one folder up (the compile asset's layout, built by build-tools/compile-code-zip.js).
    runtime = Path(__file__).resolve().parent.parent
    code = tmp_path / "code"
    shutil.copytree(runtime / "compile", code / "compile")
    shutil.copy(runtime / "common" / "neuronx_common.py", code / "compile" / "neuronx_common.py")
    shutil.copy(runtime / "contract.json", code / "contract.json")
    probe = "import neuronx_compile; print(neuronx_compile.llama_from_pretrained_kwargs.__module__, 'inference' in sys.modules)"
    result = _run_probe(tmp_path, "code/compile", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "neuronx_common False"


def test_the_endpoint_code_layout_finds_the_shared_module(tmp_path):
    # As the endpoint's code/ is placed: the handler's modules, neuronx_common.py and contract.json side by side.
    runtime = Path(__file__).resolve().parent.parent
    code = tmp_path / "code"
    code.mkdir()
    handler_modules = sorted((runtime / "inference").glob("*.py"))
    for path in (*handler_modules, runtime / "common" / "neuronx_common.py", runtime / "contract.json"):
        shutil.copy(path, code / path.name)
    result = _run_probe(tmp_path, "code", "import inference, neuronx_loading; print(neuronx_loading.CONTRACT['version'])")
    assert result.returncode == 0, result.stderr
