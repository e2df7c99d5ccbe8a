"""``envkit init NAME``: a new installable envkit project (env, reward, tasks, tests, README).

Mount it on the main app with ``app.command("init")(init_command)``.

Examples::

    envkit init word-golf                      # the chat template, in ./word-golf
    envkit init stock-room --template tools --dir ~/src/stock-room
    envkit init py-golf --template coding      # needs Docker for its sandbox
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["init_command"]

console = Console()
err_console = Console(stderr=True)


def _template_help() -> str:
    from envkit.scaffold import TEMPLATES

    return "; ".join(f"{name}: {about}" for name, about in TEMPLATES.items()) + "."


def init_command(
    name: Annotated[
        str,
        typer.Argument(
            help="The project's name, e.g. word-golf: the pip distribution name; with '-' as "
            "'_' the Python package (word_golf); CamelCased the env id (WordGolf-v0).",
            show_default=False,
        ),
    ],
    template: Annotated[
        str, typer.Option("--template", "-t", help=f"What to start from. {_template_help()}")
    ] = "chat",
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            "-d",
            help="Where to write the project (default: ./NAME); must be new or empty.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a new envkit project: the env in one file, a registered reward, tasks, tests
    (envkit check included), a pyproject.toml that registers the env, and a README."""
    from envkit.scaffold import InvalidNameError, ScaffoldError, scaffold

    try:
        with console.status(f"writing {name} from the {template} template..."):
            result = scaffold(name, template=template, directory=directory)
    except (InvalidNameError, ScaffoldError) as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    n = result.names
    console.print(
        f"[green]created[/green] {result.directory} ({len(result.files)} files): "
        f"env envkit/{n.env_id} ({n.package}/env.py), reward {n.reward} ({n.package}/rewards.py)"
    )
    where = result.directory.resolve()
    with contextlib.suppress(ValueError):
        where = where.relative_to(Path.cwd())
    steps = [
        f"cd {where}",
        'pip install -e ".[dev]"',
        f"envkit check {n.env_id}",
        "pytest",
        f"envkit train {n.env_id} --model tiny-random --steps 1",
    ]
    if template == "coding":
        steps.append("(the coding env runs code in Docker: `envkit sandbox doctor` checks it)")
    console.print("next:")
    for step in steps:
        console.print(f"  {step}", markup=False, highlight=False)
