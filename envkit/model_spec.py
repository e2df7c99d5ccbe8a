"""The one parser of model names: ``parse_model_spec``.

Every place that takes a model as a string (``load_model``, ``load_policy``, ``envkit eval``,
``envkit train``, ``envkit serve``, ``envkit check-template``, ``ServerPolicy``'s tokenizer)
reads it here:

* ``"bundled"``: ``"smollm2-135m"`` or ``"tiny-random"`` (``"hf:tiny-random"`` too).
* ``"dir"``: a local model directory in Hugging Face format, written as a path or ``"hf:PATH"``
  (``~`` is expanded). An existing directory always wins over the other readings.
* ``"hub"``: a Hugging Face hub id ``"org/name"`` written ``"hf:org/name"``, or bare where only
  transformers models are taken (``api=False``: ``load_model``, training, serving).
* ``"litellm"``: anything else where API models are taken (``api=True``: ``load_policy``,
  ``envkit eval``), e.g. ``"gpt-4o-mini"`` or ``"openai/<served name>"``.

A name that is none of these where only transformers models are taken (a typo, a directory that
does not exist) parses as ``"dir"`` with ``exists=False``: the loader says what is accepted.

Example:
    >>> from envkit.model_spec import parse_model_spec
    >>> parse_model_spec("tiny-random").kind
    'bundled'
    >>> spec = parse_model_spec("hf:Qwen/Qwen2.5-0.5B-Instruct")
    >>> spec.kind, spec.name, spec.local
    ('hub', 'Qwen/Qwen2.5-0.5B-Instruct', True)
    >>> parse_model_spec("openai/my-model").kind
    'litellm'
    >>> parse_model_spec("Qwen/Qwen2.5-0.5B-Instruct", api=False).kind
    'hub'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["BUNDLED_MODEL_NAMES", "HF_PREFIX", "ModelSpec", "parse_model_spec"]

BUNDLED_MODEL_NAMES: tuple[str, ...] = ("smollm2-135m", "tiny-random")
"""The models that ship with envkit (``envkit.models.BUNDLED_MODELS`` describes them)."""

HF_PREFIX = "hf:"
"""Marks a transformers model (a directory or a hub id) where a litellm string could be meant."""

ModelKind = Literal["bundled", "dir", "hub", "litellm"]


@dataclass(frozen=True)
class ModelSpec:
    """What a model string names.

    Attributes:
        kind: ``"bundled"``, ``"dir"``, ``"hub"`` or ``"litellm"`` (see the module doc).
        name: What to load: the bundled name, the directory (``~`` expanded), the hub id, or the
            litellm model string.
        text: The string as written.
    """

    kind: ModelKind
    name: str
    text: str

    @property
    def local(self) -> bool:
        """Whether it is a transformers model run in this process (not an API model)."""
        return self.kind != "litellm"

    @property
    def exists(self) -> bool:
        """False only for a ``"dir"`` that is not an existing directory."""
        return self.kind != "dir" or Path(self.name).is_dir()


def parse_model_spec(spec: str, *, api: bool = True) -> ModelSpec:
    """Reads a model string (see the module doc for the kinds and the order they are tried in).

    Args:
        spec: ``"smollm2-135m"``, ``"tiny-random"``, a directory, ``"hf:<dir or hub id>"``, a
            hub id or a litellm model string.
        api: Whether the caller takes API models: then an unprefixed name that is not bundled
            and not an existing directory is a litellm string; else it is a hub id (or, when it
            does not look like ``org/name``, a directory that does not exist).

    Raises:
        ValueError: ``spec`` is not a non-empty string, or is ``"hf:"`` alone.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            "a model is needed: 'smollm2-135m', 'tiny-random', a model directory, "
            f"'hf:<dir or org/name>' or a litellm model string; got {spec!r}"
        )
    prefixed = spec.startswith(HF_PREFIX)
    body = spec[len(HF_PREFIX) :] if prefixed else spec
    if not body.strip():
        raise ValueError(f"{spec!r} names no model: write 'hf:/path/to/dir' or 'hf:org/name'")
    if body in BUNDLED_MODEL_NAMES:
        return ModelSpec("bundled", body, spec)
    path = Path(body).expanduser()
    if path.is_dir():
        return ModelSpec("dir", str(path), spec)
    if not prefixed and api:
        return ModelSpec("litellm", spec, spec)
    if _looks_like_hub_id(body):
        return ModelSpec("hub", body, spec)
    return ModelSpec("dir", str(path), spec)


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not text.startswith((".", "~"))
        and all(c.isalnum() or c in "-_." for c in text.replace("/", ""))
    )
