"""load_generator (the worker's initialization): the endpoint refuses artifacts that do not match its configuration."""

import ast
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

import pytest

import inference
import neuronx_loading
import neuronx_common
from conftest import COMPILED_WITH, OPTIONS
from neuronx_chat import ModelConfigurationError
from neuronx_loading import load_generator

HANDLER_MODULES = sorted(path.stem for path in Path(inference.__file__).parent.glob("*.py"))
"""The handler's modules: every .py beside inference.py (all of them are placed in code/)."""


@pytest.fixture
def loads(monkeypatch):
    calls = []
    monkeypatch.setattr(neuronx_loading, "_load_neuron_generator", lambda *args: calls.append(args) or "generator")
    return calls


def test_matching_artifacts_are_loaded_from_the_layout_dirs(model_dir, endpoint_env, loads, contract):
    assert load_generator(str(model_dir)) == "generator"
    assert loads == [
        (model_dir / contract["layout"]["checkpointDir"], model_dir / contract["layout"]["compiledDir"], OPTIONS)
    ]


def test_every_mismatch_is_named(model_dir, endpoint_env, loads, monkeypatch):
    monkeypatch.setenv(endpoint_env["tpDegree"], "4")
    monkeypatch.setenv(endpoint_env["nPositions"], "4096")
    monkeypatch.delenv(endpoint_env["quantDtype"])
    monkeypatch.setenv(endpoint_env["amp"], "f16")

    with pytest.raises(ModelConfigurationError) as raised:
        load_generator(str(model_dir))

    message = str(raised.value)
    assert message.startswith(
        "the endpoint's configuration does not match the compiled artifacts (it would recompile): "
    )
    for expected in (
        f"{endpoint_env['tpDegree']}='4' but the artifacts were compiled with tpDegree=2",
        f"{endpoint_env['nPositions']}='4096' but the artifacts were compiled with nPositions=1024",
        f"{endpoint_env['amp']}='f16' but the artifacts were compiled with amp='bf16'",
        f"{endpoint_env['quantDtype']}='' but the artifacts were compiled with quantDtype='s8'",
    ):
        assert expected in message
    assert endpoint_env["coresPerWorker"] not in message  # 2 cores still match the compiled tpDegree
    assert loads == []


def test_unset_tp_degree_is_a_mismatch_and_cores_must_equal_it(model_dir, endpoint_env, loads, monkeypatch):
    monkeypatch.delenv(endpoint_env["tpDegree"])
    monkeypatch.setenv(endpoint_env["coresPerWorker"], "4")
    with pytest.raises(ModelConfigurationError) as raised:
        load_generator(str(model_dir))
    assert f"{endpoint_env['tpDegree']}='' but the artifacts were compiled with tpDegree=2" in str(raised.value)
    assert f"{endpoint_env['coresPerWorker']}='4' but each worker needs tpDegree=2 NeuronCores" in str(raised.value)


def test_a_model_dir_without_marker_is_incomplete(model_dir, endpoint_env, loads, contract):
    (model_dir / contract["layout"]["marker"]).unlink()
    with pytest.raises(ModelConfigurationError, match="did not finish"):
        load_generator(str(model_dir))
    assert loads == []


def test_an_unknown_schema_version_is_refused(model_dir, endpoint_env, loads, contract):
    marker = model_dir / contract["layout"]["marker"]
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "schemaVersion": 99}))
    with pytest.raises(ModelConfigurationError, match="schemaVersion 99, this handler reads 1"):
        load_generator(str(model_dir))


def test_missing_or_truncated_files_are_named(model_dir, endpoint_env, loads):
    (model_dir / "compiled/model.neff").write_bytes(b"ne")
    (model_dir / "checkpoint/config.json").unlink()
    with pytest.raises(
        ModelConfigurationError, match="2 file.* missing or truncated .*: checkpoint/config.json, compiled/model.neff"
    ):
        load_generator(str(model_dir))


def test_the_handler_reads_the_contract_beside_or_above_it(contract):
    assert neuronx_loading.CONTRACT == contract
    assert Path(inference.__file__).name == contract["endpoint"]["handlerScript"]


@pytest.mark.parametrize("module", [*HANDLER_MODULES, "neuronx_common"])
def test_the_handler_imports_only_what_the_serving_image_has(module):
    # The handler's modules and neuronx_common.py are placed side by side in code/ (neuronx_common.py has only
    # standard-library imports).
    module = importlib.import_module(module)
    allowed = set(sys.stdlib_module_names) | {
        "torch",
        "transformers",
        "transformers_neuronx",
        "jinja2",
        "ts",  # TorchServe 0.11.0, the image's model server: streaming's send_intermediate_predict_response
        "__future__",
        "neuronx_common",
        *HANDLER_MODULES,
    }
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= allowed
    top_level = {
        alias.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
    }
    # Imported where used, so the handler's pure parts import (and are tested) without them.
    image_only = {"torch", "transformers", "transformers_neuronx", "ts"}
    assert not top_level & image_only
    assert not any(
        isinstance(node, ast.ImportFrom)
        and node.module.split(".")[0] in image_only
        for node in tree.body
    )


@pytest.fixture
def image_versions(monkeypatch):
    """The Neuron packages the serving image has: another neuronx-cc, no transformers-neuronx."""
    image = {"neuronx-cc": "2.17.194.0"}
    real_version = importlib.metadata.version

    def version(name):
        if name in image:
            return image[name]
        if name in COMPILED_WITH:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_a_failing_load_names_the_versions_compiled_with_and_installed(
    model_dir, endpoint_env, image_versions, monkeypatch, contract
):
    def fail(*args):
        raise RuntimeError("NEFF version 2.1 is not supported by this runtime")

    monkeypatch.setattr(neuronx_loading, "_load_neuron_generator", fail)
    with pytest.raises(ModelConfigurationError) as raised:
        load_generator(str(model_dir))

    assert str(raised.value) == (
        f"loading the compiled artifacts from {model_dir} failed"
        " (RuntimeError: NEFF version 2.1 is not supported by this runtime);"
        " they were compiled with neuronx-cc 2.16.372.0, transformers-neuronx 0.13.380,"
        " this image has neuronx-cc 2.17.194.0, transformers-neuronx (not installed)"
    )
    assert list(COMPILED_WITH) == contract["manifest"]["neuronPackages"]


def test_a_manifest_written_before_the_commit_and_version_keys_still_loads(model_dir, endpoint_env, loads, contract):
    marker = model_dir / contract["layout"]["marker"]
    old = json.loads(marker.read_text())
    del old["neuronPackages"], old["modelCommit"]
    marker.write_text(json.dumps(old))
    assert load_generator(str(model_dir)) == "generator"


def test_the_handler_reads_the_versions_as_the_compile_job_does():
    """One helper, in neuronx_common: both programs record versions the same way."""
    import compile_job

    assert compile_job.installed_versions is neuronx_loading.installed_versions is neuronx_common.installed_versions
