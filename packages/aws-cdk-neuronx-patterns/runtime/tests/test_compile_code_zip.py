"""The compile job's code.zip, unpacked the way the job script unpacks it, runs on its own."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2]
BUILDER = PACKAGE_DIR / "build-tools" / "compile-code-zip.js"


@pytest.fixture()
def unpacked(tmp_path):
    # The build that runs these tests has node (it built the zip); a skip here would let a broken zip pass.
    node = shutil.which("node")
    assert node is not None, "node is needed to build the compile code zip"
    zip_path = tmp_path / "code.zip"
    subprocess.run([node, str(BUILDER), str(zip_path)], check=True, capture_output=True)
    # As the job definition's command does: python3 -m zipfile -e code.zip code
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(zip_path), str(tmp_path / "code")], check=True)
    return tmp_path / "code"


def test_the_entry_point_imports_everything_it_needs_from_the_zip(unpacked):
    # The entry point's folder is the first sys.path entry when the job runs `python3 code/compile/<script>`;
    # nothing of runtime/ outside the zip (tests, conftest) may be needed, and the serving handler is not in it.
    probe = (
        "import sys; sys.path.insert(0, 'code/compile');"
        "import compile_job, neuronx_compile, neuronx_common;"
        "print(neuronx_common.__file__, 'inference' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd=unpacked.parent, check=True, capture_output=True, text=True)
    assert out.stdout.split() == [str(unpacked / "compile" / "neuronx_common.py"), "False"]
    assert (unpacked / "contract.json").is_file()
    assert not (unpacked / "inference").exists()
