"""``envkit serve-env ENV_ID``: serve an envkit env over OpenEnv's protocol.

Mount it on the main app with ``app.command("serve-env")(serve_env_command)``. The server is
openenv-core's own (``envkit.serving.openenv_server``), so OpenEnv clients (``GenericEnvClient``,
``EnvClient`` subclasses, ``envkit.environments.openenv.OpenEnvChatEnv``) play it.

Examples::

    envkit serve-env GuessNumber-v0 --port 8000
    envkit serve-env PythonTools-v0 -k sandbox=local --max-sessions 4
    envkit serve-env My-v0 --import my_envs
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from envkit.cli._imports import ImportOption, import_modules

__all__ = ["serve_env_command"]

err_console = Console(stderr=True)


def serve_env_command(
    env_id: Annotated[
        str,
        typer.Argument(
            help="A registered envkit env id (see `envkit list`), e.g. GuessNumber-v0.",
            show_default=False,
        ),
    ],
    kwarg: Annotated[
        list[str] | None,
        typer.Option(
            "--kwarg",
            "-k",
            help="Env constructor argument as KEY=VALUE (VALUE is JSON when it parses); repeat "
            "for more. Every session's env is built with them.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 8000,
    max_sessions: Annotated[
        int,
        typer.Option(
            min=1, help="Most concurrent OpenEnv sessions (one env each); more are refused."
        ),
    ] = 8,
    session_timeout: Annotated[
        float | None,
        typer.Option(help="Close a session idle for this many seconds (default: never)."),
    ] = None,
    import_: ImportOption = None,
) -> None:
    r"""Serve an envkit env to OpenEnv clients (openenv-core's HTTP + WebSocket server).

    Endpoints (OpenEnv's): WS /ws (one env per session: reset, step, state, close), POST /reset,
    POST /step, GET /state, GET /schema, GET /metadata, GET /health. The action is the
    assistant turn {content, tool_calls}; the observation is the conversation {messages, tools,
    truncated, info} with reward and done. A session's env (and its sandbox) is closed when its
    client disconnects. Needs openenv-core: pip install "envkit-rl\[openenv]".
    """
    import gymnasium as gym
    from rich.markup import escape

    from envkit.cli.main import parse_kwargs

    import_modules(import_)
    kwargs = parse_kwargs(kwarg)
    try:
        from envkit.serving.openenv_server import build_app
    except ImportError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    try:
        app = build_app(env_id, kwargs, max_sessions=max_sessions, session_timeout=session_timeout)
    except gym.error.Error as e:
        err_console.print(f"[red]error:[/red] {e}")
        err_console.print("Run `envkit list` to see the registered environments.")
        raise typer.Exit(2) from None
    import uvicorn

    err_console.print(f"serving {env_id} over OpenEnv on http://{host}:{port} (ws /ws)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
