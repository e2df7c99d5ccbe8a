"""The OpenAI Responses API as translations to and from the chat-completions path.

The gateway answers ``POST /v1/responses`` (what the OpenAI Agents SDK calls by default) with
the same machinery as ``/v1/chat/completions``: ``chat_body_from_responses`` turns a Responses
create body into a chat.completions body, the chat path samples it (and records the call),
``response_from_chat`` turns the chat answer into a Responses ``Response`` object, and
``response_stream_events`` gives the server-sent events of that response for a client that
asked for ``stream: true``. The functions are pure: no I/O, no stored state.

What each request field does (anything else is refused with a ``ValueError`` naming it):

* Honoured: ``model``; ``instructions`` (a leading system message); ``input`` (a string: one
  user message; a list of items, see below); ``tools`` (function tools only); ``tool_choice``
  (``auto``/``none``/``required``/one named function); ``max_output_tokens`` (``max_tokens``);
  ``temperature``; ``top_p``; ``parallel_tool_calls``; ``top_logprobs`` and ``include:
  ["message.output_text.logprobs"]`` (``logprobs`` in the chat body, and on the answer's
  ``output_text``); ``text.format`` ``text`` (nothing to do), ``json_schema`` and
  ``json_object`` (the chat body's ``response_format``, which the chat path honours or refuses
  like any chat request's); ``stream`` (the server's business: the chat body never streams, the
  server answers ``response_stream_events`` of the finished response); vLLM's sampling extras
  (``top_k``, ``min_p``, ``repetition_penalty``, ``presence_penalty``, ``frequency_penalty``,
  ``seed``, ``stop``, ``stop_token_ids``, ``logit_bias``, ``min_tokens``, for a client that
  sends them with ``extra_body``) pass through to the chat body unchanged.
* Ignored harmlessly, because they do not change what the model sees or samples: ``store`` (the
  gateway keeps no retrievable responses, whatever it says), ``metadata`` (echoed on the
  answer), ``truncation`` (``auto`` or ``disabled``: the gateway never drops input, so a too
  long conversation fails at the upstream as with ``disabled``), ``context_management`` (no
  server-side compaction: the conversation is never compacted), the other ``include`` values
  (they ask for items the gateway never produces: reasoning, hosted-tool results, images),
  ``reasoning`` and ``text.verbosity`` (hints for OpenAI's reasoning models; a local model has
  none), ``user``, ``safety_identifier``, ``service_tier``, ``prompt_cache_key``,
  ``prompt_cache_retention``, ``prompt_cache_options``, ``stream_options``, ``max_tool_calls``
  (it limits hosted tools, which are refused), ``moderation``, ``image``, ``access_programs``,
  ``background_options``; a function tool's ``allowed_callers`` and ``output_schema``.
* Refused: ``previous_response_id`` and ``conversation`` (the gateway stores no responses: send
  the whole conversation as ``input`` each call, which the Agents SDK does by default, that is
  unless ``Runner.run(..., previous_response_id=...)``, ``conversation_id=...`` or
  ``auto_previous_response_id=True`` is used), ``prompt`` (a stored prompt template),
  ``background: true``, tools other than ``function`` (``web_search``, ``file_search``,
  ``computer``, ``mcp``, ...), a function tool with ``defer_loading: true`` (tool search),
  ``tool_choice`` other than the four forms above, ``text.format`` types other than the three
  above, and unknown fields.

The ``input`` items: messages (``role`` user, system, developer or assistant, with or without
``type: "message"``; ``developer`` becomes ``system``, which is what chat templates and
``envkit.types.Message`` know) whose content is a string or a list of ``input_text``,
``output_text`` or ``refusal`` parts, joined with no separator (``input_image``, ``input_file``
and ``input_audio`` are refused: the gateway's models read text); ``function_call`` items (tool
calls of the assistant message just before them, or of a new assistant message: the Agents SDK
sends an assistant turn as a message item followed by one item per call, and an assistant
message right after calls of the same turn joins them too); ``function_call_output`` items
(tool messages; an output given as a list of ``input_text`` parts is joined); ``reasoning``
items are dropped: the gateway never produces them (a local model's thinking stays in the
message text it sampled), and OpenAI's encrypted reasoning means nothing to another model.
``item_reference`` and hosted-tool items (``web_search_call``, ``computer_call``, ...) are
refused.

Example:
    >>> body = {"model": "m", "instructions": "Be brief.", "input": "2+2?",
    ...         "max_output_tokens": 8}
    >>> chat = chat_body_from_responses(body)
    >>> chat["messages"], chat["max_tokens"]
    ([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '2+2?'}], 8)
    >>> answer = {"id": "chatcmpl-1", "created": 1, "model": "m", "choices": [{"index": 0,
    ...           "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
    ...           "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}
    >>> resp = response_from_chat(answer, body)
    >>> resp["status"], resp["output"][0]["content"][0]["text"], resp["usage"]["total_tokens"]
    ('completed', '4', 11)
    >>> [name for name, _ in response_stream_events(resp)][:3]
    ['response.created', 'response.in_progress', 'response.output_item.added']
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["chat_body_from_responses", "response_from_chat", "response_stream_events"]

_LOGPROBS_INCLUDE = "message.output_text.logprobs"

_IGNORED = frozenset(
    {
        "store",
        "metadata",
        "truncation",
        "context_management",
        "include",
        "reasoning",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "stream_options",
        "max_tool_calls",
        "moderation",
        "image",
        "access_programs",
        "background_options",
        "stream",
        "text",
    }
)
"""Fields that need no chat-body counterpart (``text`` and ``include`` are read separately)."""

_PASSTHROUGH = ("temperature", "top_p", "parallel_tool_calls")
_VLLM_EXTRAS = (
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "stop_token_ids",
    "logit_bias",
    "min_tokens",
)
_HANDLED = frozenset(
    {
        "model",
        "instructions",
        "input",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "top_logprobs",
        "background",
        "previous_response_id",
        "conversation",
        "prompt",
        *_PASSTHROUGH,
        *_VLLM_EXTRAS,
    }
)

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal"}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def chat_body_from_responses(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat.completions request body equivalent to a Responses API create body.

    Args:
        body: The JSON body of ``POST /v1/responses``.

    Returns:
        A ``/v1/chat/completions`` body: ``messages``, and ``model``, ``tools``,
        ``tool_choice``, ``max_tokens``, sampling fields and ``logprobs`` where the body set
        them. It never streams (``stream`` is left out whatever the body says).

    Raises:
        ValueError: A field the gateway cannot honour (see the module docs), with how to fix it.

    Example:
        >>> chat_body_from_responses({"input": [{"role": "user", "content": "hi"}]})
        {'messages': [{'role': 'user', 'content': 'hi'}]}
    """
    if not isinstance(body, Mapping):
        raise ValueError(
            f"the request body must be a JSON object, got {type(body).__name__}: send the "
            "Responses API create body"
        )
    unknown = sorted(k for k in body if k not in _HANDLED and k not in _IGNORED)
    if unknown:
        raise ValueError(
            f"unknown Responses API field(s) {unknown}: the gateway accepts the fields of "
            "OpenAI's responses.create (and vLLM's sampling extras); remove them"
        )
    _refuse_stateful(body)
    chat: dict[str, Any] = {}
    if body.get("model") is not None:
        chat["model"] = body["model"]
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise ValueError(
                "instructions: must be a string (the system prompt); put structured content in "
                "a system message of input instead"
            )
        messages.append({"role": "system", "content": instructions})
    messages.extend(_messages_from_input(body.get("input")))
    chat["messages"] = messages
    if body.get("tools"):
        chat["tools"] = [_chat_tool(t, i) for i, t in enumerate(_list(body["tools"], "tools"))]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for key in (*_PASSTHROUGH, *_VLLM_EXTRAS):
        if body.get(key) is not None:
            chat[key] = body[key]
    if _wants_logprobs(body):
        chat["logprobs"] = True
        if body.get("top_logprobs"):
            chat["top_logprobs"] = body["top_logprobs"]
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def response_from_chat(
    chat_response: Mapping[str, Any], request_body: Mapping[str, Any]
) -> dict[str, Any]:
    """The Responses API ``Response`` object for a chat.completion answer.

    Args:
        chat_response: The non-streamed chat.completion answer (a dict as OpenAI returns it).
        request_body: The Responses create body it answers (its settings are echoed back).

    Returns:
        A dict that ``openai.types.responses.Response.model_validate`` accepts: one ``message``
        item with the text (when there is text, or no tool call), one ``function_call`` item per
        tool call (its ``call_id`` is the chat tool call's id, so the client's
        ``function_call_output`` maps back to the same ``tool_call_id``); ``status``
        ``incomplete`` with ``incomplete_details.reason`` ``max_output_tokens`` when the chat
        answer stopped at its length limit. ``output_text`` carries ``logprobs`` when the
        request asked for them (``include`` or ``top_logprobs``) and the chat answer has them.

    Raises:
        ValueError: The chat answer has no choice, or a tool call without a function name.

    Example:
        >>> answer = {"id": "chatcmpl-7", "created": 5, "model": "m", "choices": [{"message": {
        ...     "role": "assistant", "content": None, "tool_calls": [{"id": "call_1",
        ...     "type": "function", "function": {"name": "add", "arguments": "{}"}}]},
        ...     "finish_reason": "tool_calls"}]}
        >>> [(o["type"], o["call_id"]) for o in response_from_chat(answer, {})["output"]]
        [('function_call', 'call_1')]
    """
    choices = chat_response.get("choices") or []
    if not choices:
        raise ValueError(
            "chat_response: no choices in the chat.completion answer; the upstream must answer "
            "one choice per request"
        )
    choice = choices[0]
    message = choice.get("message") or {}
    finish_reason = choice.get("finish_reason")
    incomplete_reason = _INCOMPLETE.get(finish_reason or "")
    suffix = _id_suffix(chat_response.get("id"))
    output: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep their text
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    tool_calls = message.get("tool_calls") or []
    if content or not tool_calls:
        part: dict[str, Any] = {"type": "output_text", "text": content or "", "annotations": []}
        chat_logprobs = (choice.get("logprobs") or {}).get("content")
        if chat_logprobs is not None and _wants_logprobs(request_body):
            part["logprobs"] = [_output_logprob(lp) for lp in chat_logprobs]
        output.append(
            {
                "type": "message",
                "id": f"msg_{suffix}",
                "status": "incomplete" if incomplete_reason else "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for i, call in enumerate(tool_calls):
        function = call.get("function") or {}
        if not function.get("name"):
            raise ValueError(
                f"chat_response: tool call {i} has no function name; the upstream must answer "
                "OpenAI-format tool calls"
            )
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{suffix}_{i}",
                "call_id": call.get("id") or f"call_{suffix}_{i}",
                "name": function["name"],
                "arguments": function.get("arguments") or "",
                "status": "completed",
            }
        )
    return {
        "id": f"resp_{suffix}",
        "object": "response",
        "created_at": float(chat_response.get("created") or time.time()),
        "status": "incomplete" if incomplete_reason else "completed",
        "error": None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": chat_response.get("model") or request_body.get("model") or "",
        "output": output,
        "usage": _usage(chat_response.get("usage")),
        "instructions": request_body.get("instructions"),
        "tools": list(request_body.get("tools") or []),
        "tool_choice": request_body.get("tool_choice") or "auto",
        "parallel_tool_calls": bool(request_body.get("parallel_tool_calls", True)),
        "temperature": request_body.get("temperature"),
        "top_p": request_body.get("top_p"),
        "top_logprobs": request_body.get("top_logprobs"),
        "max_output_tokens": request_body.get("max_output_tokens"),
        "previous_response_id": None,
        "reasoning": None,
        "metadata": dict(request_body.get("metadata") or {}),
        "text": request_body.get("text") or {"format": {"type": "text"}},
        "truncation": request_body.get("truncation") or "disabled",
        "background": False,
        "user": request_body.get("user"),
    }


