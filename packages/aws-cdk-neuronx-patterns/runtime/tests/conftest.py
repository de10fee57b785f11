"""Shared test setup: no bytecode next to the shipped sources, and the contract as tests see it."""

import json
import sys
from pathlib import Path

import pytest

# compile/ is zipped and inference/ copied as they are: keep __pycache__ out of them.
sys.dont_write_bytecode = True

CONTRACT_PATH = Path(__file__).resolve().parent.parent / "contract.json"


@pytest.fixture(scope="session")
def contract() -> dict:
    return json.loads(CONTRACT_PATH.read_text())
