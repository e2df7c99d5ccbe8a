"""``envkit view``: write a run folder or a trajectories JSONL as one self-contained HTML page.

Mount it on the main app with ``app.command("view")(view_command)``.

Examples::

    envkit eval Arithmetic-v0 --model openai/gpt-4o-mini --out eval.jsonl
    envkit view eval.jsonl                 # -> eval.html, open it in any browser
    envkit view runs/arith                 # -> runs/arith/view.html, with the run's curves
    envkit view runs/arith --steps 50: -o last.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["parse_steps", "view_command"]

console = Console()
err_console = Console(stderr=True)


def parse_steps(text: str | None) -> tuple[int | None, int | None]:
    """``"10:50"``, ``"10:"``, ``":50"`` or ``"7"`` as an inclusive ``(first, last)`` range.

    Example:
        >>> parse_steps("10:"), parse_steps("7"), parse_steps(None)
        ((10, None), (7, 7), (None, None))
    """
    if text is None or not text.strip():
        return (None, None)
    lo, sep, hi = text.partition(":")
    try:
        first = int(lo) if lo.strip() else None
        last = (int(hi) if hi.strip() else None) if sep else first
    except ValueError:
        raise typer.BadParameter(
            f"--steps takes FIRST:LAST (either may be left out) or one step, e.g. 10:50, 10: "
            f"or 7; got {text!r}"
        ) from None
    if first is not None and last is not None and first > last:
        raise typer.BadParameter(f"--steps {text}: the first step is after the last")
    return (first, last)


def view_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A run folder of `envkit train` or a JSONL of trajectory groups "
            "(`envkit eval --out`) or of trajectories.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The HTML file to write (default: RUN_DIR/view.html, or FILE.html next to the "
            "JSONL).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(help="Run folders: only these training steps, e.g. 10:50, 10: or 7."),
    ] = None,
    max_message_chars: Annotated[
        int,
        typer.Option(
            min=0, help="Cut longer messages in the page (the files keep them); 0: keep all."
        ),
    ] = 20_000,
) -> None:
    """Write one self-contained HTML page to look at trajectories, rewards, judge verdicts and a
    run's curves: filter and sort, groups side by side. No server, no network: open it in a
    browser."""
    from envkit.viewer import ViewerError, default_output, load_view, write_html

    step_range = parse_steps(steps)
    target = out if out is not None else default_output(source)
    from envkit.trainers.run_dir import RunDir

    files = RunDir(source).trajectory_files(step_range) if source.is_dir() else [source]
    with Progress(
        TextColumn("[bold]reading[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(str(source), total=max(1, len(files)))

        def on_file(path: Path) -> None:
            progress.update(task, description=path.name, advance=1)

        try:
            view = load_view(
                source, steps=step_range, max_message_chars=max_message_chars, on_file=on_file
            )
        except ViewerError as e:
            err_console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from None
        progress.update(task, description=f"writing {target}")
        try:
            path = write_html(view, target)
        except OSError as e:
            err_console.print(f"[red]error:[/red] cannot write {target}: {e}")
            raise typer.Exit(2) from None
    for warning in view.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
    size_mb = path.stat().st_size / 1e6
    console.print(
        f"wrote {path} ({len(view.trajectories)} trajectories in {len(view.groups)} groups, "
        f"{size_mb:.1f} MB); open {path.resolve().as_uri()} in a browser"
    )
