"""The chat-completions API of the gateway as pure functions: request in, answer (or chunks) out.

* ``parse_chat_body(body)``: the JSON body of ``POST /chat/completions`` as a checked
  ``ChatCompletionBody``; what the gateway cannot honour is refused with a ``GatewayError`` (400)
  that names the field, never silently ignored.
* ``parse_messages(raw)``: the OpenAI messages (text content parts, assistant ``tool_calls``,
  ``tool`` results, ``developer`` as ``system``) as envkit ``Message`` objects.
* ``chat_answer(...)``: a ``Completion`` as an OpenAI ``chat.completion`` dict, with
  ``logprobs.content`` when asked and vLLM's ``prompt_token_ids``/``choices[0].token_ids`` when
  the upstream reports ids.
* ``stream_chunks(answer)``: that answer as the ``chat.completion.chunk`` dicts of a stream (the
  completion is sampled whole first, then streamed in pieces).

Example:
    >>> body = parse_chat_body({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    >>> [m.content for m in parse_messages(body.messages)]
    ['hi']
    >>> parse_chat_body({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    Traceback (most recent call last):
    ...
    envkit.gateway.errors.GatewayError: n=2: the gateway samples one choice per call; make 2 calls
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envkit.gateway.errors import GatewayError
from envkit.types import Completion, Message, ToolCall, ToolCallFunction

__all__ = [
    "ChatCompletionBody",
    "chat_answer",
    "parse_chat_body",
    "parse_messages",
    "stream_chunks",
]

_TEXT_PARTS = ("text", "input_text", "output_text")


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = None


class ChatCompletionBody(BaseModel):
    """The fields of a chat-completions request the gateway reads (others are ignored).

    Ignored fields carry no sampling meaning: ``user``, ``metadata``, ``store``,
    ``service_tier``, ``reasoning_effort``, ``verbosity``, ``prompt_cache_key`` ...
    """

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # vLLM's sampling extras (clients send them with extra_body): top_k is a sampling setting
    # like temperature; the others are refused unless neutral.
    top_k: int | None = Field(default=None, ge=-1)
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool | None = None

    @property
    def max_new_tokens(self) -> int | None:
        """``max_completion_tokens`` (the current name) or else ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def parse_tool_calls(self) -> bool:
        """Whether tool calls are parsed from the answer (not for ``tool_choice="none"``)."""
        return bool(self.tools) and self.tool_choice != "none"


def parse_chat_body(body: Any) -> ChatCompletionBody:
    """Checks a chat-completions JSON body; refuses what the gateway cannot honour.

    Raises:
        GatewayError: 400 naming the bad field: a wrong type or value, or a feature the
            gateway does not provide (``n > 1``, ``top_logprobs > 0``, ``stop`` strings,
            penalties, ``logit_bias``, a JSON ``response_format``, ``parallel_tool_calls=false``,
            ``tool_choice`` ``"required"`` or a named function; vLLM's ``min_p``,
            ``repetition_penalty``, ``min_tokens``, ``stop_token_ids``, ``ignore_eos`` unless
            neutral).
    """
    if not isinstance(body, dict):
        raise GatewayError(
            400,
            f"the request body must be a JSON object, got {type(body).__name__}",
            code="invalid_body",
        )
    try:
        parsed = ChatCompletionBody.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "body"
        more = f" (and {len(e.errors()) - 1} more problems)" if len(e.errors()) > 1 else ""
        raise GatewayError(
            400, f"{field}: {err['msg']}{more}", code="invalid_value", param=field
        ) from None
    _refuse_unsupported(parsed)
    return parsed


def _refuse_unsupported(body: ChatCompletionBody) -> None:
    def refuse(param: str, message: str) -> None:
        raise GatewayError(400, message, code="unsupported_parameter", param=param)

    if body.n not in (None, 1):
        refuse("n", f"n={body.n}: the gateway samples one choice per call; make {body.n} calls")
    if body.top_logprobs:
        refuse(
            "top_logprobs",
            f"top_logprobs={body.top_logprobs}: the gateway returns the sampled tokens' "
            "log-probabilities only; send logprobs=true without top_logprobs (or 0)",
        )
    if body.stop:
        refuse(
            "stop",
            "stop strings are not supported: a turn ends at the model's end-of-turn token; "
            "leave stop out and cut the text yourself",
        )
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            refuse(name, f"{name} is not supported: it would sample away from the policy; drop it")
    if body.logit_bias:
        refuse("logit_bias", "logit_bias is not supported: it would sample away from the policy")
    neutral = {"min_p": 0, "repetition_penalty": 1, "min_tokens": 0, "ignore_eos": False}
    for name, value in neutral.items():
        if getattr(body, name) not in (None, value):
            refuse(name, f"{name} is not supported (only {value!r}): drop it")
    if body.stop_token_ids:
        refuse(
            "stop_token_ids",
            "stop_token_ids is not supported: a turn ends at the model's "
            "end-of-turn token; drop it",
        )
    if body.response_format and body.response_format.get("type", "text") != "text":
        refuse(
            "response_format",
            f"response_format {body.response_format.get('type')!r} is not supported (no "
            "constrained decoding); ask for the format in the prompt and parse the text",
        )
    if body.parallel_tool_calls is False:
        refuse(
            "parallel_tool_calls",
            "parallel_tool_calls=false is not supported: the model may answer several tool "
            "calls in one turn; leave it out (or true)",
        )
    _check_tools(body)


