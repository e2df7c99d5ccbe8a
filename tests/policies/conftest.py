"""Fixtures of the policy tests: a local OpenAI-compatible server and the tiny-random model."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from openai_server import OpenAIServer  # noqa: E402


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """An OpenAI chat-completions server on 127.0.0.1 (a free port), stopped afterwards."""
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny() -> tuple[Any, Any]:
    """The tiny-random model and tokenizer (shared: tests must not modify them)."""
    from envkit.models import load_model

    return load_model("tiny-random")
