"""The ``openai_server`` pytest fixture: a fresh ``ScriptedOpenAIServer`` per test.

Enable it in your ``conftest.py`` with ``pytest_plugins = ["envkit.testing.pytest_plugin"]``
(or ``from envkit.testing.pytest_plugin import openai_server``).

Example (a test file)::

    def test_my_env_with_an_api_policy(openai_server):
        openai_server.script("42")
        policy = LiteLLMPolicy("openai/m", api_base=openai_server.url, api_key="sk-test")
        ...
        assert len(openai_server.requests) == 1
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envkit.testing.openai_server import ScriptedOpenAIServer

__all__ = ["openai_server"]


@pytest.fixture
def openai_server() -> Iterator[ScriptedOpenAIServer]:
    """A running ``ScriptedOpenAIServer`` (default responder ``echo``), closed after the test."""
    with ScriptedOpenAIServer() as server:
        yield server
