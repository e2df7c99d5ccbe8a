"""Packaging: a normal wheel maps the top-level folders into ``envkit.*``; the editable install
works; importing envkit stays light."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from core_support import run_python

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from the `dev` extra (`tomli; python_version < "3.11"`)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
MAPPED = {pkg: folder for pkg, folder in PACKAGE_DIR.items() if pkg != "envkit"}
HEAVY = ["torch", "transformers", "litellm", "docker", "trl", "peft", "accelerate", "openai"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A normal (non-editable) wheel built from a copy of the source tree."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".envkit",
            ".venv",
            "runs",
            ".pytest_cache",
            ".ruff_cache",
            "tests",
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            str(src),
            "-w",
            str(root / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = (root / "dist").glob("envkit_rl-*.whl")
    return whl


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_wheel_has_only_the_envkit_package(wheel_names: set[str]) -> None:
    tops = {n.split("/")[0] for n in wheel_names}
    assert tops == {"envkit", "envkit_rl-0.1.0.dist-info"}, sorted(tops)
    for folder in MAPPED.values():
        assert not any(n.startswith(f"{folder}/") for n in wheel_names), folder


@pytest.mark.parametrize("pkg", sorted(MAPPED), ids=str)
def test_wheel_maps_each_folder_into_envkit(wheel_names: set[str], pkg: str) -> None:
    prefix = pkg.replace(".", "/") + "/"
    assert f"{prefix}__init__.py" in wheel_names, f"{pkg} is missing from the wheel"


@pytest.mark.parametrize("pkg", sorted(PACKAGE_DIR), ids=str)
def test_wheel_has_every_source_file(wheel_names: set[str], pkg: str) -> None:
    """Every .py of a mapped folder (and its declared package data) ends up in the wheel.

    A sub-folder missing from ``[tool.setuptools] packages`` would silently be left out.
    """
    folder = REPO / PACKAGE_DIR[pkg]
    prefix = pkg.replace(".", "/")
    data_globs = PYPROJECT["tool"]["setuptools"].get("package-data", {}).get(pkg, [])
    missing = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if not path.is_file() or "__pycache__" in rel:
            continue
        if pkg == "envkit" and rel.split("/")[0] in {
            "environments",
            "rewards",
            "trainers",
            "sandbox",
        }:
            continue
        wanted = path.suffix == ".py" or any(fnmatch.fnmatch(rel, g) for g in data_globs)
        if wanted and f"{prefix}/{rel}" not in wheel_names:
            missing.append(rel)
    assert missing == [], (
        f"files of {PACKAGE_DIR[pkg]}/ not in the wheel; list their packages in pyproject"
    )


def test_wheel_install_works_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    packages = [p for p, folder in MAPPED.items() if (REPO / folder / "__init__.py").exists()]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = run_python(
        """
        import importlib, importlib.util, json
        import envkit
        files = {p: importlib.import_module(p).__file__ for p in PACKAGES}
        env = envkit.make("Arithmetic-v0", operators="+", max_turns=1)
        obs, _ = env.reset(seed=0)
        print(json.dumps({
            "files": files,
            "top_level": [n for n in ("environments", "rewards", "sandbox", "trainers")
                          if importlib.util.find_spec(n) is not None],
            "prompt": obs[-1]["content"],
        }))
        """.replace("PACKAGES", json.dumps(["envkit", *packages])),
        cwd=tmp_path,
        pythonpath=[site],
    )
    assert "envkit.environments" in out["files"]
    for pkg, file in out["files"].items():
        assert file.startswith(str(site)), f"{pkg} imported from {file}, not from the wheel"
    assert out["top_level"] == []
    assert out["prompt"].startswith("What is ")


def test_editable_install_maps_the_folders(tmp_path: Path) -> None:
    packages = [p for p, folder in MAPPED.items() if (REPO / folder / "__init__.py").exists()]
    out = run_python(
        """
        import importlib, importlib.util, json
        files = {p: importlib.import_module(p).__file__ for p in PACKAGES}
        print(json.dumps({
            "files": files,
            "top_level": [n for n in ("environments", "rewards", "sandbox", "trainers")
                          if importlib.util.find_spec(n) is not None],
        }))
        """.replace("PACKAGES", json.dumps(["envkit", *packages])),
        cwd=tmp_path,
    )
    assert "envkit.environments" in out["files"]
    for pkg, file in out["files"].items():
        assert Path(file).resolve() == (REPO / PACKAGE_DIR[pkg] / "__init__.py").resolve(), pkg
    assert out["top_level"] == []


def test_import_envkit_stays_light(tmp_path: Path) -> None:
    """Importing envkit, making an env and running a scripted rollout loads no heavy module."""
    out = run_python(
        """
        import json, sys
        import envkit
        after_import = [m for m in HEAVY if m in sys.modules]
        from envkit.policies import CallablePolicy
        groups = envkit.collect("Arithmetic-v0", CallablePolicy(lambda m, t: "1"), seeds=[0, 1],
                                progress=False)
        import envkit.cli.main
        print(json.dumps({
            "after_import": after_import,
            "after_rollout": [m for m in HEAVY if m in sys.modules],
            "episodes": sum(len(g) for g in groups),
        }))
        """.replace("HEAVY", json.dumps(HEAVY)),
        cwd=tmp_path,
    )
    assert out["after_import"] == []
    assert out["after_rollout"] == []
    assert out["episodes"] == 2
