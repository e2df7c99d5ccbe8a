"""``envkit sandbox build | doctor | cleanup``: the sandbox image, the setup check, leftovers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Build the sandbox image, check the sandbox setup, remove leftover containers.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


@app.command()
def build(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if the image exists.")
    ] = False,
    dockerfile: Annotated[
        Path | None,
        typer.Option(
            "--dockerfile",
            "-f",
            help="Build this Dockerfile (its folder is the context) instead of the Debian base; "
            "envkit's layer (non-root user, /work) goes on top. It must provide python3.",
        ),
    ] = None,
    tag: Annotated[str, typer.Option(help="Image name to build.")] = "envkit-sandbox:latest",
    mirror: Annotated[
        str | None, typer.Option(help="Debian mirror for debootstrap (default: apt's).")
    ] = None,
    suite: Annotated[str, typer.Option(help="Debian release for debootstrap.")] = "bookworm",
) -> None:
    """Build the sandbox image locally (skipped when it exists; nothing is pulled)."""
    from envkit.sandbox.errors import SandboxError
    from envkit.sandbox.image import build_image

    try:
        result = build_image(
            tag, dockerfile=dockerfile, force=force, mirror=mirror, suite=suite, log=console.print
        )
    except SandboxError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    verb = "built" if result.built else "up to date"
    console.print(f"[green]{result.tag} {verb}[/green] ({result.seconds:.1f}s)")


@app.command()
def doctor(
    image: Annotated[str, typer.Option(help="Image to check.")] = "envkit-sandbox:latest",
    smoke: Annotated[
        bool, typer.Option("--smoke/--no-smoke", help="Start a sandbox and run python3 in it.")
    ] = True,
) -> None:
    """Check Docker, the image, bubblewrap and the build tools; print the fix for each problem."""
    from envkit.sandbox.config import SandboxConfig
    from envkit.sandbox.doctor import run_checks

    checks = run_checks(SandboxConfig(image=image), smoke=smoke)
    table = Table(title="envkit sandbox doctor")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    colors = {"ok": "green", "warn": "yellow", "fail": "red"}
    for c in checks:
        table.add_row(c.name, f"[{colors[c.status]}]{c.status}[/]", c.detail, c.fix)
    console.print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


@app.command()
def cleanup(
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Remove every envkit sandbox container, also those of live processes."
        ),
    ] = False,
) -> None:
    """Remove sandbox containers whose owner process is gone."""
    from envkit.sandbox import reaper
    from envkit.sandbox.docker_client import docker_client
    from envkit.sandbox.errors import SandboxError

    try:
        removed = reaper.reap(docker_client(), everything=all_)
    except SandboxError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    console.print(f"removed {len(removed)} sandbox container(s)")
    for name in removed:
        console.print(f"  {name}")
