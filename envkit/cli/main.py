"""The ``envkit`` command line: list, inspect, check and evaluate environments.

Run ``envkit --help`` or ``envkit COMMAND --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import envkit
from envkit._kv import KeyValueError, parse_items
from envkit.cli._imports import ImportOption, import_modules
from envkit.registration import full_id, load_lazy, registered_ids

app = typer.Typer(
    name="envkit",
    help="Gymnasium-style chat environments, rewards and GRPO + LoRA training for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

KwargOption = Annotated[
    list[str] | None,
    typer.Option(
        "--kwarg",
        "-k",
        help="Env constructor argument as KEY=VALUE (VALUE is JSON when it parses, e.g. 2, "
        "true, [1, 2]; else the plain string); repeat for more.",
    ),
]


def parse_kwargs(items: list[str] | None) -> dict[str, Any]:
    """``-k/--kwarg`` items as a dict (rules: ``envkit._kv``, shared by every CLI option)."""
    try:
        return parse_items(items, example="--kwarg max_turns=2")
    except KeyValueError as e:
        raise typer.BadParameter(str(e)) from None


def _resolve(env_id: str) -> str:
    """The full id of a registered env, or exit with gymnasium's error and its suggestions."""
    import gymnasium as gym

    fid = full_id(env_id)
    try:
        envkit.spec(fid)  # also registers a lazy family's ids (envkit/rg-*)
    except gym.error.Error as e:
        err_console.print(f"[red]error:[/red] {e}")
        err_console.print(
            "Run `envkit list` to see the registered environments; an env registered in a "
            "module of yours needs --import MODULE (or --import path/to/file.py)."
        )
        raise typer.Exit(2) from None
    return fid


def _summary_line(entry_point: Any) -> str:
    if not isinstance(entry_point, str):
        doc = getattr(entry_point, "__doc__", None) or ""
    else:
        import importlib

        module, _, attr = entry_point.partition(":")
        try:
            doc = getattr(importlib.import_module(module), attr).__doc__ or ""
        except Exception as e:  # a broken plug-in must not break the listing
            return f"(cannot import: {type(e).__name__}: {e})"
    return doc.strip().splitlines()[0] if doc.strip() else ""


@app.command("list")
def list_envs(
    all_namespaces: Annotated[
        bool, typer.Option("--all", help="List every gymnasium env, not only envkit/ ones.")
    ] = False,
    imports: ImportOption = None,
) -> None:
    """List the registered environments."""
    import gymnasium as gym

    import_modules(imports)
    load_lazy()  # families registered on first use (envkit/rg-* when reasoning-gym is installed)
    table = Table(title="Environments")
    table.add_column("id", style="bold")
    table.add_column("entry point")
    table.add_column("description")
    for env_id in registered_ids(None if all_namespaces else "envkit"):
        ep = gym.registry[env_id].entry_point
        table.add_row(env_id, str(ep), _summary_line(ep))
    console.print(table)


@app.command()
def info(
    env_id: Annotated[str, typer.Argument(help="Env id, e.g. Arithmetic-v0.")],
    imports: ImportOption = None,
) -> None:
    """Show an environment's spec, docs, tools and default reward."""
    import gymnasium as gym

    import_modules(imports)
    fid = _resolve(env_id)
    spec = gym.spec(fid)
    env = envkit.make_chat_env(fid)
    try:
        console.print(f"[bold]{fid}[/bold]  ({spec.entry_point})")
        console.print(f"kwargs: {spec.kwargs}")
        console.print(f"max_turns: {env.max_turns}")
        console.print(f"observation space: {env.observation_space}")
        console.print(f"action space: {env.action_space}")
        console.print(f"default reward: {_default_reward(env)}")
        tools = env.tool_schemas
        console.print(f"tools: {', '.join(t['function']['name'] for t in tools) or 'none'}")
        doc = (type(env).__doc__ or "").strip()
        if doc:
            console.print()
            console.print(doc)
    finally:
        env.close()


def _default_reward(env: Any) -> str:
    from envkit.rewards import default_reward_for

    name = default_reward_for(env)
    return str(name) if name else "the env's own verifiable reward (sum of step rewards)"


