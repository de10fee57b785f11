"""The served code's entry: TorchServe imports this module first (contract `endpoint.servedCode`).

It is placed as <model dir>/code/neuronx_code_<hash>.py, beside the folder code/<hash>/ that holds the code the
SageMaker model was made with (the handler script, its modules, neuronx_common.py, contract.json); the endpoint sets
TS_DEFAULT_SERVICE_HANDLER=neuronx_code_<hash>:handle. The text is the same for every hash: the folder is read from
this file's own name, so rewriting it (another deploy of the same code) never changes it.

code/ itself is on PYTHONPATH (the SageMaker toolkit puts it first) and may hold other deploys' files, e.g. an
inference.py that an older library version placed there. So the code's folder goes first on sys.path before the
handler script is imported, and a handler script already imported from anywhere else is refused instead of served.
"""

import sys
from pathlib import Path

ENTRY_MODULE_PREFIX = "neuronx_code_"
"""contract endpoint.servedCode.entryModulePrefix (a runtime test checks they agree)."""
HANDLER_MODULE = "inference"
"""contract endpoint.handlerScript without .py."""


def _code_dir() -> Path:
    here = Path(__file__).resolve()
    if not here.stem.startswith(ENTRY_MODULE_PREFIX) or here.stem == ENTRY_MODULE_PREFIX:
        raise ImportError(f"{here.name} is not named {ENTRY_MODULE_PREFIX}<hash>.py, so it names no served code")
    return here.parent / here.stem[len(ENTRY_MODULE_PREFIX) :]


CODE_DIR = _code_dir()
"""code/<hash>/: the code this entry serves."""

if not (CODE_DIR / f"{HANDLER_MODULE}.py").is_file():
    raise ImportError(f"the served code {CODE_DIR} has no {HANDLER_MODULE}.py: its placement is incomplete")
_loaded = sys.modules.get(HANDLER_MODULE)
if _loaded is not None and Path(getattr(_loaded, "__file__", None) or "").resolve().parent != CODE_DIR:
    raise ImportError(
        f"a module {HANDLER_MODULE} from {getattr(_loaded, '__file__', None)} is loaded already in this process, "
        f"not the served code's {CODE_DIR / (HANDLER_MODULE + '.py')}"
    )
if str(CODE_DIR) in sys.path:
    sys.path.remove(str(CODE_DIR))
sys.path.insert(0, str(CODE_DIR))

from inference import handle  # noqa: E402  after sys.path names the served code

__all__ = ["handle", "CODE_DIR"]
