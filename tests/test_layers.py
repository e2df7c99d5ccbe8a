"""envkit's layers (docs/architecture.md) hold: the import-linter contracts of pyproject.toml.

``scripts/lint_imports.py`` runs the contracts on a copy of the tree laid out as installed, so
the top-level folders that ``package-dir`` maps into ``envkit`` (trainers/, rewards/, ...) are
analysed too; the negative controls plant violations there and see the contracts break.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "lint_imports.py"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _config() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _contracts() -> list[dict[str, Any]]:
    return _config()["tool"]["importlinter"]["contracts"]


def _lint(root: Path = ROOT, *, bare: bool = False) -> subprocess.CompletedProcess[str]:
    """The contracts on ``root``: by the script, or by plain ``lint-imports`` run in ``root``."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = [str(lint_imports), "--no-logo"] if bare else [sys.executable, str(SCRIPT)]
    return subprocess.run(
        [*command, "--root", str(root)] if not bare else command,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )


def _copy_tree(dest: Path) -> Path:
    """The checkout's pyproject.toml and the packages' ``.py`` files, in their source layout."""
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")

    def not_python(folder: str, names: list[str]) -> list[str]:
        return [
            n
            for n in names
            if n == "__pycache__" or (Path(folder, n).is_file() and not n.endswith(".py"))
        ]

    for folder in _config()["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(ROOT / folder, dest / folder, ignore=not_python, dirs_exist_ok=True)
    (dest / "scripts").mkdir()
    shutil.copy(SCRIPT, dest / "scripts" / SCRIPT.name)  # the contract types pyproject names
    return dest


@pytest.mark.parametrize("bare", [False, True], ids=["script", "plain-lint-imports"])
def test_every_contract_is_kept(bare: bool) -> None:
    result = _lint(bare=bare)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", out)
    assert kept is not None, out
    assert int(kept.group(1)) == len(_contracts())
    assert "Analyzed" in out


def test_the_layers_contract_places_every_module_and_the_mapped_folders() -> None:
    """Exhaustive: a new envkit module must be put in a layer; the mapped folders are layers."""
    layers = next(c for c in _contracts() if c["id"] == "layers")
    assert layers["exhaustive"] is True and layers["containers"] == ["envkit"]
    names = {n.strip("() ") for layer in layers["layers"] for n in re.split(r"[:|]", layer)}
    for package in _config()["tool"]["setuptools"]["package-dir"]:
        if package != "envkit":
            assert package.removeprefix("envkit.") in names, package


@pytest.mark.parametrize("bare", [False, True], ids=["script", "plain-lint-imports"])
def test_planted_violations_break_the_contracts(tmp_path: Path, bare: bool) -> None:
    """Imports that break each kind of contract, planted in the mapped folders and in envkit."""
    root = _copy_tree(tmp_path)
    (root / "rewards" / "_planted.py").write_text("from envkit.policies import base\n")
    (root / "environments" / "_planted.py").write_text("import envkit.trainers.sequences\n")
    (root / "trainers" / "_planted.py").write_text("from envkit.cli import main\n")
    (root / "envkit" / "toolcalls" / "_planted.py").write_text("import envkit.policies.hf\n")
    (root / "envkit" / "_unplaced.py").write_text('"""A module in no layer."""\n')
    result = _lint(root, bare=bare)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, out
    assert "envkit._unplaced" in out  # exhaustive: not in any layer
    (root / "envkit" / "_unplaced.py").unlink()
    result = _lint(root, bare=bare)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, out
    for chain in (
        "envkit.rewards._planted -> envkit.policies.base",
        "envkit.environments._planted -> envkit.trainers.sequences",
        "envkit.trainers._planted -> envkit.cli.main",
        "envkit.toolcalls._planted -> envkit.policies.hf",
    ):
        assert chain in out, chain
    assert "0 broken" not in out


def test_bad_root_is_a_clear_error(tmp_path: Path) -> None:
    result = _lint(tmp_path)
    assert result.returncode == 2
    assert "has no pyproject.toml" in result.stderr
