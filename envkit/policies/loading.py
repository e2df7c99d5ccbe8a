"""``load_policy``: one string names a policy, as ``envkit eval --model`` takes it.

* ``"smollm2-135m"``, ``"tiny-random"``: the bundled local models (``HFPolicy``).
* ``"hf:<dir or hub id>"``: any local transformers causal LM (``HFPolicy``).
* an existing local directory (``./runs/merged``, ``/models/qwen``): loaded like ``hf:<dir>``,
  as ``envkit train --model`` loads it.
* anything else: a litellm model string (``LiteLLMPolicy``), e.g. ``"gpt-4o-mini"`` or
  ``"openai/<name>"`` with ``api_base=`` for an OpenAI-compatible server.

The string is read by ``envkit.model_spec.parse_model_spec``, as everywhere else in envkit.

Example:
    >>> from envkit.policies import load_policy
    >>> type(load_policy("openai/my-model", api_base="http://127.0.0.1:8000/v1")).__name__
    'LiteLLMPolicy'
    >>> type(load_policy("tiny-random", max_tokens=8)).__name__
    'HFPolicy'
"""

from __future__ import annotations

import inspect
from typing import Any

from envkit.model_spec import parse_model_spec
from envkit.policies.base import Policy

__all__ = ["is_local_spec", "load_policy"]


def is_local_spec(spec: str) -> bool:
    """Whether ``spec`` names a local transformers model (an ``HFPolicy``).

    Bundled names, ``hf:...`` and existing directories do; everything else is a litellm model.

    Raises:
        ValueError: an empty spec, or ``"hf:"`` alone.
    """
    return parse_model_spec(spec).local


def load_policy(spec: str, **kwargs: Any) -> Policy:
    """Builds the policy that ``spec`` names.

    Args:
        spec: ``"smollm2-135m"``, ``"tiny-random"``, ``"hf:/path/or/hub-id"`` or a litellm
            model string; an existing directory is a local model too.
        **kwargs: Arguments of the policy class. ``max_tokens`` is accepted for both kinds
            (``HFPolicy`` calls it ``max_new_tokens``); ``None`` values mean "default". Local
            models also take ``device`` (``"auto"``: CUDA when available), ``dtype`` and
            ``engine``.

    Raises:
        ValueError: an empty spec, or an argument that only API policies take (``api_base``)
            given for a local model.
        TypeError: an argument the policy does not take.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            "a policy spec is needed: 'smollm2-135m', 'tiny-random', 'hf:/path/to/model' or a "
            f"litellm model string such as 'gpt-4o-mini'; got {spec!r}"
        )
    if is_local_spec(spec):
        return _load_hf(spec, kwargs)
    from envkit.policies.litellm import LiteLLMPolicy

    return LiteLLMPolicy(spec, **kwargs)


def _load_hf(spec: str, kwargs: dict[str, Any]) -> Policy:
    from envkit.policies.hf import HFPolicy

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if "max_tokens" in kwargs:
        kwargs["max_new_tokens"] = kwargs.pop("max_tokens")
    for key in ("api_base", "api_key"):
        if key in kwargs:
            raise ValueError(
                f"{key} is for API models; {spec!r} is a local transformers model. Drop {key}, "
                "or name the served model as a litellm string such as 'openai/<name>'"
            )
    accepted = set(inspect.signature(HFPolicy.__init__).parameters) - {"self", "model", "tokenizer"}
    accepted |= {"device", "dtype"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"HFPolicy ({spec!r}) does not take {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(accepted | {'max_tokens'}))}"
        )
    return HFPolicy.from_pretrained(spec, **kwargs)  # load_model reads the spec
