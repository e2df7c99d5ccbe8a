"""Shared set-up of the reward tests: the judge's scripted OpenAI-compatible server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit.testing import ScriptedOpenAIServer

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    """A strict scripted server for the judge: an unscripted request gets HTTP 500, and every
    completion reports 100 prompt and 20 completion tokens."""
    with ScriptedOpenAIServer(responder=None, usage=(100, 20)) as srv:
        yield srv