def _check_tools(body: ChatCompletionBody) -> None:
    for i, tool in enumerate(body.tools or []):
        fn = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise GatewayError(
                400,
                f"tools[{i}]: only function tools are supported "
                '({"type": "function", "function": {"name": ..., "parameters": ...}})',
                code="invalid_value",
                param=f"tools[{i}]",
            )
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise GatewayError(
                400, f"tools[{i}].function.name is missing", code="invalid_value", param="tools"
            )
    choice = body.tool_choice
    if choice is None or choice in ("auto", "none"):
        return
    if choice == "required" or isinstance(choice, dict):
        what = "'required'" if choice == "required" else "a named function"
        raise GatewayError(
            400,
            f"tool_choice {what} is not supported: the gateway cannot force a tool call (no "
            "constrained decoding). Use tool_choice 'auto' and ask for the call in the prompt",
            code="unsupported_parameter",
            param="tool_choice",
        )
    raise GatewayError(
        400,
        f"tool_choice must be 'auto', 'none', 'required' or a named function, got {choice!r}",
        code="invalid_value",
        param="tool_choice",
    )


def parse_messages(raw: Sequence[Any]) -> list[Message]:
    """OpenAI chat messages as envkit ``Message`` objects.

    Text content parts are joined into one string; ``developer`` becomes ``system``;
    assistant ``tool_calls`` and ``tool`` messages keep their ids.

    Raises:
        GatewayError: 400 naming ``messages[i]`` (a bad role, non-text content, a tool call or
            tool message without its id).

    Example:
        >>> msgs = parse_messages([
        ...     {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        ...     {"role": "assistant", "content": None, "tool_calls": [{"id": "c1",
        ...      "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
        ...     {"role": "tool", "tool_call_id": "c1", "content": "2"}])
        >>> [m.role for m in msgs], msgs[1].tool_calls[0].function.arguments
        (['system', 'assistant', 'tool'], '{"x": 1}')
    """
    return [_message(m, f"messages[{i}]") for i, m in enumerate(raw)]


def _message(raw: Any, where: str) -> Message:
    def bad(message: str) -> GatewayError:
        return GatewayError(400, f"{where}: {message}", code="invalid_value", param=where)

    if not isinstance(raw, dict):
        raise bad(f"a message must be an object, got {type(raw).__name__}")
    role = raw.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant", "tool"):
        raise bad(
            f"role {role!r} is not supported; use system/developer, user, assistant or tool "
            "(the deprecated 'function' role: send tool messages)"
        )
    content = _text(raw.get("content"), where)
    calls = None
    if raw.get("tool_calls"):
        if role != "assistant":
            raise bad("only assistant messages may carry tool_calls")
        calls = [_tool_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(raw["tool_calls"])]
    if role == "tool" and not raw.get("tool_call_id"):
        raise bad("a tool message needs the tool_call_id of the call it answers")
    name = raw.get("name")
    try:
        return Message(
            role=role,
            content=content,
            tool_calls=calls,
            tool_call_id=raw.get("tool_call_id") if role == "tool" else None,
            name=name if isinstance(name, str) else None,
        )
    except ValidationError as e:
        raise bad(str(e.errors()[0]["msg"])) from None


