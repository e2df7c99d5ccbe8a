"""``KEY=VALUE`` command-line items (``-k/--kwarg``, ``--set``): one parser, one meaning.

``parse_value``: a VALUE is JSON when it parses as JSON (``2``, ``2e-4``, ``true``, ``null``,
``"007"``, ``[1, 2]``, ``{"a": 1}``); a VALUE that starts with ``[`` or ``{`` may also use YAML's
flow style (``{max_turns: 2}``, ``[tensorboard]``), whose items follow these same rules; anything
else is the string as typed (``+*``, ``007``, ``1:30``, ``yes``). Unlike YAML, ``1:30`` or ``007``
stays a string, inside a collection or not.

``parse_items``: every item must be ``KEY=VALUE`` with a name as KEY (``-`` reads as ``_``), each
KEY at most once; the first ``=`` separates them, so VALUE may contain more.

Example:
    >>> parse_items(["max_turns=2", "operators=+*", "lr=2e-4", "env_kwargs={max_turns: 2}"])
    {'max_turns': 2, 'operators': '+*', 'lr': 0.0002, 'env_kwargs': {'max_turns': 2}}
    >>> parse_items(["max-new-tokens=8", "seed=007", "f=a=b", "g={t: 1:30, ops: [+*, 2]}"])
    {'max_new_tokens': 8, 'seed': '007', 'f': 'a=b', 'g': {'t': '1:30', 'ops': ['+*', 2]}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["KeyValueError", "parse_items", "parse_value"]


class KeyValueError(ValueError):
    """A command-line ``KEY=VALUE`` item is malformed; the message says how to write it."""


def parse_value(text: str) -> Any:
    """The Python value of a command-line VALUE (see the module docstring for the rules).

    Raises:
        KeyValueError: VALUE starts with ``[``/``{`` but is neither JSON nor a YAML flow
            collection.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if text.lstrip().startswith(("[", "{")):
        import yaml

        try:  # the node tree, so scalars get the VALUE rule rather than YAML's
            value = _from_node(yaml.compose(text, Loader=yaml.SafeLoader))
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or type(e).__name__
            raise KeyValueError(
                f"{text!r} looks like a list or mapping but does not parse ({problem}); "
                'write it as JSON (\'{"max_turns": 2}\', \'["a", "b"]\'), or as a JSON string '
                f"({json.dumps(text)!r}) if it is text"
            ) from None
        if isinstance(value, (list, dict)):
            return value
    return text


def _from_node(node: Any) -> Any:
    """A YAML flow collection's node as Python, each unquoted scalar read as a VALUE."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return {k.value: _from_node(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_from_node(v) for v in node.value]
    if node.style in ("'", '"'):  # quoted in the flow: a string as written
        return node.value
    try:
        return json.loads(node.value)
    except json.JSONDecodeError:
        return node.value


def parse_items(items: Iterable[str] | None, *, example: str = "max_turns=2") -> dict[str, Any]:
    """``{KEY: value}`` from ``KEY=VALUE`` items, in order.

    Args:
        items: The items as typed (``None``: none).
        example: A valid item for this option, shown in error messages.

    Raises:
        KeyValueError: an item has no ``=``, its KEY is not a name, or a KEY is given twice.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise KeyValueError(f"{item!r} is not KEY=VALUE (e.g. {example})")
        if not key.isidentifier():
            raise KeyValueError(
                f"{item!r}: KEY {key!r} is not a name; write KEY=VALUE with a field or argument "
                f"name as KEY (e.g. {example})"
            )
        if key in out:
            raise KeyValueError(f"{key!r} is given twice ({item!r}); give each KEY once")
        out[key] = parse_value(value)
    return out