@app.command()
def check(
    env_id: Annotated[str, typer.Argument(help="Env id, e.g. Arithmetic-v0.")],
    kwarg: KwargOption = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds to test with.")] = "0,1,2",
    imports: ImportOption = None,
) -> None:
    """Run gymnasium's check_env and envkit's own checks; exit 1 if any fails."""
    from envkit.checks import run_checks

    import_modules(imports)
    fid = _resolve(env_id)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"--seeds must be comma-separated integers, got {seeds!r}"
        ) from None
    with console.status(f"checking {fid}..."):
        results = run_checks(fid, parse_kwargs(kwarg), seed_list)
    table = Table(title=f"envkit check {fid}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for r in results:
        table.add_row(r.name, "[green]pass[/green]" if r.passed else "[red]FAIL[/red]", r.detail)
    console.print(table)
    failed = [r for r in results if not r.passed]
    if failed:
        err_console.print(f"[red]{len(failed)} check(s) failed[/red]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(results)} checks passed[/green]")


@app.command("eval")
def eval_command(
    env_id: Annotated[str, typer.Argument(help="Env id, e.g. Arithmetic-v0.")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A litellm model string (e.g. openai/gpt-4o-mini), a local transformers model "
            "directory (or 'hf:PATH'), a hub id written 'hf:org/name', 'smollm2-135m' (bundled) "
            "or 'tiny-random'.",
        ),
    ],
    num_tasks: Annotated[int, typer.Option("--num-tasks", "-n", min=1, help="Tasks (seeds).")] = 8,
    group_size: Annotated[int, typer.Option("--group-size", "-g", min=1)] = 4,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 16,
    seed: Annotated[int, typer.Option(help="First seed; tasks use seed, seed+1, ...")] = 10_000,
    kwarg: KwargOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the trajectory groups to this JSONL.")
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Base URL of an OpenAI-compatible API.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key of the model's server (default: the provider's env var such as "
            "OPENAI_API_KEY; with --api-base and no key set, the placeholder 'sk-envkit-local').",
            show_default=False,
        ),
    ] = None,
    temperature: Annotated[float, typer.Option(min=0.0)] = 1.0,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per assistant turn.")] = 256,
    episode_timeout: Annotated[float | None, typer.Option(help="Seconds per episode.")] = None,
    pass_threshold: Annotated[
        float, typer.Option(help="An episode passes (for pass@k) at this reward or above.")
    ] = 1.0,
    judge: Annotated[
        str | None,
        typer.Option(help="Also score each group with a RULER-style judge (a litellm model)."),
    ] = None,
    judge_api_base: Annotated[str | None, typer.Option(help="API base URL of the judge.")] = None,
    judge_api_key: Annotated[
        str | None,
        typer.Option(
            help="API key of the judge (default: --api-key when the judge uses the same "
            "--api-base, else as for --api-key).",
            show_default=False,
        ),
    ] = None,
    adapter: Annotated[
        list[Path] | None,
        typer.Option(help="A LoRA adapter dir to compare with the base model (repeatable)."),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            help="Local models: auto (CUDA when available, bf16 there), cpu, cuda or cuda:N."
        ),
    ] = "auto",
    imports: ImportOption = None,
) -> None:
    """Run a policy on N tasks x G samples; print mean reward, pass@k, outcomes and timing."""
    from envkit.cli.evaluate import run_eval

    import_modules(imports)
    fid = _resolve(env_id)
    try:
        run_eval(
            env_id=fid,
            model=model,
            num_tasks=num_tasks,
            group_size=group_size,
            concurrency=concurrency,
            seed=seed,
            env_kwargs=parse_kwargs(kwarg),
            out=out,
            api_base=api_base,
            api_key=api_key,
            temperature=temperature,
            max_tokens=max_tokens,
            episode_timeout=episode_timeout,
            pass_threshold=pass_threshold,
            judge=judge,
            judge_api_base=judge_api_base,
            judge_api_key=judge_api_key,
            adapters=list(adapter or []),
            console=console,
            device=device,
        )
    except (ValueError, FileNotFoundError) as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


from envkit.cli.check_template import check_template_command  # noqa: E402
from envkit.cli.gateway import gateway_command  # noqa: E402
from envkit.cli.init import init_command  # noqa: E402
from envkit.cli.sandbox import app as sandbox_app  # noqa: E402
from envkit.cli.serve import serve_command  # noqa: E402
from envkit.cli.serve_env import serve_env_command  # noqa: E402
from envkit.cli.train import report_command, train_command  # noqa: E402
from envkit.cli.validate import validate_command  # noqa: E402
from envkit.cli.view import view_command  # noqa: E402

app.add_typer(sandbox_app, name="sandbox")
app.command("init")(init_command)
app.command("train")(train_command)
app.command("report")(report_command)
app.command("check-template")(check_template_command)
app.command("view")(view_command)
app.command("serve")(serve_command)
app.command("serve-env")(serve_env_command)
app.command("gateway")(gateway_command)
app.command("validate")(validate_command)


def main() -> None:
    """Entry point of the ``envkit`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
