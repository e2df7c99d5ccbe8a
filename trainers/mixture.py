"""``EnvMixture``: several envs in one GRPO run, each drawn with its weight.

Every GRPO group comes from ONE env (advantages are relative to the group, so the rewards of two
envs are never compared); which env a group uses is drawn from the weights with a generator
seeded by the run's seed, so a run and its resume see the same sequence. Per-env metrics are
logged as ``env/<id>/reward/mean``, ``env/<id>/episodes``, ``env/<id>/groups`` and
``env/<id>/groups/zero_variance_frac`` (``<id>`` without the ``envkit/`` namespace).

Example:
    >>> from envkit.trainers import EnvMixture
    >>> mix = EnvMixture([("Arithmetic-v0", 2.0), ("Countdown-v0", 1.0)],
    ...                  kwargs={"Countdown-v0": {"max_turns": 2}})
    >>> mix.names
    ['envkit/Arithmetic-v0', 'envkit/Countdown-v0']
    >>> mix.probabilities
    [0.6666666666666666, 0.3333333333333333]
    >>> mix.assign(6, seed=0) == mix.assign(6, seed=0)
    True
    >>> EnvMixture([("Arithmetic-v0", 0)])
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for EnvMixture
    ...
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from envkit.metrics import Reduction

__all__ = [
    "PER_ENV_METRICS",
    "EnvMixture",
    "MixtureEntry",
    "metric_name",
    "parse_env_weight",
    "per_env_metrics",
]

PER_ENV_METRICS: dict[str, Reduction] = {
    "env/*/reward/mean": "mean",
    "env/*/episodes": "sum",
    "env/*/groups": "sum",
    "env/*/groups/zero_variance_frac": "mean",
}
"""The metrics of ``per_env_metrics`` and how a multi-process run merges each
(``envkit.metrics.merge_metrics``)."""

EnvLike = str | Callable[..., Any]


def _name(env: EnvLike) -> str:
    if isinstance(env, str):
        from envkit.registration import full_id

        return full_id(env)
    return getattr(env, "__name__", type(env).__name__)


def metric_name(name: str) -> str:
    """The ``<id>`` of ``env/<id>/...`` metric keys: the env name without ``envkit/``."""
    return name.removeprefix("envkit/")


class MixtureEntry(BaseModel):
    """One env of a mixture: the env (id or factory), its weight and its own kwargs."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    env: Any
    weight: float = 1.0
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("env", mode="before")
    @classmethod
    def _check_env(cls, value: Any) -> EnvLike:
        if isinstance(value, str):
            import gymnasium as gym

            from envkit.registration import spec

            if not value:
                raise ValueError("an env id must be a non-empty string, e.g. 'Arithmetic-v0'")
            try:
                spec(value)
            except gym.error.Error as e:
                raise ValueError(
                    f"{e} (run `envkit list` to see the registered environments)"
                ) from None
        elif not callable(value):
            raise ValueError(
                f"an env must be a registered id or a factory returning a ChatEnv, got "
                f"{type(value).__name__}"
            )
        return value

    @field_validator("weight", mode="before")
    @classmethod
    def _check_weight(cls, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"a weight must be a number > 0, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
            raise ValueError(
                f"a weight must be a finite number > 0, got {value!r} (leave an env out of the "
                "mixture instead of giving it weight 0)"
            )
        return number

    @property
    def name(self) -> str:
        """The env's full id (``envkit/Arithmetic-v0``) or the factory's name."""
        return _name(self.env)


class EnvMixture(BaseModel):
    """Envs to train on in one run, each GRPO group drawn from one of them by weight.

    Args:
        envs: Each item is an env id or factory (weight 1), an ``(env, weight)`` or
            ``(env, weight, kwargs)`` tuple, a mapping with ``env``/``weight``/``kwargs`` keys,
            or a ``MixtureEntry``.
        kwargs: Per-env constructor kwargs keyed by env id (merged over each entry's own).

    Raises:
        pydantic.ValidationError (a ValueError): no envs, an unknown id, a weight that is not a
            finite number > 0, an env given twice, or ``kwargs`` for an env not in the mixture.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    entries: tuple[MixtureEntry, ...]

    def __init__(
        self,
        envs: Iterable[Any] = (),
        /,
        *,
        kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        **data: Any,
    ) -> None:
        if "entries" not in data:
            if isinstance(envs, (str, bytes)) or not isinstance(envs, Iterable):
                envs = [envs]
            data["entries"] = [_entry(item) for item in envs]
            data["extra_kwargs"] = dict(kwargs or {})
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _merge_kwargs(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "extra_kwargs" not in data:
            return data
        data = dict(data)
        extra = data.pop("extra_kwargs")
        entries = list(data.get("entries") or [])
        names = []
        for item in entries:
            env = item.env if isinstance(item, MixtureEntry) else item.get("env")
            names.append(_name(env) if isinstance(env, str) or callable(env) else str(env))
        for key, kw in extra.items():
            target = _name(key) if isinstance(key, str) and key else key
            if target not in names:
                raise ValueError(
                    f"kwargs given for {key!r}, which is not in the mixture ({', '.join(names)})"
                )
            i = names.index(target)
            item = entries[i]
            if isinstance(item, MixtureEntry):
                item = item.model_dump()
            entries[i] = {**item, "kwargs": {**dict(item.get("kwargs") or {}), **dict(kw)}}
        data["entries"] = entries
        return data

    @model_validator(mode="after")
    def _unique(self) -> EnvMixture:
        if not self.entries:
            raise ValueError(
                "a mixture needs at least one env, e.g. EnvMixture([('Arithmetic-v0', 2.0), "
                "('Countdown-v0', 1.0)])"
            )
        seen: set[str] = set()
        for entry in self.entries:
            if entry.name in seen:
                raise ValueError(
                    f"{entry.name} is in the mixture twice; give each env once with the sum of "
                    "its weights"
                )
            seen.add(entry.name)
        return self

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        """Each env's full id (or factory name), in order."""
        return [e.name for e in self.entries]

    @property
    def probabilities(self) -> list[float]:
        """Each env's share of the groups (weights normalized to sum to 1)."""
        total = sum(e.weight for e in self.entries)
        return [e.weight / total for e in self.entries]

    def env_kwargs(self, index: int, shared: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The kwargs env ``index`` is made with: ``shared`` (config.env_kwargs) then its own."""
        return {**dict(shared or {}), **self.entries[index].kwargs}

    def describe(self) -> str:
        """``envkit/Arithmetic-v0:2 + envkit/Countdown-v0:1``."""
        return " + ".join(f"{e.name}:{e.weight:g}" for e in self.entries)

    def spec(self) -> list[dict[str, Any]]:
        """What run.json records: ``[{"env", "weight", "kwargs"}, ...]`` (JSON-ready)."""
        return [{"env": e.name, "weight": e.weight, "kwargs": e.kwargs} for e in self.entries]

    # ------------------------------------------------------------------ sampling
    def assign(self, n_groups: int, seed: int) -> list[int]:
        """The env index of each of ``n_groups`` groups, drawn by weight.

        Deterministic in ``(seed, the mixture's names and weights)``: the same run (and its
        resume) draws the same sequence; the draws are independent across groups.
        """
        key = repr((seed, "env-mixture", [(e.name, e.weight) for e in self.entries]))
        rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        return rng.choices(range(len(self.entries)), weights=self.probabilities, k=n_groups)

    def check(self, shared: Mapping[str, Any] | None = None) -> None:
        """Makes each env once with its kwargs, so a bad kwarg fails before training.

        Raises:
            ValueError: making an env failed; the message names the env.
        """
        from envkit.registration import make_chat_env

        for i, entry in enumerate(self.entries):
            kwargs = self.env_kwargs(i, shared)
            try:
                if isinstance(entry.env, str):
                    env = make_chat_env(entry.env, **kwargs)
                else:
                    env = entry.env(**kwargs)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"{entry.name} cannot be made with kwargs {kwargs}: {e}. Give an env's own "
                    f"kwargs to it alone (EnvMixture(kwargs={{{entry.name!r}: {{...}}}}) or "
                    f"`-k {metric_name(entry.name)}.KEY=VALUE`)"
                ) from e
            env.close()


def _entry(item: Any) -> Any:
    if isinstance(item, MixtureEntry | Mapping):
        return item
    if isinstance(item, tuple | list):
        if not 1 <= len(item) <= 3:
            raise ValueError(
                f"a mixture item must be env, (env, weight) or (env, weight, kwargs), got {item!r}"
            )
        return dict(zip(("env", "weight", "kwargs"), item, strict=False))
    return {"env": item}


def parse_env_weight(text: str) -> tuple[str, float | None]:
    """``"Arithmetic-v0:2"`` -> ``("Arithmetic-v0", 2.0)``; no number after the last ``:``
    (``"envkit/rg:leg_counting-v0"``) -> ``(text, None)``.

    Raises:
        ValueError: the weight is a number but not a finite one > 0.
    """
    head, sep, tail = text.rpartition(":")
    if not sep or not head:
        return text, None
    try:
        weight = float(tail)
    except ValueError:
        return text, None
    if not math.isfinite(weight) or weight <= 0:
        raise ValueError(
            f"{text!r}: the weight after ':' must be a finite number > 0, got {tail!r}"
        )
    return head, weight


def per_env_metrics(groups: Sequence[Any], names: Sequence[str]) -> dict[str, float]:
    """``env/<id>/...`` metrics of one step: ``groups[i]`` was played on env ``names[i]``.

    Per env: ``reward/mean`` (over episodes with a known reward; NaN when none),
    ``episodes``, ``groups`` and ``groups/zero_variance_frac`` (groups whose rewards all tie).
    """
    from envkit.trainers.diagnostics import group_signal

    out: dict[str, float] = {}
    for name in dict.fromkeys(names):
        part = [g for g, n in zip(groups, names, strict=True) if n == name]
        rewards = [t.reward for g in part for t in g if t.reward is not None]
        prefix = f"env/{metric_name(name)}"
        out[f"{prefix}/reward/mean"] = sum(rewards) / len(rewards) if rewards else math.nan
        out[f"{prefix}/episodes"] = float(sum(len(g.trajectories) for g in part))
        out[f"{prefix}/groups"] = float(len(part))
        zero = sum(group_signal(g) == "zero_variance" for g in part)
        out[f"{prefix}/groups/zero_variance_frac"] = zero / len(part)
    return out
