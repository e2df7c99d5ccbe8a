"""``envkit serve MODEL``: vLLM's OpenAI-compatible endpoints over a local transformers model.

Mount it on the main app with ``app.command("serve")(serve_command)``. See docs/serving.md.

Examples::

    envkit serve tiny-random --port 8000
    envkit serve smollm2-135m --adapter step1=runs/arith/adapter --max-batch-size 16
    curl localhost:8000/v1/models
"""

from __future__ import annotations

import signal
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["parse_adapters", "serve_command"]

err_console = Console(stderr=True)


def parse_adapters(items: list[str] | None) -> dict[str, str]:
    """``--adapter NAME=PATH`` items as ``{name: path}``.

    Example:
        >>> parse_adapters(["a=/tmp/x", "b=rel/y"])
        {'a': '/tmp/x', 'b': 'rel/y'}
    """
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise typer.BadParameter(
                f"--adapter takes NAME=PATH, e.g. step1=runs/x/adapter; got {item!r}"
            )
        if name in out:
            raise typer.BadParameter(f"--adapter {name!r} is given twice")
        out[name.strip()] = path.strip()
    return out


def serve_command(
    model: Annotated[
        str,
        typer.Argument(
            help="'tiny-random', 'smollm2-135m' (bundled), a local transformers model directory "
            "(or 'hf:PATH') or a hub id in the local cache.",
            show_default=False,
        ),
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 8000,
    served_model_name: Annotated[
        str | None,
        typer.Option(help="The name requests use in 'model' (default: MODEL as given)."),
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(
            help="A LoRA adapter to load at start as NAME=PATH (a peft adapter directory); "
            'requests pick it with "model": NAME. Repeatable. More can be loaded at run time '
            "with POST /v1/load_lora_adapter.",
        ),
    ] = None,
    max_batch_size: Annotated[
        int, typer.Option(min=1, help="Most concurrent requests sampled in one batch.")
    ] = 32,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when available, bf16 there), cpu, cuda or cuda:N.")
    ] = "auto",
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of sampling for requests without their own 'seed'."),
    ] = None,
    log_requests: Annotated[
        bool, typer.Option(help="Print one line per HTTP request to stderr.")
    ] = False,
    max_lora_rank: Annotated[
        int,
        typer.Option(
            help="Largest LoRA rank of an adapter, as vLLM's --max-lora-rank (1, 8, 16, 32, 64, "
            "128, 256, 320 or 512); adapters vLLM would refuse are refused at load."
        ),
    ] = 16,
) -> None:
    """Serve a local model with vLLM's OpenAI-compatible API (completions, chat, runtime LoRA).

    Endpoints: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions
    (logprobs, return_tokens_as_token_ids, return_token_ids, tool calls parsed), POST
    /v1/load_lora_adapter, POST /v1/unload_lora_adapter, GET /envkit/stats. Concurrent requests
    are batched. A CPU/test stand-in for `vllm serve`, not a replacement (docs/serving.md).
    """
    from envkit.policies.hf import HFPolicy
    from envkit.serving.app import MAX_LORA_RANKS, InferenceServer, check_adapter

    adapters = parse_adapters(adapter)
    if max_lora_rank not in MAX_LORA_RANKS:
        raise typer.BadParameter(f"--max-lora-rank must be one of {MAX_LORA_RANKS}")
    try:  # load_model reads the model string (envkit.model_spec)
        policy = HFPolicy.from_pretrained(
            model, device=device, seed=seed, max_batch_size=max_batch_size
        )
        for adapter_name, path in adapters.items():
            check_adapter(path, policy.model, max_lora_rank)
            policy.load_adapter(path, adapter_name)
        server = InferenceServer(
            policy,
            served_model_name=served_model_name or model,
            host=host,
            port=port,
            max_batch_size=max_batch_size,
            log_requests=log_requests,
            max_lora_rank=max_lora_rank,
        )
    except (ValueError, OSError, RuntimeError) as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    bound_host, bound_port = server.address
    runtime = policy.runtime
    err_console.print(
        f"envkit serve: {served_model_name or model} on http://{bound_host}:{bound_port} "
        f"({runtime['device']}, {runtime['dtype']}; adapters: {', '.join(adapters) or 'none'})"
    )
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
