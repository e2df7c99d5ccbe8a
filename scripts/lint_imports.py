"""Check envkit's layers: run the import-linter contracts of pyproject.toml on the real tree.

``lint-imports`` alone cannot see ``envkit.trainers``, ``envkit.environments``, ``envkit.rewards``
or ``envkit.sandbox``: they are top-level folders mapped into ``envkit`` by setuptools'
``package-dir``, and import-linter (grimp) finds a package's modules by walking its folder. This
script copies the Python files into a temporary folder laid out as the installed ``envkit`` (the
mapping read from pyproject.toml), puts it first on ``sys.path`` and runs the contracts there.

Usage:
    python scripts/lint_imports.py            # exit 0: every contract kept; 1: broken ones
    python scripts/lint_imports.py --verbose  # also what each contract checked
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "mirror", "package_dirs", "run"]


def _pyproject(root: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    return tomllib.loads((root / "pyproject.toml").read_text())


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """``{package: folder}`` of setuptools' ``package-dir`` in ``root``'s pyproject.toml."""
    mapping = _pyproject(root)["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def mirror(dest: Path, root: Path = ROOT) -> Path:
    """Copies ``root``'s packages' ``.py`` files into ``dest`` as installed (``dest/envkit/...``).

    Returns:
        ``dest``, to put first on ``sys.path``.
    """
    for name, folder in sorted(package_dirs(root).items()):
        target = dest.joinpath(*name.split("."))
        for src in folder.rglob("*.py"):
            rel = src.relative_to(folder)
            if "__pycache__" in rel.parts:
                continue
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dest


def run(root: Path = ROOT, *, config: Path | None = None, verbose: bool = False) -> int:
    """Runs the contracts of ``config`` (default: ``root``'s pyproject.toml) on ``root``'s tree.

    Returns:
        0 when every contract is kept, 1 otherwise (import-linter prints the report).
    """
    from importlinter import cli

    with tempfile.TemporaryDirectory(prefix="envkit-layers-") as tmp:
        mirror(Path(tmp), root)
        saved_path = list(sys.path)
        saved = {k: v for k, v in sys.modules.items() if k == "envkit" or k.startswith("envkit.")}
        sys.path.insert(0, tmp)
        cwd = os.getcwd()
        os.chdir(tmp)  # lint-imports puts the working directory first on sys.path
        for name in saved:
            del sys.modules[name]  # find_spec must find the mirror, not the imported envkit
        try:
            return cli.lint_imports(
                config_filename=str((config or root / "pyproject.toml").resolve()),
                no_cache=True,
                verbose=verbose,
            )
        finally:
            os.chdir(cwd)
            sys.path[:] = saved_path
            for name in [k for k in sys.modules if k == "envkit" or k.startswith("envkit.")]:
                del sys.modules[name]
            sys.modules.update(saved)


def main(argv: list[str]) -> int:
    """``[--root DIR] [--config FILE] [--verbose]``: see the module doc."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this)")
    parser.add_argument("--config", type=Path, help="default: ROOT/pyproject.toml")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not (args.root / "pyproject.toml").is_file():
        parser.error(f"{args.root} has no pyproject.toml: pass the checkout's root with --root")
    return run(args.root.resolve(), config=args.config, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
