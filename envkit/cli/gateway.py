"""``envkit gateway``: the capture gateway as a standalone OpenAI-compatible server.

Mount it on the main app with ``app.command("gateway")(gateway_command)``. The standalone
gateway opens a session on the first call to a new session id (``auto_sessions``), so a client
needs only a base URL such as ``http://127.0.0.1:8100/s/my-run-1/v1``; each session's calls are
recorded in ``<log-dir>/<session>.jsonl``. See docs/agents.md.

Examples::

    envkit gateway --model tiny-random --port 8100
    envkit gateway --model smollm2-135m --sampling client --log-dir runs/capture
    envkit gateway --model Qwen/Qwen3-0.6B --upstream http://127.0.0.1:8000   # vLLM / envkit serve
"""

from __future__ import annotations

import signal
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["gateway_command", "make_gateway"]

err_console = Console(stderr=True)


class SamplingChoice(str, Enum):
    policy = "policy"
    client = "client"


def make_gateway(
    model: str,
    *,
    upstream: str | None = None,
    upstream_model: str | None = None,
    served_model_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    log_dir: str | Path | None = None,
    sampling: str = "policy",
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    seed: int | None = None,
    device: str = "auto",
    max_batch_size: int = 32,
    auto_sessions: bool = True,
) -> Any:
    """The ``Gateway`` that ``envkit gateway`` runs (not started).

    Without ``upstream`` the model is loaded in process (``HFPolicy``); with it, ``model`` names
    the tokenizer (and, unless ``upstream_model`` is given, the served model) of an
    ``envkit serve`` or vLLM server sampled through ``ServerPolicy``.

    Raises:
        ValueError: a bad setting (``sampling="client"`` with an upstream server, ...).
        OSError: the model or tokenizer cannot be loaded.
    """
    from envkit.gateway.server import Gateway

    policy: Any
    if upstream is None:
        from envkit.policies.hf import HFPolicy

        policy = HFPolicy.from_pretrained(
            model,
            device=device,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            max_batch_size=max_batch_size,
        )
    else:
        from envkit.policies.server import ServerPolicy

        policy = ServerPolicy(
            upstream,
            upstream_model or model,
            tokenizer=model,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            max_concurrency=max(64, max_batch_size),
        )
    return Gateway(
        policy,
        served_model_name=served_model_name or model,
        host=host,
        port=port,
        log_dir=log_dir,
        sampling=sampling,  # type: ignore[arg-type]
        auto_sessions=auto_sessions,
    )


def gateway_command(
    model: Annotated[
        str,
        typer.Option(
            help="'tiny-random', 'smollm2-135m' (bundled), a local transformers model directory "
            "or a hub id in the local cache. With --upstream: the server's model (its tokenizer "
            "renders the prompts).",
            show_default=False,
        ),
    ],
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Sample from this OpenAI-compatible server with token ids (envkit serve, vLLM), "
            "e.g. http://127.0.0.1:8000, instead of loading the model in this process.",
        ),
    ] = None,
    upstream_model: Annotated[
        str | None,
        typer.Option(help="The model name the --upstream server serves (default: --model)."),
    ] = None,
    served_model_name: Annotated[
        str | None,
        typer.Option(help="The model name clients send (default: --model as given)."),
    ] = None,
    host: Annotated[
        str,
        typer.Option(help="Interface to listen on (the gateway has no authentication)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 8100,
    log_dir: Annotated[
        Path,
        typer.Option(help="Where each session's calls go, as <log-dir>/<session>.jsonl."),
    ] = Path("gateway-logs"),
    sampling: Annotated[
        SamplingChoice,
        typer.Option(
            help="policy: the model's own temperature/top-p apply and client max_tokens is "
            "capped at --max-new-tokens (what training needs); client: the client's "
            "temperature/top_p/max_tokens/seed apply (in-process model only).",
        ),
    ] = SamplingChoice.policy,
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="Most tokens per answer (policy sampling).")
    ] = 256,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="Sampling temperature (policy sampling; 0: greedy).")
    ] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling.")] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when available), cpu, cuda or cuda:N (in process).")
    ] = "auto",
    max_batch_size: Annotated[
        int, typer.Option(min=1, help="Most concurrent calls sampled in one batch.")
    ] = 32,
) -> None:
    """Serve an OpenAI-compatible API that records every call, per session (docs/agents.md).

    Point a client's base_url at http://HOST:PORT/s/<session>/v1 (any new session id opens a
    session): POST /chat/completions (streaming, tools, logprobs), POST /responses, GET
    /models. Each call's prompt and sampled token ids, log-probabilities, tool calls and timing
    are appended to <log-dir>/<session>.jsonl before the answer is sent.
    """
    try:
        gateway = make_gateway(
            model,
            upstream=upstream,
            upstream_model=upstream_model,
            served_model_name=served_model_name,
            host=host,
            port=port,
            log_dir=log_dir,
            sampling=sampling.value,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            device=device,
            max_batch_size=max_batch_size,
        )
        gateway.start()
    except (ValueError, OSError, RuntimeError) as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    name = gateway.served_model_name
    source = upstream or "in process"
    err_console.print(
        f"envkit gateway: {name} ({source}; sampling: {sampling.value}) on {gateway.url}\n"
        f"  base URL of a session: {gateway.url}/s/<session>/v1 (a new session id opens a "
        "session)\n"
        f'  e.g. OpenAI(base_url="{gateway.url}/s/run-1/v1", api_key="x"), model="{name}"\n'
        f"  records: {gateway.log_dir}/<session>.jsonl"
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        gateway.close()
