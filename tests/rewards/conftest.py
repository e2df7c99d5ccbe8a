"""Shared set-up of the reward tests: the scripted OpenAI-compatible server and test groups."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from judge_server import OpenAIServer  # noqa: E402


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    """A fresh scripted OpenAI-compatible server on 127.0.0.1 (see ``judge_server``)."""
    srv = OpenAIServer()
    try:
        yield srv
    finally:
        srv.close()
