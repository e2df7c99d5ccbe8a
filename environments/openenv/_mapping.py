"""How an OpenEnv env's typed actions and observations become chat turns, from its ``/schema``.

* ``ActionMapper`` reads the action's JSON schema and picks a mode:

  - ``"tool"``: the action is MCP's ``CallToolAction`` (``tool_name`` + ``arguments``); the
    model acts only through tool calls, each sent as one ``step``.
  - ``"text"``: the action has one field besides ``metadata`` (or ``action_field`` names one);
    the reply's text becomes its value (numbers, booleans and enums are parsed from the text).
  - ``"json"``: several fields; the reply must be a JSON object (a fenced block is fine).
  - ``"chat"``: envkit's own ``ChatAction`` (``content`` + ``tool_calls``, an envkit env served
    by ``envkit serve-env``); the reply's text is the ``content`` and the observation's
    ``messages`` are the conversation.

* ``observation_text`` renders an observation: a single text field as is, otherwise the fields
  as JSON (``reward``/``done``/``metadata`` are not shown: they are the env's own signals).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

__all__ = ["ActionMapper", "observation_text", "tool_result_text"]

Mode = Literal["tool", "text", "json", "chat"]
_SKIP = {"metadata"}


def _field_type(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "enum"
    if "type" in prop:
        return str(prop["type"])
    for alt in prop.get("anyOf", []) + prop.get("oneOf", []):
        if alt.get("type") not in (None, "null"):
            return str(alt["type"])
    return "any"


class ActionMapper:
    """Turns an assistant reply into an OpenEnv action dict.

    Args:
        schema: The action's JSON schema (``GET /schema`` -> ``action``).
        action_field: Force text mode on this field.

    Raises:
        ValueError: ``action_field`` is not a field of the action.

    Example:
        >>> m = ActionMapper({"properties": {"guess": {"type": "integer"},
        ...                                  "metadata": {"type": "object"}}})
        >>> m.mode, m.field
        ('text', 'guess')
        >>> m.action("I guess 42.")
        {'guess': 42}
    """

    def __init__(self, schema: dict[str, Any], action_field: str | None = None) -> None:
        self.schema = schema
        props: dict[str, Any] = {
            k: v for k, v in (schema.get("properties") or {}).items() if k not in _SKIP
        }
        self.properties = props
        self.field: str | None = None
        self.mode: Mode
        if action_field is not None:
            if action_field not in props:
                raise ValueError(
                    f"action_field={action_field!r} is not a field of the env's action; its "
                    f"fields are {sorted(props)}"
                )
            self.mode, self.field = "text", action_field
        elif {"tool_name", "arguments"} <= set(props):
            self.mode = "tool"
        elif {"content", "tool_calls"} <= set(props):
            self.mode, self.field = "chat", "content"
        else:
            required = [k for k in schema.get("required", []) if k not in _SKIP]
            candidates = required if len(required) == 1 else list(props)
            if len(candidates) == 1:
                self.mode, self.field = "text", candidates[0]
            else:
                self.mode = "json"

    def describe(self) -> str:
        """One sentence for the model on how to answer."""
        if self.mode == "tool":
            return "Act by calling the tools."
        if self.mode == "json":
            fields = ", ".join(f"{k} ({_field_type(v)})" for k, v in self.properties.items())
            return f"Answer with one JSON object with the fields: {fields}."
        return ""

    def action(self, text: str) -> dict[str, Any]:
        """The action for a reply's text.

        Raises:
            ValueError: the text cannot be read as the action (the message is for the model).
        """
        if self.mode == "tool":
            raise ValueError("this environment is played through its tools only")
        if self.mode == "json":
            return _json_object(text)
        if self.mode == "chat":
            return {"content": text}
        assert self.field is not None
        prop = self.properties[self.field]
        return {self.field: _scalar(text, prop, self.field)}


def _scalar(text: str, prop: dict[str, Any], name: str) -> Any:
    kind = _field_type(prop)
    stripped = text.strip()
    if kind == "integer":
        found = re.findall(r"-?\d+", stripped)
        if not found:
            raise ValueError(f"the action needs an integer {name!r}; the reply has no integer")
        return int(found[-1])
    if kind == "number":
        found = re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", stripped)
        if not found:
            raise ValueError(f"the action needs a number {name!r}; the reply has no number")
        return float(found[-1])
    if kind == "boolean":
        low = stripped.lower().rstrip(".!")
        if low in ("true", "yes", "1"):
            return True
        if low in ("false", "no", "0"):
            return False
        raise ValueError(f"the action needs a boolean {name!r}: answer true or false")
    if kind == "enum":
        for option in prop["enum"]:
            if str(option).lower() == stripped.lower():
                return option
        raise ValueError(f"{name!r} must be one of {prop['enum']}, got {stripped[:80]!r}")
    if kind in ("object", "array"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name!r} must be JSON ({kind}): {e.msg}") from e
    return text


def _json_object(text: str) -> dict[str, Any]:
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the reply must contain one JSON object with the action's fields")
    try:
        value = json.loads(body[start : end + 1])
    except json.JSONDecodeError as e:
        raise ValueError(f"the reply's JSON object is malformed: {e.msg} at char {e.pos}") from e
    if not isinstance(value, dict):
        raise ValueError("the reply must be a JSON object")
    return value


def observation_text(observation: dict[str, Any]) -> str:
    """An observation's fields as text for the model.

    Example:
        >>> observation_text({"message": "Guess a number."})
        'Guess a number.'
        >>> observation_text({"a": 1, "b": [2]})
        '{"a": 1, "b": [2]}'
    """
    fields = {k: v for k, v in observation.items() if k not in ("reward", "done", "metadata")}
    texts = [v for v in fields.values() if isinstance(v, str)]
    if len(fields) == 1 and len(texts) == 1:
        return texts[0]
    shown = {k: v for k, v in fields.items() if v not in (None, "", [], {})}
    return json.dumps(shown) if shown else ""


def tool_result_text(result: Any) -> str:
    """The text of an MCP tool result (``CallToolResult`` as a dict) or an error."""
    if isinstance(result, dict):
        content = result.get("content")
        if isinstance(content, list):
            parts = [
                c.get("text", json.dumps(c)) if isinstance(c, dict) else str(c) for c in content
            ]
            text = "\n".join(parts)
            return f"Error: {text}" if result.get("is_error") or result.get("isError") else text
        if "data" in result and result["data"] is not None:
            return result["data"] if isinstance(result["data"], str) else json.dumps(result["data"])
    return result if isinstance(result, str) else json.dumps(result)
