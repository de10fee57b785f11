"""The served code's entry (served-code/neuronx_served_code.py, contract endpoint.servedCode): placed as
code/neuronx_code_<hash>.py beside code/<hash>/, it serves that folder's code even when code/ itself, first on the
toolkit's PYTHONPATH, holds another deploy's files of the same names."""

import shutil
import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent.parent
ENTRY = RUNTIME / "served-code" / "neuronx_served_code.py"
HASH = "0123456789abcdef"
OTHER_HASH = "fedcba9876543210"


def _serve(model_dir: Path, code_hash: str, probe: str, preload: str = "") -> subprocess.CompletedProcess:
    """A worker's import of the service handler neuronx_code_<code_hash>:handle, as TorchServe 0.11.0's model_loader
    does it (importlib.import_module of the part before ':'), with <model dir>/code first on PYTHONPATH as the toolkit
    sets it; then `probe`. `preload` runs before the import."""
    program = (
        "import importlib, sys\n"
        f"{preload}\n"
        f"entry = importlib.import_module('neuronx_code_{code_hash}')\n"
        "handle = getattr(entry, 'handle')\n"
        f"{probe}\n"
    )
    return subprocess.run(
        [sys.executable, "-B", "-c", program],
        cwd=model_dir, capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "PYTHONPATH": str(model_dir / "code")},
    )


def _place(code: Path, code_hash: str, files: dict[str, str]) -> None:
    """The code placement: the files in code/<hash>/, then the entry as code/neuronx_code_<hash>.py."""
    folder = code / code_hash
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    shutil.copy(ENTRY, code / f"neuronx_code_{code_hash}.py")


def _handler(version: str) -> dict[str, str]:
    return {
        "inference.py": "import helper\n\ndef handle(data, context):\n    return [helper.VERSION]\n",
        "helper.py": f"VERSION = {version!r}\n",
    }


def test_the_entry_serves_its_own_folder_over_an_older_flat_code_dir_and_another_version(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    # What an older library version left directly in code/ (first on PYTHONPATH), and another deploy's folder.
    for name, text in _handler("flat").items():
        (code / name).write_text(text)
    _place(code, OTHER_HASH, _handler("other"))
    _place(code, HASH, _handler("mine"))
    probe = "import inference, helper; print(handle(None, None)[0], Path(inference.__file__).parent.name, Path(helper.__file__).parent.name)"
    result = _serve(tmp_path, HASH, probe, preload="from pathlib import Path")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mine", HASH, HASH]
    other = _serve(tmp_path, OTHER_HASH, "print(handle(None, None)[0])")
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "other"


def test_the_entry_is_one_text_for_every_hash(tmp_path):
    # Rewriting code/neuronx_code_<hash>.py (another deploy of the same code) never changes it: the folder comes from
    # the file's own name.
    assert HASH not in ENTRY.read_text() and "{" + "hash" + "}" not in ENTRY.read_text()
    _place(tmp_path / "code", HASH, _handler("mine"))
    assert (tmp_path / "code" / f"neuronx_code_{HASH}.py").read_bytes() == ENTRY.read_bytes()


def test_an_incomplete_placement_is_refused_at_import_naming_the_folder(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(_handler("flat")["inference.py"])
    shutil.copy(ENTRY, code / f"neuronx_code_{HASH}.py")
    result = _serve(tmp_path, HASH, "print(handle(None, None))")
    assert result.returncode != 0
    assert f"the served code {code / HASH} has no inference.py" in result.stderr


def test_a_handler_module_already_loaded_from_elsewhere_is_refused_not_served(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    for name, text in _handler("flat").items():
        (code / name).write_text(text)
    _place(code, HASH, _handler("mine"))
    result = _serve(tmp_path, HASH, "print(handle(None, None))", preload="import inference")
    assert result.returncode != 0
    assert "is loaded already in this process" in result.stderr


def test_the_library_handler_served_through_the_entry_reads_its_own_contract(tmp_path):
    # The library's real files in code/<hash>/, and an older flat code/ whose contract differs: the handler's modules
    # and neuronx_common.py come from the folder, and so does the contract they read.
    code = tmp_path / "code"
    code.mkdir()
    files = {
        **{path.name: path.read_text() for path in (RUNTIME / "inference").glob("*.py")},
        "neuronx_common.py": (RUNTIME / "common" / "neuronx_common.py").read_text(),
        "contract.json": (RUNTIME / "contract.json").read_text(),
    }
    for name, text in files.items():
        (code / name).write_text(text.replace('"version": 1', '"version": 0') if name == "contract.json" else text)
    _place(code, HASH, files)
    probe = (
        "import inference, neuronx_common, neuronx_loading\n"
        "print(Path(inference.__file__).parent.name, Path(neuronx_common.__file__).parent.name, neuronx_loading.CONTRACT['version'])"
    )
    result = _serve(tmp_path, HASH, probe, preload="from pathlib import Path")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [HASH, HASH, "1"]


def test_the_entry_agrees_with_the_contract(contract):
    served = contract["endpoint"]["servedCode"]
    assert ENTRY.name == served["entryScript"]
    source = ENTRY.read_text()
    assert f'ENTRY_MODULE_PREFIX = "{served["entryModulePrefix"]}"' in source
    assert f'HANDLER_MODULE = "{Path(contract["endpoint"]["handlerScript"]).stem}"' in source
    assert f"from inference import {contract['endpoint']['serviceHandlerFunction']}" in source
