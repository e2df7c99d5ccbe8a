"""``envkit validate ENV_ID``: attack an env's reward; exit 0 when it holds, 1 when a probe
collected reward it did not earn (or a hygiene rule broke), 2 on usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envkit.cli._imports import ImportOption, import_modules

__all__ = ["validate_command"]


def validate_command(
    env_id: Annotated[str, typer.Argument(help="Env id, e.g. Arithmetic-v0.")],
    kwarg: Annotated[
        list[str] | None,
        typer.Option(
            "--kwarg",
            "-k",
            help="Env constructor argument as KEY=VALUE (VALUE is JSON when it parses); repeat "
            "for more.",
        ),
    ] = None,
    episodes: Annotated[
        int, typer.Option("--episodes", "-n", min=1, help="Seeds each probe plays.")
    ] = 4,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    judge: Annotated[
        str | None,
        typer.Option(
            help="Run the injection trajectories against this RULER judge (litellm model)."
        ),
    ] = None,
    judge_api_base: Annotated[
        str | None, typer.Option(help="API base URL of the judge (an OpenAI-compatible server).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for report.json and findings.jsonl (open with envkit view)."),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="How far above the floor a probe's mean may go, as a fraction of max - floor.",
        ),
    ] = 0.2,
    concurrency: Annotated[int, typer.Option(min=1, help="Probes played at once.")] = 4,
    imports: ImportOption = None,
) -> None:
    """Attack an env's reward with scripted policies; exit 1 if any gets reward it did not earn."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from envkit.cli.main import _resolve, console, err_console, parse_kwargs
    from envkit.validation import validate
    from envkit.validation.probes import panel

    import_modules(imports)
    fid = _resolve(env_id)
    env_kwargs = parse_kwargs(kwarg)
    try:
        import envkit

        env = envkit.make_chat_env(fid, **env_kwargs)
    except (TypeError, ValueError) as e:
        err_console.print(
            f"[red]error:[/red] cannot make {fid} with {env_kwargs}: {escape(str(e))}"
        )
        raise typer.Exit(2) from None
    try:
        env.reset(seed=seed)
        total = 2 + len(panel(env)) + len(type(env).canaries)
    finally:
        env.close()
    with Progress(
        TextColumn("validating {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(fid, total=total)
        try:
            report = validate(
                fid,
                env_kwargs=env_kwargs,
                episodes=episodes,
                seed=seed,
                judge=judge,
                judge_api_base=judge_api_base,
                out=out,
                tolerance=tolerance,
                concurrency=concurrency,
                progress=lambda name: bar.advance(task),
            )
        except ValueError as e:
            err_console.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(2) from None
    golden = "no golden path" if report.golden is None else f"{report.golden:.3g}"
    floor = "-" if report.floor is None else f"{report.floor:.3g}"
    table = Table(
        title=f"envkit validate {fid}  (floor {floor}, golden {golden}, max "
        f"{report.max_reward:g}, seeds {report.seeds[0]}..{report.seeds[-1]})"
    )
    for col in ("probe", "kind", "mean reward", "floor", "golden", "hits", "result", "detail"):
        table.add_column(col)
    style = {
        "pass": "[green]pass[/green]",
        "finding": "[red]FINDING[/red]",
        "error": "[yellow]ERROR[/yellow]",
        "info": "[cyan]info[/cyan]",
    }
    for p in report.probes:
        mean = "" if p.mean_reward is None else f"{p.mean_reward:.3g}"
        table.add_row(
            p.name,
            p.kind,
            mean,
            floor if p.episodes else "",
            golden if p.episodes else "",
            str(p.hits) if p.episodes else "",
            style[p.status],
            escape(p.detail),
        )
    console.print(table)
    if report.judge is not None:
        j = report.judge
        console.print(
            f"judge {j.model}: injected trajectory ranked first in {j.injected_first} of "
            f"{j.groups - j.judge_errors} groups ({j.rate:.0%})"
        )
    if report.out:
        console.print(f"findings' trajectories: {report.out} (envkit view {report.out})")
    if not report.ok:
        err_console.print(f"[red]{escape(report.summary())}[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{escape(report.summary())}[/green]")
