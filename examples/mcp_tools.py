"""An env whose tools come from an MCP server: ``register_mcp_env`` on a FastMCP server.

Shows: an MCP server written with FastMCP (this same file, run with ``--serve``, is the server:
a small read-only library of documents with ``search`` and ``read`` tools); ``MCPServer``
starting it over stdio, shared by all episodes (``per_episode=False``, as it is read-only);
``register_mcp_env`` making an env of it with a task list and a reward function; the server's
tools offered to the model as OpenAI function schemas; and ``envkit.collect`` running a scripted
policy that searches, reads and answers. With ``--model`` (a litellm model string, plus
``--api-base`` for a local OpenAI-compatible server) a real model plays instead.

Run:
    python examples/mcp_tools.py
    python examples/mcp_tools.py --model openai/gpt-4o-mini
"""

from __future__ import annotations

import sys

DOCS = {
    "rivers": "The Nile is about 6650 km long; the Amazon about 6400 km.",
    "mountains": "Everest is 8849 m high; K2 is 8611 m high.",
    "deserts": "The Sahara covers about 9.2 million km2.",
}


def serve() -> None:
    """The MCP server (stdio): a read-only library with ``search`` and ``read``."""
    from fastmcp import FastMCP

    mcp = FastMCP("library")

    @mcp.tool
    def search(query: str) -> list[str]:
        """Returns the ids of the documents whose text mentions the query (case-insensitive)."""
        return [k for k, text in DOCS.items() if query.lower() in text.lower()]

    @mcp.tool
    def read(doc_id: str) -> str:
        """Returns the text of a document by its id."""
        if doc_id not in DOCS:
            raise ValueError(f"no document {doc_id!r}; search first")
        return DOCS[doc_id]

    mcp.run(show_banner=False, log_level="WARNING")


if __name__ == "__main__" and "--serve" in sys.argv:
    serve()
    raise SystemExit(0)

import argparse  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

import envkit  # noqa: E402
from envkit.environments.mcp import MCPServer, register_mcp_env  # noqa: E402
from envkit.policies import CallablePolicy  # noqa: E402
from envkit.types import Trajectory  # noqa: E402

TASKS = [
    {"prompt": "How high is K2, in metres? Use the library.", "reference": "8611"},
    {"prompt": "How long is the Nile, in km? Use the library.", "reference": "6650"},
]


def answer_contains_reference(trajectory: Trajectory) -> float:
    """1.0 when the final answer contains the reference number."""
    return float(str(trajectory.reference) in (trajectory.messages[-1].content or ""))


def scripted(messages: list[dict[str, Any]], tools: Any) -> Any:
    """Searches for the subject, reads the first hit, answers with the number it found."""
    results = [m["content"] for m in messages if m["role"] == "tool"]
    question = next(m["content"] for m in messages if m["role"] == "user")
    subject = "K2" if "K2" in question else "Nile"
    if not results:
        return {"role": "assistant", "tool_calls": [_call("search", {"query": subject})]}
    if len(results) == 1:
        return {"role": "assistant", "tool_calls": [_call("read", {"doc_id": _first(results[0])})]}
    text = results[-1]
    number = text.split(subject + " is")[1].split()[1 if subject == "Nile" else 0]
    return f"{subject}: {number}"


def _first(result: str) -> str:
    ids = json.loads(result)
    return str(ids[0] if isinstance(ids, list) else ids["result"][0])


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{name}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a litellm model string (default: a scripted policy)")
    parser.add_argument("--api-base", help="base URL of an OpenAI-compatible server")
    args = parser.parse_args(argv)
    server = MCPServer(
        command=[sys.executable, __file__, "--serve"], per_episode=False, stderr="devnull"
    )
    env_id = register_mcp_env(
        "McpLibrary-v0",
        server=server,
        tasks=TASKS,
        reward=answer_contains_reference,
        max_turns=4,
        override=True,
    )
    env = envkit.make(env_id)  # kept open: the shared server lives while an env uses it
    print("tools:", [t["function"]["name"] for t in env.unwrapped.tool_schemas])
    if args.model:
        from envkit.policies import LiteLLMPolicy

        policy: Any = LiteLLMPolicy(args.model, api_base=args.api_base)
    else:
        policy = CallablePolicy(scripted)
    groups = envkit.collect(env_id, policy, seeds=[0, 1, 2, 3], group_size=1, progress=False)
    env.close()  # the last env using the server: it stops now
    for g in groups:
        t = g[0]
        print(f"{t.messages[0].content!r} -> {t.messages[-1].content!r}, reward {t.reward}")
    print("mean reward:", sum(t.reward or 0.0 for g in groups for t in g) / len(groups))


if __name__ == "__main__":
    main()
