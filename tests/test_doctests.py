"""Every docstring example in the package runs and shows what it claims.

Each module's examples must all run (none skipped) and pass; the package as a whole must hold at
least ``MIN_EXAMPLES`` of them, so a runner that silently finds nothing cannot pass.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

# Examples in these modules need the Docker daemon and the sandbox image.
DOCKER_MODULES = (
    "envkit.sandbox",
    "envkit.environments.python_",
    "envkit.environments._sandboxed",
    "envkit.rewards.verifiable.code",
)
# Examples in these modules train or load a (tiny-random) model: seconds each.
SLOW_MODULES = ("envkit.trainers.grpo",)

# The top-level folders mapped into the package (walk_packages does not see them from envkit/).
ROOTS = ("envkit", "envkit.environments", "envkit.rewards", "envkit.trainers", "envkit.sandbox")

# The package holds about 385 docstring examples; far fewer means the finder lost some.
MIN_EXAMPLES = 350

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


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
        marks = []
        if name.startswith(DOCKER_MODULES):
            marks.append(pytest.mark.docker)
        if name.startswith(SLOW_MODULES):
            marks.append(pytest.mark.slow)
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def _examples(module: ModuleType) -> list[tuple[str, doctest.Example]]:
    """(docstring name, example) for every example doctest finds in ``module``."""
    tests = doctest.DocTestFinder().find(module)
    return [(t.name, e) for t in tests for e in t.examples]


def _skipped(examples: list[tuple[str, doctest.Example]]) -> list[str]:
    return [
        f"{name}: {e.source.strip()}" for name, e in examples if e.options.get(doctest.SKIP, False)
    ]


@pytest.mark.parametrize("module_name", _params())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    examples = _examples(module)
    assert not _skipped(examples), "run the example under a `docker`/`slow` marker, not +SKIP"
    result = doctest.testmod(module, optionflags=OPTIONS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
    assert result.attempted == len(examples), (
        f"{module_name}: {len(examples)} examples found, {result.attempted} run"
    )


def test_the_package_has_examples_and_none_is_skipped() -> None:
    found: dict[str, int] = {}
    skipped: list[str] = []
    for name in _modules():
        examples = _examples(importlib.import_module(name))
        found[name] = len(examples)
        skipped += _skipped(examples)
    assert not skipped, f"skipped docstring examples (mark the module docker/slow): {skipped}"
    assert sum(found.values()) >= MIN_EXAMPLES, found
    # The modules users meet first each show how they are used.
    for name in ("envkit", "envkit.env", "envkit.rollout", "envkit.rewards", "envkit.sandbox"):
        assert found[name] > 0, f"{name} has no docstring example"