def _text(content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise GatewayError(
            400,
            f"{where}.content must be a string or a list of text parts",
            code="invalid_value",
            param=f"{where}.content",
        )
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise GatewayError(
                400,
                f"{where}.content[{j}]: content part type {kind!r} is not supported; the "
                "gateway's model takes text only ({'type': 'text', 'text': ...})",
                code="unsupported_content",
                param=f"{where}.content[{j}]",
            )
    return "".join(texts)


def _tool_call(raw: Any, where: str) -> ToolCall:
    fn = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not raw.get("id"):
        raise GatewayError(
            400,
            f'{where}: a tool call needs "id" and "function": {{"name", "arguments"}}',
            code="invalid_value",
            param=where,
        )
    args = fn.get("arguments")
    if args is None:
        args = "{}"
    elif not isinstance(args, str):
        args = json.dumps(args)
    return ToolCall(id=str(raw["id"]), function=ToolCallFunction(name=fn["name"], arguments=args))


def chat_answer(
    completion: Completion,
    *,
    model: str,
    logprobs: bool = False,
    token_strings: Callable[[Sequence[int]], list[str]] | None = None,
    answer_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A ``Completion`` as an OpenAI ``chat.completion`` answer dict.

    Args:
        completion: What the upstream sampled.
        model: The model name answered (the session's).
        logprobs: Add ``choices[0].logprobs.content`` (needs ``completion.logprobs``).
        token_strings: The text of each token id, for ``logprobs.content[i].token``.
        answer_id: The answer's id (default: a fresh ``chatcmpl-...``).
        created: Its Unix time (default: now).

    Example:
        >>> from envkit.types import Message
        >>> c = Completion(message=Message(role="assistant", content="4"), prompt_token_ids=[1],
        ...                token_ids=[9, 0], logprobs=[-0.1, -0.2], finish_reason="stop")
        >>> a = chat_answer(c, model="m", logprobs=True, token_strings=lambda ids: ["4", ""])
        >>> a["choices"][0]["message"]["content"], a["choices"][0]["token_ids"], a["usage"]
        ('4', [9, 0], {'prompt_tokens': 1, 'completion_tokens': 2, 'total_tokens': 3})
        >>> [t["logprob"] for t in a["choices"][0]["logprobs"]["content"]]
        [-0.1, -0.2]
    """
    message = completion.message
    calls = [c.model_dump() for c in message.tool_calls or []]
    out_message: dict[str, Any] = {"role": "assistant", "content": message.content}
    if calls:
        out_message["tool_calls"] = calls
    finish = "tool_calls" if calls else (completion.finish_reason or "stop")
    choice: dict[str, Any] = {
        "index": 0,
        "message": out_message,
        "logprobs": None,
        "finish_reason": finish,
    }
    tokens = completion.token_ids
    if logprobs:
        if completion.logprobs is None or tokens is None:
            raise GatewayError(
                502,
                "the upstream answered without log-probabilities",
                code="upstream_error",
            )
        names = token_strings(tokens) if token_strings else [f"token_id:{t}" for t in tokens]
        choice["logprobs"] = {
            "content": [
                {
                    "token": name,
                    "logprob": lp,
                    "bytes": list(name.encode("utf-8")),
                    "top_logprobs": [],
                }
                for name, lp in zip(names, completion.logprobs, strict=True)
            ],
            "refusal": None,
        }
    if tokens is not None:
        choice["token_ids"] = list(tokens)
    prompt_tokens = (
        len(completion.prompt_token_ids)
        if completion.prompt_token_ids is not None
        else (completion.usage.prompt_tokens if completion.usage else 0)
    )
    completion_tokens = (
        len(tokens)
        if tokens is not None
        else (completion.usage.completion_tokens if completion.usage else 0)
    )
    answer: dict[str, Any] = {
        "id": answer_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if completion.prompt_token_ids is not None:
        answer["prompt_token_ids"] = list(completion.prompt_token_ids)
    return answer


def stream_chunks(
    answer: dict[str, Any], *, include_usage: bool = False, chunk_chars: int = 32
) -> list[dict[str, Any]]:
    """A ``chat.completion`` answer as the ``chat.completion.chunk`` dicts of a stream.

    The chunks: the role, the content in pieces of ``chunk_chars`` characters, each tool call
    (its index, id and name, then its arguments in pieces), a last chunk with the
    ``finish_reason`` (and the ``logprobs`` and vLLM's ``token_ids``, when the answer has them),
    then, with ``include_usage``, a chunk with no choices and the usage. (The SSE ``data:
    [DONE]`` line that ends the stream is the server's.)

    Example:
        >>> a = {"id": "x", "created": 0, "model": "m", "usage": {"total_tokens": 1},
        ...      "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
        ...                   "message": {"role": "assistant", "content": "hello"}}]}
        >>> [c["choices"][0]["delta"] for c in stream_chunks(a, chunk_chars=3)]
        [{'role': 'assistant', 'content': ''}, {'content': 'hel'}, {'content': 'lo'}, {}]
    """
    choice = answer["choices"][0]
    message = choice["message"]
    usage_field: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, **extra}
        return {
            "id": answer["id"],
            "object": "chat.completion.chunk",
            "created": answer["created"],
            "model": answer["model"],
            "choices": [body],
            **usage_field,
        }

    first = chunk({"role": "assistant", "content": ""})
    if "prompt_token_ids" in answer:
        first["prompt_token_ids"] = answer["prompt_token_ids"]
    chunks = [first]
    content = message.get("content") or ""
    for at in range(0, len(content), chunk_chars):
        chunks.append(chunk({"content": content[at : at + chunk_chars]}))
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call["function"]
        head = {"index": i, "id": call["id"], "type": "function"}
        named = {**head, "function": {"name": fn["name"], "arguments": ""}}
        chunks.append(chunk({"tool_calls": [named]}))
        args = fn.get("arguments") or ""
        for at in range(0, len(args), chunk_chars):
            piece = {"index": i, "function": {"arguments": args[at : at + chunk_chars]}}
            chunks.append(chunk({"tool_calls": [piece]}))
    last_extra: dict[str, Any] = {"finish_reason": choice["finish_reason"]}
    if choice.get("logprobs") is not None:
        last_extra["logprobs"] = choice["logprobs"]
    if "token_ids" in choice:
        last_extra["token_ids"] = choice["token_ids"]
    chunks.append(chunk({}, **last_extra))
    if include_usage:
        chunks.append(
            {
                "id": answer["id"],
                "object": "chat.completion.chunk",
                "created": answer["created"],
                "model": answer["model"],
                "choices": [],
                "usage": answer["usage"],
            }
        )
    return chunks
