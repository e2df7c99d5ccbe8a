"""Every docstring example in the package runs and shows what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

# Examples in these modules need the Docker daemon and the sandbox image.
DOCKER_MODULES = ("envkit.sandbox", "envkit.environments.python_", "envkit.environments._sandboxed")


# The top-level folders mapped into the package (walk_packages does not see them from envkit/).
ROOTS = ("envkit", "envkit.environments", "envkit.rewards", "envkit.trainers", "envkit.sandbox")


def _modules() -> list[str]:
    names = set(ROOTS)
    for root in ROOTS:
        package = importlib.import_module(root)
        for info in pkgutil.walk_packages(package.__path__, f"{root}."):
            names.add(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


def _params() -> list[object]:
    out = []
    for name in _modules():
        marks = [pytest.mark.docker] if name.startswith(DOCKER_MODULES) else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("module_name", _params())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
