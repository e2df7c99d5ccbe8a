"""Check envkit's layers: the import-linter contracts of pyproject.toml, on the installed layout.

import-linter (grimp) finds a package's modules by walking its folder, and ``envkit/`` does not
contain ``trainers/``, ``environments/``, ``rewards/`` or ``sandbox/``: setuptools' ``package-dir``
maps those top-level folders into ``envkit``. So the contracts in pyproject.toml use two contract
types defined here, ``envkit_layers`` and ``envkit_forbidden``: import-linter's own ``layers`` and
``forbidden`` contracts, checked on a graph built from a temporary copy of the ``.py`` files laid
out as installed (the mapping read from pyproject.toml). Both ways of running them work:

Usage:
    lint-imports                              # from the checkout's root (pyproject.toml names
                                              # this module, importable from there)
    python scripts/lint_imports.py            # from anywhere; exit 0: every contract kept
    python scripts/lint_imports.py --verbose  # also what each contract checked
    python scripts/lint_imports.py --root DIR # another checkout (the tests plant violations)
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract

ROOT = Path(__file__).resolve().parent.parent

# The checkout whose layout the contracts check: set by run(); plain lint-imports: the working
# directory (it must be the checkout's root, where pyproject.toml is).
ROOT_VARIABLE = "ENVKIT_LINT_ROOT"

__all__ = [
    "ROOT",
    "InstalledForbiddenContract",
    "InstalledLayersContract",
    "installed_graph",
    "mirror",
    "package_dirs",
    "run",
]


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


_GRAPHS: dict[Path, Any] = {}


def installed_graph(root: Path) -> Any:
    """The grimp import graph of ``root``'s packages laid out as installed (built once per root)."""
    root = root.resolve()
    if root in _GRAPHS:
        return _GRAPHS[root]
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"{root} has no pyproject.toml: run lint-imports from the checkout's root, or "
            "python scripts/lint_imports.py --root CHECKOUT"
        )
    import grimp

    with tempfile.TemporaryDirectory(prefix="envkit-layers-") as tmp:
        mirror(Path(tmp), root)
        saved_path = list(sys.path)
        saved = {k: v for k, v in sys.modules.items() if k == "envkit" or k.startswith("envkit.")}
        for name in saved:
            del sys.modules[name]  # find_spec must find the copy, not an imported envkit
        sys.path.insert(0, tmp)
        try:
            graph = grimp.build_graph("envkit", include_external_packages=False, cache_dir=None)
        finally:
            sys.path[:] = saved_path
            for name in [k for k in sys.modules if k == "envkit" or k.startswith("envkit.")]:
                del sys.modules[name]
            sys.modules.update(saved)
    _GRAPHS[root] = graph
    return graph


def _root() -> Path:
    return Path(os.environ.get(ROOT_VARIABLE) or os.getcwd())


class _OnInstalledLayout:
    """Checks the contract on the installed layout's graph instead of import-linter's own."""

    def check(self, graph: Any, verbose: bool) -> Any:
        return super().check(copy.deepcopy(installed_graph(_root())), verbose)  # type: ignore[misc]


class InstalledLayersContract(_OnInstalledLayout, LayersContract):
    """import-linter's ``layers`` contract on the installed layout (type ``envkit_layers``)."""


class InstalledForbiddenContract(_OnInstalledLayout, ForbiddenContract):
    """import-linter's ``forbidden`` contract on the installed layout (``envkit_forbidden``)."""


def run(root: Path = ROOT, *, config: Path | None = None, verbose: bool = False) -> int:
    """Runs the contracts of ``config`` (default: ``root``'s pyproject.toml) on ``root``'s tree.

    Returns:
        0 when every contract is kept, 1 otherwise (import-linter prints the report).
    """
    from importlinter import cli

    # pyproject.toml names the contract types as ``scripts.lint_imports.*``: importable from
    # this checkout's root whatever the working directory and the checked root are.
    checkout = str(Path(__file__).resolve().parent.parent)
    saved_path = list(sys.path)
    saved_root = os.environ.get(ROOT_VARIABLE)
    sys.path.insert(0, checkout)
    os.environ[ROOT_VARIABLE] = str(root)
    try:
        return cli.lint_imports(
            config_filename=str((config or root / "pyproject.toml").resolve()),
            no_cache=True,
            verbose=verbose,
        )
    finally:
        sys.path[:] = saved_path
        if saved_root is None:
            os.environ.pop(ROOT_VARIABLE, None)
        else:
            os.environ[ROOT_VARIABLE] = saved_root


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
