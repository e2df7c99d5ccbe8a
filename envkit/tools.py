"""Tools: typed Python functions exposed to the model as OpenAI function-calling schemas.

``@tool`` reads a function's signature, type hints and Google-style docstring, builds a pydantic
model that validates the arguments, and the OpenAI schema the model sees. ``ToolBox`` dispatches
the tool calls of an assistant turn: several calls of one turn run concurrently, each with a
timeout, and every failure (unknown tool, malformed JSON, invalid arguments, an exception in the
tool, a timeout) becomes a tool message that tells the model what went wrong.

Example:
    >>> from envkit.tools import tool, ToolBox
    >>> @tool
    ... def add(a: int, b: int) -> int:
    ...     '''Adds two integers.
    ...
    ...     Args:
    ...         a: The first addend.
    ...         b: The second addend.
    ...     '''
    ...     return a + b
    >>> add.schema["function"]["parameters"]["required"]
    ['a', 'b']
    >>> from envkit.types import ToolCall
    >>> box = ToolBox([add])
    >>> msgs, stats = box.call_sync([ToolCall.create("add", {"a": 2, "b": 3}, id="c1")])
    >>> msgs[0].content, stats.errors
    ('5', 0)
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from envkit._async import run_sync, to_thread
from envkit.errors import InfraError
from envkit.types import Message, ToolCall

__all__ = ["Tool", "ToolBox", "ToolCallStats", "parse_arguments", "tool"]

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def parse_arguments(arguments: str | dict[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as a dict: a JSON object string is parsed ("" means ``{}``).

    Raises:
        ValueError: malformed JSON, or JSON that is not an object (the message is for the model).

    Example:
        >>> parse_arguments('{"city": "Paris"}'), parse_arguments("")
        ({'city': 'Paris'}, {})
    """
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"arguments are not valid JSON ({e.msg} at char {e.pos})") from e
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(arguments).__name__}")
    return arguments


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Splits a Google-style docstring into its summary text and per-argument descriptions."""
    doc = inspect.cleandoc(doc or "")
    description_lines: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        header = stripped.rstrip(":").lower()
        if stripped.endswith(":") and header in {
            "args",
            "arguments",
            "parameters",
            "returns",
            "raises",
            "example",
            "examples",
            "yields",
            "note",
            "notes",
        }:
            section = header
            current = None
            continue
        if section is None:
            description_lines.append(line)
        elif section in {"args", "arguments", "parameters"}:
            m = re.match(r"^(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
            if m and not line.startswith(" " * 8):
                current = m.group(1)
                args[current] = m.group(3).strip()
            elif current and stripped:
                args[current] = f"{args[current]} {stripped}".strip()
    return "\n".join(description_lines).strip(), args


@dataclass
class ToolCallStats:
    """What happened to the tool calls of one turn (envs put these counts in ``info``)."""

    calls: int = 0
    errors: int = 0
    unknown_tool: int = 0
    bad_arguments: int = 0
    exceptions: int = 0
    timeouts: int = 0

    def as_info(self) -> dict[str, int]:
        return {
            "tool_calls": self.calls,
            "tool_errors": self.errors,
            "tool_unknown": self.unknown_tool,
            "tool_bad_arguments": self.bad_arguments,
            "tool_exceptions": self.exceptions,
            "tool_timeouts": self.timeouts,
        }


class Tool:
    """A Python function callable by the model. Build it with ``@tool``.

    Attributes:
        name: The name the model calls it by.
        description: What the model is told the tool does.
        schema: The OpenAI tool schema (``{"type": "function", "function": {...}}``).
        args_model: The pydantic model that validates the arguments.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"Tool name {self.name!r} is not valid for the OpenAI API: use 1-64 letters, "
                "digits, '_' or '-'."
            )
        doc_description, arg_docs = _parse_docstring(fn.__doc__ or "")
        self.description = description or doc_description
        if not self.description:
            raise ValueError(
                f"Tool {self.name!r} has no description: give the function a docstring or pass "
                "description= to @tool, the model needs to know what the tool does."
            )
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self._bound_self = False
        sig = inspect.signature(fn)
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            if pname == "self":
                self._bound_self = True
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(
                    f"Tool {self.name!r}: *args/**kwargs cannot be described to a model"
                )
            if pname not in hints:
                raise TypeError(
                    f"Tool {self.name!r}: argument {pname!r} has no type hint; the schema needs "
                    f"one (e.g. `{pname}: str`)."
                )
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints[pname], Field(default, description=arg_docs.get(pname)))
        self.args_model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{self.name}_args", __config__=ConfigDict(extra="forbid"), **fields
        )
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        params.setdefault("properties", {})
        params.setdefault("required", [])
        self.schema: dict[str, Any] = {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Any, objtype: Any = None) -> Tool:
        """Tools defined as methods bind to their instance like functions do."""
        if obj is None or not self._bound_self:
            return self
        bound = object.__new__(Tool)
        bound.__dict__.update(self.__dict__)
        bound.fn = self.fn.__get__(obj, objtype)
        bound._bound_self = False
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Parses and validates the arguments of a call.

        Raises:
            ValueError: the JSON is malformed or the arguments do not fit the schema; the message
                is meant for the model.
        """
        arguments = parse_arguments(arguments)
        try:
            model = self.args_model.model_validate(arguments)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in e.errors()
            )
            raise TypeError(f"invalid arguments for {self.name}: {problems}") from e
        return {k: getattr(model, k) for k in type(model).model_fields}

    async def acall(self, arguments: str | dict[str, Any]) -> Any:
        """Validates the arguments and runs the tool (sync tools run in a worker thread)."""
        return await self.run(self.validate(arguments))

    async def run(self, kwargs: dict[str, Any]) -> Any:
        """Runs the tool on already validated arguments."""
        if self.is_async:
            return await self.fn(**kwargs)
        return await to_thread(self.fn, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turns a typed, documented function (sync or async) into a ``Tool``.

    Use as ``@tool`` or ``@tool(name=..., timeout=...)``. Methods work too: the tool binds to the
    instance.
    """
    if fn is not None:
        return Tool(fn, name=name, description=description, timeout=timeout)
    return lambda f: Tool(f, name=name, description=description, timeout=timeout)


