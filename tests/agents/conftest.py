"""Shared set-up of the agent tests: makes ``agents_support`` (example agents) importable."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Removes every id a test registers from gymnasium's registry afterwards."""
    before = set(gym.registry)
    yield
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]
