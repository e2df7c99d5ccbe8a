"""Fixtures of the policy tests: the tiny-random model (`openai_server`: tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny() -> tuple[Any, Any]:
    """The tiny-random model and tokenizer (shared: tests must not modify them)."""
    from envkit.models import load_model

    return load_model("tiny-random")