def response_stream_events(response: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of a finished ``Response``, in the order the OpenAI API sends them.

    ``response.created``, ``response.in_progress``, then for each output item
    ``response.output_item.added``, its content (a message: ``content_part.added``,
    ``output_text.delta`` per sampled token when the logprobs spell the text, else one delta
    with the whole text, none for empty text, ``output_text.done``, ``content_part.done``; a
    function call: ``function_call_arguments.delta`` and ``.done``) and
    ``response.output_item.done``, and last ``response.completed`` (``response.incomplete``
    for an incomplete response) with the whole response.

    Args:
        response: A ``Response`` dict from ``response_from_chat``.

    Returns:
        ``(event name, data)`` pairs; each data dict has ``type`` (the event name) and a
        ``sequence_number`` counting from 0. Write each as ``event: <name>\\ndata: <json>\\n\\n``.

    Raises:
        ValueError: An output item of a type the gateway does not produce.

    Example:
        >>> resp = {"id": "resp_1", "status": "completed", "output": [{"type": "function_call",
        ...         "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}",
        ...         "status": "completed"}]}
        >>> [name for name, _ in response_stream_events(resp)][3:5]
        ['response.function_call_arguments.delta', 'response.function_call_arguments.done']
    """
    events: list[tuple[str, dict[str, Any]]] = []
    counter = itertools.count()

    def emit(name: str, **data: Any) -> None:
        events.append((name, {"type": name, "sequence_number": next(counter), **data}))

    def snapshot(**changes: Any) -> dict[str, Any]:
        return {**copy.deepcopy(dict(response)), **changes}

    start = snapshot(status="in_progress", output=[], usage=None, incomplete_details=None)
    emit("response.created", response=start)
    emit("response.in_progress", response=copy.deepcopy(start))
    for index, item in enumerate(response.get("output") or []):
        kind = item.get("type")
        if kind == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**copy.deepcopy(item), "status": "in_progress", "content": []},
            )
            for content_index, part in enumerate(item.get("content") or []):
                _emit_text_part(emit, item["id"], index, content_index, part)
        elif kind == "function_call":
            item_id = item.get("id") or item["call_id"]
            emit(
                "response.output_item.added",
                output_index=index,
                item={**copy.deepcopy(item), "arguments": "", "status": "in_progress"},
            )
            emit(
                "response.function_call_arguments.delta",
                output_index=index,
                item_id=item_id,
                delta=item.get("arguments", ""),
            )
            emit(
                "response.function_call_arguments.done",
                output_index=index,
                item_id=item_id,
                arguments=item.get("arguments", ""),
            )
        else:
            raise ValueError(
                f"response.output[{index}]: cannot stream an item of type {kind!r}; the gateway "
                "streams message and function_call items (build the response with "
                "response_from_chat)"
            )
        emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))
    final = (
        "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
    )
    emit(final, response=snapshot())
    return events


# ----------------------------------------------------------------------------- request side


def _refuse_stateful(body: Mapping[str, Any]) -> None:
    if body.get("previous_response_id") is not None:
        raise ValueError(
            "previous_response_id: the gateway stores no responses, so it cannot continue one; "
            "send the whole conversation as input on every call (the OpenAI Agents SDK does "
            "unless Runner.run is given previous_response_id, conversation_id or "
            "auto_previous_response_id=True)"
        )
    if body.get("conversation") is not None:
        raise ValueError(
            "conversation: the gateway keeps no server-side conversations; send the whole "
            "conversation as input on every call (do not pass conversation_id to Runner.run)"
        )
    if body.get("prompt") is not None:
        raise ValueError(
            "prompt: stored prompt templates live on OpenAI's servers, not the gateway; send "
            "the prompt's text as instructions and input instead"
        )
    if body.get("background"):
        raise ValueError(
            "background: the gateway answers every request while the client waits and keeps "
            "nothing to poll; leave background unset (or false)"
        )


def _messages_from_input(value: Any) -> list[dict[str, Any]]:
    if value is None:
        raise ValueError(
            "input: required; send the conversation as a string or a list of input items "
            "(the gateway keeps no state between calls)"
        )
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    # The assistant message that function_call items attach to: the last message, while it is
    # an assistant message (a user, system or tool message in between starts a new turn).
    turn: dict[str, Any] | None = None
    for i, item in enumerate(_list(value, "input")):
        where = f"input[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(
                f"{where}: must be an object (a message or a function_call/function_call_output "
                f"item), got {type(item).__name__}"
            )
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise ValueError(
                    f"{where}.role: {role!r} is not a message role; use user, system, developer "
                    "or assistant (tool results are function_call_output items)"
                )
            text = _text(item.get("content"), f"{where}.content")
            if role == "assistant":
                if turn is not None and turn.get("tool_calls") and turn["content"] is None:
                    turn["content"] = text  # the text of a turn whose calls came first
                else:
                    turn = {"role": "assistant", "content": text}
                    messages.append(turn)
            else:
                turn = None
                messages.append({"role": _ROLES[role], "content": text})
        elif kind == "function_call":
            missing = [k for k in ("call_id", "name") if not item.get(k)]
            if missing:
                raise ValueError(
                    f"{where}: a function_call item needs {' and '.join(missing)}; send the item "
                    "as the response's output gave it"
                )
            if turn is None:
                turn = {"role": "assistant", "content": None}
                messages.append(turn)
            turn.setdefault("tool_calls", []).append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments", "")},
                }
            )
        elif kind == "function_call_output":
            if not item.get("call_id"):
                raise ValueError(
                    f"{where}: a function_call_output item needs the call_id of the "
                    "function_call it answers"
                )
            turn = None
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": output
                    if isinstance(output, str)
                    else _text(output, f"{where}.output"),
                }
            )
        elif kind == "reasoning":
            continue  # see the module docs: nothing of it reaches the model
        elif kind == "item_reference":
            raise ValueError(
                f"{where}: item_reference points at a stored item, and the gateway stores "
                "none; send the item itself"
            )
        else:
            raise ValueError(
                f"{where}: input items of type {kind!r} are not supported; the gateway takes "
                "messages, function_call, function_call_output and reasoning items (hosted "
                "tools such as web_search, file_search or computer are not available)"
            )
    return messages


def _text(content: Any, where: str) -> str:
    """The text of message content given as a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if content is None:
        raise ValueError(f"{where}: missing; give the text as a string or a list of text parts")
    pieces = []
    for j, part in enumerate(_list(content, where)):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _TEXT_PARTS:
            text = part.get(_TEXT_PARTS[kind])
            if not isinstance(text, str):
                raise ValueError(f"{where}[{j}].{_TEXT_PARTS[kind]}: must be a string")
            pieces.append(text)
        elif kind in ("input_image", "input_file", "input_audio"):
            raise ValueError(
                f"{where}[{j}]: {kind} is unsupported, the gateway's models read text only; "
                "send the content as input_text"
            )
        else:
            raise ValueError(
                f"{where}[{j}]: content parts of type {kind!r} are not supported; use "
                "input_text (user/system/developer) or output_text (assistant)"
            )
    return "".join(pieces)


def _chat_tool(tool: Any, i: int) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, Mapping) else None
    if kind != "function":
        raise ValueError(
            f"tools[{i}]: tools of type {kind!r} are not supported; the gateway's model can "
            "only call function tools that the agent runs itself (drop hosted tools such as "
            "web_search, file_search, computer, code_interpreter or mcp)"
        )
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise ValueError(f"tools[{i}].name: a function tool needs a name")
    if tool.get("defer_loading"):
        raise ValueError(
            f"tools[{i}] ({tool['name']}): defer_loading needs OpenAI's hosted tool search, which "
            "the gateway lacks; offer the tool directly (defer_loading false)"
        )
    function: dict[str, Any] = {"name": tool["name"]}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: Any) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        if not choice.get("name"):
            raise ValueError('tool_choice: {"type": "function"} needs the function\'s name')
        return {"type": "function", "function": {"name": choice["name"]}}
    kind = choice.get("type") if isinstance(choice, Mapping) else choice
    raise ValueError(
        f"tool_choice: {kind!r} is not supported; use 'auto', 'none', 'required' or "
        '{"type": "function", "name": ...}'
    )


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, Mapping):
        raise ValueError('text: must be an object such as {"format": {"type": "text"}}')
    fmt = text.get("format")
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        if not fmt.get("name") or not isinstance(fmt.get("schema"), Mapping):
            raise ValueError("text.format: a json_schema format needs a name and a schema")
        schema = {"name": fmt["name"], "schema": fmt["schema"]}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise ValueError(
        f"text.format: type {fmt.get('type')!r} is not supported; use text, json_object or "
        "json_schema"
    )


