"""envkit: Gymnasium-style chat environments, rewards and GRPO + LoRA trainers for agentic RL.

Importing envkit registers the bundled environments (and those of installed plug-ins) in
gymnasium's registry under the ``envkit/`` namespace; heavy dependencies (torch, litellm, docker)
are imported only when used.

Example:
    >>> import envkit
    >>> env = envkit.make("Arithmetic-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs[-1]["role"]
    'user'
"""

from __future__ import annotations

from envkit.env import ChatEnv, Feedback, Task
from envkit.errors import EnvkitError, EpisodeOverError, InfraError, InvalidActionError
from envkit.registration import (
    load_plugins,
    make,
    make_chat_env,
    register,
    registered_ids,
    spec,
)
from envkit.registration import register_bundled as _register_bundled
from envkit.tools import Tool, ToolBox, tool
from envkit.types import (
    Completion,
    GenerationRequest,
    Message,
    ToolCall,
    Trajectory,
    TrajectoryGroup,
    read_jsonl,
    write_jsonl,
)

__version__ = "0.1.0"

__all__ = [
    "AgentEnv",
    "ChatEnv",
    "Completion",
    "EnvkitError",
    "EpisodeOverError",
    "Feedback",
    "GenerationRequest",
    "InfraError",
    "InvalidActionError",
    "Message",
    "Task",
    "Tool",
    "ToolBox",
    "ToolCall",
    "Trajectory",
    "TrajectoryGroup",
    "collect",
    "load_plugins",
    "make",
    "make_chat_env",
    "read_jsonl",
    "register",
    "register_agent",
    "registered_ids",
    "spec",
    "tool",
    "validate",
    "write_jsonl",
]

_register_bundled()
load_plugins()


def __getattr__(name: str) -> object:
    # Lazy attributes: keep `import envkit` light.
    if name == "collect":
        from envkit.rollout import collect

        return collect
    if name == "validate":
        # envkit.validation is a tool for people (the top layer): imported by name, so that
        # modules of lower layers that import envkit do not depend on it.
        import importlib

        return importlib.import_module("envkit.validation").validate
    if name in ("AgentEnv", "register_agent"):
        from envkit.environments import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'envkit' has no attribute {name!r}")
