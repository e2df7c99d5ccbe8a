"""``--import MODULE``: load a user's module first, so the envs, rewards and agents it registers
are visible to the command (``envkit eval My-v0 --import my_envs``).

Every command that takes an env id has the option. A MODULE is a dotted module name, looked up
from the current directory first and then on ``sys.path`` (``my_envs``, ``pkg.envs``), or the
path of a ``.py`` file (``envs/my_envs.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

ImportOption = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        metavar="MODULE",
        help="Import this module first, so the envs (rewards, agents) it registers are "
        "visible: a dotted module name found from the current directory or on sys.path "
        "(my_envs, pkg.envs), or a .py file (envs/my_envs.py); repeat for more.",
        show_default=False,
    ),
]


class ImportFailed(Exception):
    """A module given with ``--import`` could not be imported (the message says why)."""


def import_module_arg(text: str) -> str:
    """Imports one ``--import`` argument and returns the module's name.

    Raises:
        ImportFailed: The module was not found, or raised while it ran.
    """
    text = text.strip()
    if not text:
        raise ImportFailed("--import needs a module name or a .py file, got an empty string")
    if text.endswith(".py") or os.sep in text or "/" in text:
        return _import_file(Path(text))
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        # the `envkit` console script puts its own folder on sys.path, not the working directory
        sys.path.insert(0, str(Path.cwd()))
    try:
        importlib.import_module(text)
    except ModuleNotFoundError as e:
        if e.name is not None and (text == e.name or text.startswith(e.name + ".")):
            raise ImportFailed(
                f"--import {text}: no module named {e.name!r} in {Path.cwd()} or on sys.path; "
                "run from the folder that holds it, pass the file's path (--import "
                "path/to/my_envs.py) or install its package"
            ) from None
        raise ImportFailed(_raised(text, e)) from None
    except Exception as e:
        raise ImportFailed(_raised(text, e)) from None
    return text


def _import_file(path: Path) -> str:
    if not path.is_file():
        raise ImportFailed(
            f"--import {path}: no such file; give an existing .py file or a module name"
        )
    if path.suffix != ".py":
        raise ImportFailed(f"--import {path}: a file must be a Python source file (.py)")
    name = path.stem
    resolved = path.resolve()
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(resolved):
        return name  # already imported (a second --import of the same file)
    if loaded is not None:
        raise ImportFailed(
            f"--import {path}: a module named {name!r} is already loaded from "
            f"{getattr(loaded, '__file__', 'elsewhere')}; rename the file"
        )
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportFailed(f"--import {path}: Python cannot load this file as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickling by reference (Ray workers, spawn) finds it
    sys.path.insert(0, str(resolved.parent))  # and its sibling modules import
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ImportFailed(_raised(str(path), e)) from None
    return name


def _raised(text: str, error: BaseException) -> str:
    trace = "".join(traceback.format_exception(error)).rstrip()
    return f"--import {text} raised {type(error).__name__}: {error}\n{trace}"


def import_modules(modules: list[str] | None) -> list[str]:
    """Imports every ``--import`` argument in order; exits 2 with the reason on a failure.

    Returns:
        The imported modules' names.
    """
    from rich.markup import escape

    from envkit.cli.main import err_console

    names = []
    for text in modules or []:
        try:
            names.append(import_module_arg(text))
        except ImportFailed as e:
            err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None
    return names