def _wants_logprobs(body: Mapping[str, Any]) -> bool:
    return _LOGPROBS_INCLUDE in (body.get("include") or []) or bool(body.get("top_logprobs"))


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be a list, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------- response side


def _id_suffix(chat_id: Any) -> str:
    """The chat answer's id without its prefix (``chatcmpl-abc`` -> ``abc``), or a fresh one."""
    if isinstance(chat_id, str) and chat_id:
        return chat_id.split("-", 1)[1] if "-" in chat_id else chat_id
    return uuid.uuid4().hex


def _usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    prompt_details = usage.get("prompt_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") or 0
    cache_writes = prompt_details.get("cache_write_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int(cached),
            "cache_write_tokens": int(cache_writes),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def _output_logprob(lp: Mapping[str, Any]) -> dict[str, Any]:
    def token_bytes(entry: Mapping[str, Any]) -> list[int]:
        given = entry.get("bytes")
        return list(given) if given is not None else list(str(entry["token"]).encode())

    return {
        "token": lp["token"],
        "bytes": token_bytes(lp),
        "logprob": float(lp["logprob"]),
        "top_logprobs": [
            {"token": t["token"], "bytes": token_bytes(t), "logprob": float(t["logprob"])}
            for t in lp.get("top_logprobs") or []
        ],
    }


def _event_logprob(lp: Mapping[str, Any]) -> dict[str, Any]:
    """An ``output_text`` logprob in the shape of the text delta/done events (no bytes)."""
    return {
        "token": lp["token"],
        "logprob": lp["logprob"],
        "top_logprobs": [
            {"token": t["token"], "logprob": t["logprob"]} for t in lp.get("top_logprobs") or []
        ],
    }


def _emit_text_part(
    emit: Any, item_id: str, output_index: int, content_index: int, part: Mapping[str, Any]
) -> None:
    where = {"item_id": item_id, "output_index": output_index, "content_index": content_index}
    if part.get("type") != "output_text":
        raise ValueError(
            f"response.output[{output_index}].content[{content_index}]: cannot stream a "
            f"{part.get('type')!r} part; the gateway streams output_text"
        )
    text = part.get("text", "")
    logprobs = list(part.get("logprobs") or [])
    empty: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
    if "logprobs" in part:
        empty["logprobs"] = []
    emit("response.content_part.added", **where, part=empty)
    if logprobs and "".join(lp["token"] for lp in logprobs) == text:
        for lp in logprobs:
            emit(
                "response.output_text.delta",
                **where,
                delta=lp["token"],
                logprobs=[_event_logprob(lp)],
            )
    elif text:
        emit(
            "response.output_text.delta",
            **where,
            delta=text,
            logprobs=[_event_logprob(lp) for lp in logprobs],
        )
    emit(
        "response.output_text.done",
        **where,
        text=text,
        logprobs=[_event_logprob(lp) for lp in logprobs],
    )
    emit("response.content_part.done", **where, part=copy.deepcopy(dict(part)))
