"""``envkit check-template MODEL``: is a chat template safe for multi-turn tool training?

Renders a scripted tool episode through the model's chat template (see
``envkit.toolcalls.template_check``) and prints which turns keep the prefix property, which tool
calls round-trip, and what the loss mask covers, with the trainer's own renderer and stop tokens
(``envkit.chat_render``, ``envkit._tokens``). Exits 1 when a check fails, 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

__all__ = ["check_template_command", "load_tokenizer"]

console = Console()
err_console = Console(stderr=True)


def load_tokenizer(spec: str) -> tuple[Any, list[int] | None]:
    """The tokenizer of a bundled model name or a local model directory (``hf:`` optional),
    and the ``eos_token_id`` list of its ``generation_config`` when it has one.

    Only the tokenizer files are read for a directory (no weights are loaded).

    Raises:
        ValueError: ``spec`` is neither a bundled name nor a directory with a tokenizer.
    """
    from envkit.model_spec import parse_model_spec
    from envkit.models import BUNDLED_MODELS

    parsed = parse_model_spec(spec, api=False)
    if parsed.kind == "bundled":
        from envkit.models import load_model

        model, tokenizer = load_model(parsed.name)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        return tokenizer, [eos] if isinstance(eos, int) else eos
    path = Path(parsed.name)
    if parsed.kind != "dir" or not parsed.exists:
        raise ValueError(
            f"{spec!r} is not a bundled model ({', '.join(BUNDLED_MODELS)}) or a local model "
            "directory; pass the folder holding tokenizer_config.json (from save_pretrained)"
        )
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load a tokenizer from {str(path)!r}: {e}") from e
    return tokenizer, _generation_eos(path)


def _generation_eos(path: Path) -> list[int] | None:
    import json

    config = path / "generation_config.json"
    if not config.is_file():
        return None
    eos = json.loads(config.read_text()).get("eos_token_id")
    if isinstance(eos, int):
        return [eos]
    return [e for e in eos if isinstance(e, int)] if isinstance(eos, list) else None


def check_template_command(
    model: Annotated[
        str,
        typer.Argument(
            help="A local model directory (its tokenizer files suffice; 'hf:DIR' works too) or a "
            "bundled name: tiny-random, smollm2-135m."
        ),
    ],
    chat_template: Annotated[
        Path | None,
        typer.Option(
            "--chat-template",
            help="Check this Jinja file instead of the tokenizer's own template.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    tool_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Tool-call format to check (hermes, llama3, mistral, qwen3_coder, glm, "
            "deepseek); default: detected from the template.",
        ),
    ] = None,
    reasoning: Annotated[
        bool | None,
        typer.Option(
            "--reasoning/--no-reasoning",
            help="Write <think> reasoning in the model's turns (default: when the template "
            "mentions </think>).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a chat template for multi-turn tool training: prefix property, tool-call
    round-trips and the loss mask; exit 1 if a check fails."""
    from envkit._tokens import stop_token_ids_for
    from envkit.toolcalls import get_format
    from envkit.toolcalls.template_check import check_template

    try:
        fmt = get_format(tool_format) if tool_format else None
        with console.status(f"loading the tokenizer of {model}..."):
            tokenizer, eos = load_tokenizer(model)
        if chat_template is not None:
            tokenizer.chat_template = chat_template.read_text()
        if fmt is not None and hasattr(fmt, "for_template"):
            fmt = fmt.for_template(tokenizer.chat_template or "")
        # The very stop ids the trainer and HFPolicy use for this model (envkit._tokens).
        stops = stop_token_ids_for(tokenizer, eos)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("rendering the scripted episode", total=4)
            report = check_template(
                tokenizer,
                tool_format=fmt,
                reasoning=reasoning,
                stop_token_ids=stops,
                on_turn=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except ValueError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    _print(report, model)
    if not report.ok:
        raise typer.Exit(1)


def _mark(ok: bool | None) -> str:
    if ok is None:
        return "[dim]-[/dim]"
    return "[green]pass[/green]" if ok else "[red]FAIL[/red]"


def _short(text: str, width: int = 70) -> str:
    shown = text.replace("\n", "\\n")
    return escape(
        shown if len(shown) <= width else shown[: width // 2] + " … " + shown[-width // 2 :]
    )


def _print(report: Any, model: str) -> None:
    how = "detected from the chat template" if report.detected else "no match: Hermes default"
    console.print(
        f"[bold]{escape(model)}[/bold]: tool-call format [bold]{report.format!r}[/bold] ({how}); "
        f"reasoning in the model's turns: {'on' if report.reasoning else 'off'}; "
        f"stop token ids (the trainer's): {report.stop_token_ids}"
    )
    turns = Table(title="Turns of the scripted episode")
    for column in ("turn", "prompt", "sampled", "next prompt extends it", "tool calls", "detail"):
        turns.add_column(column)
    for t in report.turns:
        calls = ", ".join(name for name, _ in t.expected_calls) or "none"
        detail = t.prefix_detail
        if not t.roundtrip_ok:
            detail = f"parsed {t.parsed_calls!r}, expected {t.expected_calls!r}. {detail}"
        turns.add_row(
            str(t.turn),
            str(t.prompt_tokens),
            str(t.sampled_tokens),
            _mark(t.prefix_ok),
            f"{_mark(t.roundtrip_ok)} {escape(calls)}",
            escape(detail),
        )
    console.print(turns)
    if report.spans:
        mask = Table(title="Loss mask of the training sequence")
        for column in ("span", "kind", "tokens", "in loss", "text"):
            mask.add_column(column)
        for i, span in enumerate(report.spans):
            style = "green" if span.in_loss else "dim"
            mask.add_row(
                str(i),
                f"[{style}]{span.kind}[/{style}]",
                str(span.tokens),
                "yes" if span.in_loss else "no",
                _short(span.text),
            )
        console.print(mask)
        if report.rerendered_turns:
            console.print(
                f"[yellow]{report.rerendered_turns} turn(s) re-rendered[/yellow]: their env spans "
                "were located by end-of-turn token, not by prefix"
            )
    for error in report.errors:
        console.print(f"[red]error:[/red] {escape(error)}")
    failed = [
        name
        for name, ok in (
            ("prefix property", report.prefix_ok),
            ("tool-call round-trip", report.roundtrip_ok),
            ("training sequence", not report.errors),
        )
        if not ok
    ]
    if failed:
        console.print(f"[red]FAILED:[/red] {', '.join(failed)}")
    else:
        console.print("[green]all checks passed[/green]")