def _format_result(result: Any) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return str(result)


class ToolBox:
    """A set of tools and the dispatcher of assistant tool calls.

    Args:
        tools: The tools (``Tool`` objects, or plain functions that ``@tool`` can wrap).
        timeout: Default per-call timeout in seconds (a tool's own ``timeout`` wins).
        max_result_chars: Tool outputs longer than this are cut (and say so).
    """

    def __init__(
        self,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        *,
        timeout: float | None = 30.0,
        max_result_chars: int = 20_000,
    ) -> None:
        self.tools: dict[str, Tool] = {}
        for t in tools:
            t = t if isinstance(t, Tool) else Tool(t)
            if t.name in self.tools:
                raise ValueError(f"two tools are named {t.name!r}; tool names must be unique")
            self.tools[t.name] = t
        self.timeout = timeout
        self.max_result_chars = max_result_chars

    @property
    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI tool schemas of all tools."""
        return [t.schema for t in self.tools.values()]

    def __len__(self) -> int:
        return len(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    async def _one(self, call: ToolCall, stats: ToolCallStats) -> Message:
        name = call.function.name
        t = self.tools.get(name)

        def reply(text: str) -> Message:
            if len(text) > self.max_result_chars:
                cut = len(text) - self.max_result_chars
                text = text[: self.max_result_chars] + f"\n[... {cut} more characters cut]"
            return Message(role="tool", tool_call_id=call.id, name=name, content=text)

        if t is None:
            stats.errors += 1
            stats.unknown_tool += 1
            known = ", ".join(sorted(self.tools)) or "none"
            return reply(f"Error: unknown tool {name!r}. Available tools: {known}.")
        timeout = t.timeout if t.timeout is not None else self.timeout
        try:
            kwargs = t.validate(call.function.arguments)
        except (ValueError, TypeError) as e:
            stats.errors += 1
            stats.bad_arguments += 1
            expected = json.dumps(t.schema["function"]["parameters"])
            return reply(f"Error: {e}. Expected parameters: {expected}")
        try:
            result = await asyncio.wait_for(t.run(kwargs), timeout)
        except asyncio.TimeoutError:
            stats.errors += 1
            stats.timeouts += 1
            return reply(f"Error: {name} did not finish within {timeout} s; its result is lost.")
        except InfraError:
            raise
        except Exception as e:  # the tool's own failure is information for the model
            stats.errors += 1
            stats.exceptions += 1
            return reply(f"Error: {name} raised {type(e).__name__}: {e}")
        return reply(_format_result(result))

    async def call(self, calls: Sequence[ToolCall]) -> tuple[list[Message], ToolCallStats]:
        """Runs the calls of one turn concurrently; returns tool messages in call order.

        ``InfraError`` from a tool propagates (the episode's infrastructure failed); every other
        failure becomes an error message for the model.
        """
        stats = ToolCallStats(calls=len(calls))
        messages = await asyncio.gather(*(self._one(c, stats) for c in calls))
        return list(messages), stats

    def call_sync(self, calls: Sequence[ToolCall]) -> tuple[list[Message], ToolCallStats]:
        """``call`` for synchronous code."""
        return run_sync(self.call(calls))
