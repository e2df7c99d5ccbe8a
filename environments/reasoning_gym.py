"""``envkit/rg-<name>-v0``: reasoning-gym's procedural generators as envkit envs.

`reasoning-gym <https://pypi.org/project/reasoning-gym/>`_ (``pip install 'envkit-rl[rg]'``)
generates tasks of about a hundred kinds (arithmetic, algebra, logic, games, graphs, ...) and
scores answers with each generator's own ``score_answer``. Every generator ``<name>`` is the env
``envkit/rg-<name>-v0``. The ids are registered on first use (``envkit.make``, ``envkit list``,
``envkit check``/``eval``/``train``, or ``register_envs()``), because importing reasoning-gym
takes about a second.

A task is generated from the env's ``np_random``: ``reset(seed=s)`` draws a generator seed and
builds the one-task dataset ``create_dataset(name, seed=..., size=1, **config)``, so the same
seed gives the same task (for a given reasoning-gym version). The reply's answer is what it
marks (``<answer>...</answer>`` as reasoning-gym's system prompt asks, or ``\\boxed{}``, "the
answer is ..."; see ``envkit.parsing.find_answer``); a reply that marks none submits ``None``.
The reward is ``score_answer(answer, entry)`` in [0, 1]; the registered reward ``reasoning_gym``
computes the same score from a trajectory (for rubrics and re-scoring).

Example:
    >>> import envkit
    >>> env = envkit.make("rg-basic_arithmetic-v0", config={"max_terms": 2, "max_digits": 1})
    >>> obs, info = env.reset(seed=0)
    >>> obs[-1]["content"], env.unwrapped.task.reference
    ('Calculate ( ( 5 + 0 ) ).', '5')
    >>> env.step("5 + 0 = 5, so <answer>5</answer>")[1:3]
    (1.0, True)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from envkit.env import ChatEnv, Feedback, Task
from envkit.parsing import extract_answer, final_response
from envkit.rewards.registry import reward
from envkit.types import Message, Trajectory

__all__ = [
    "ID_PREFIX",
    "SKIPPED",
    "ReasoningGymEnv",
    "dataset_names",
    "env_id",
    "reasoning_gym_score",
    "register_envs",
]

ID_PREFIX = "envkit/rg-"
SKIPPED = frozenset({"composite"})
"""Generators not registered as envs: ``composite`` needs a list of datasets (mix envs instead)."""
INSTALL_HINT = "pip install 'envkit-rl[rg]' (or pip install reasoning-gym)"
DEFAULT_RETRY = "That is not correct. Try again, and put the final answer in <answer></answer>."
_ENTRY_POINT = "envkit.environments.reasoning_gym:ReasoningGymEnv"


def _rg() -> Any:
    """The ``reasoning_gym`` module, or ``DependencyNotInstalled`` saying how to install it."""
    try:
        import reasoning_gym
    except ImportError as e:
        raise gym.error.DependencyNotInstalled(
            f"the envkit/rg-* envs need the reasoning-gym package ({e}); {INSTALL_HINT}"
        ) from None
    return reasoning_gym


def dataset_names() -> list[str]:
    """reasoning-gym's generator names that are envs here (sorted; ``SKIPPED`` left out)."""
    _rg()
    from reasoning_gym.factory import DATASETS

    return sorted(n for n in DATASETS if n not in SKIPPED)


def env_id(name: str) -> str:
    """The env id of a generator: ``"basic_arithmetic"`` -> ``"envkit/rg-basic_arithmetic-v0"``."""
    return f"{ID_PREFIX}{name}-v0"


def register_envs() -> list[str]:
    """Registers ``envkit/rg-<name>-v0`` for every reasoning-gym generator; returns the ids.

    Idempotent. ``envkit.make`` and the CLI call it when they meet an ``rg-`` id.

    Raises:
        gymnasium.error.DependencyNotInstalled: reasoning-gym is not installed.
    """
    _rg()
    ids = []
    for name in dataset_names():
        fid = env_id(name)
        if fid not in gym.registry:
            gym.register(id=fid, entry_point=_ENTRY_POINT, kwargs={"dataset": name})
        ids.append(fid)
    return ids


def _config_fields(name: str) -> dict[str, Any]:
    from reasoning_gym.factory import DATASETS

    return {f.name: f for f in dataclasses.fields(DATASETS[name][1])}


@functools.lru_cache(maxsize=1024)
def _entry(name: str, seed: int, config_json: str) -> tuple[Any, dict[str, Any]]:
    """(dataset, entry) of the one-task dataset of ``name`` with this seed and config."""
    from reasoning_gym import create_dataset

    dataset = create_dataset(name, seed=seed, size=1, **json.loads(config_json))
    return dataset, dataset[0]


def _check_config(name: str, config: Mapping[str, Any]) -> str:
    """``config`` as canonical JSON after checking it names fields of the generator's config."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict of {name}'s settings, got {config!r}")
    fields = _config_fields(name)
    unknown = sorted(set(config) - set(fields))
    if unknown:
        known = sorted(set(fields) - {"seed", "size"})
        raise ValueError(f"{name} has no setting(s) {unknown}; its settings are {known}")
    if "seed" in config or "size" in config:
        raise ValueError(
            "config sets 'seed'/'size', which the env controls: each reset(seed=...) builds a "
            "one-task dataset from a seed drawn with the env's np_random"
        )
    try:
        return json.dumps(dict(config), sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config must be JSON (numbers, strings, lists, dicts): {e}") from None


def _submitted(text: str | None) -> str | None:
    """The answer a reply marks (``<answer>``, ``\\boxed{}``, "the answer is ..."), or None."""
    return extract_answer(text)


_EXACT = frozenset({"game_of_life_halting"})
"""Datasets whose own ``score_answer`` pays any non-empty answer (reasoning-gym compares
``bool(answer)`` with ``bool("False")``; found by ``envkit validate``): their answer is compared
with the reference instead, case- and space-insensitively."""


def _score(dataset: Any, answer: str | None, entry: dict[str, Any]) -> float:
    if (entry.get("metadata") or {}).get("source_dataset") in _EXACT:
        expected = str(entry.get("answer", "")).strip().lower()
        return float(answer is not None and answer.strip().lower() == expected)
    try:
        value = float(dataset.score_answer(answer, entry))
    except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError):
        # reasoning-gym's scorers parse answers and some raise on malformed ones
        # (prime_factorization: int("E")): a malformed answer is a wrong one, not a crash.
        return 0.0
    if not math.isfinite(value):
        raise ValueError(f"reasoning-gym's score_answer returned {value}")
    return value


class ReasoningGymEnv(ChatEnv):
    """A reasoning-gym generator as an env, scored by the generator's own ``score_answer``.

    Args:
        dataset: The generator's name (``reasoning_gym.factory.DATASETS``), e.g.
            ``"basic_arithmetic"``.
        config: Settings of the generator's config (e.g. ``{"max_terms": 3}``), without
            ``seed``/``size``.
        max_turns: Tries per task; a reply that scores below ``success_threshold`` gets
            ``retry_message``. The episode's reward is the score of its last reply.
        prompt_style: A key of ``reasoning_gym.utils.SYSTEM_PROMPTS`` (``"default"`` asks for
            ``<answer>`` tags) used as the system message, or ``None`` for none.
        success_threshold: A reply that scores at least this ends the episode.
        retry_message: The user's reply to a reply below the threshold.
        system_prompt: Replaces the system message (overrides ``prompt_style``).
        render_mode: ``"ansi"``, ``"human"`` or ``None``.

    Raises:
        gymnasium.error.DependencyNotInstalled: reasoning-gym is not installed.
        ValueError: an unknown generator or setting, or a config the generator rejects.
    """

    def __init__(
        self,
        *,
        dataset: str,
        config: Mapping[str, Any] | None = None,
        max_turns: int = 1,
        prompt_style: str | None = "default",
        success_threshold: float = 1.0,
        retry_message: str = DEFAULT_RETRY,
        system_prompt: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, render_mode=render_mode)
        rg = _rg()
        from reasoning_gym.utils import SYSTEM_PROMPTS

        names = dataset_names()
        if dataset not in names:
            import difflib

            close = difflib.get_close_matches(str(dataset), names, n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(
                f"reasoning-gym {rg.__name__} has no generator {dataset!r}{hint} "
                "(envkit list shows the rg- envs)"
            )
        if prompt_style is not None and prompt_style not in SYSTEM_PROMPTS:
            raise ValueError(
                f"prompt_style must be one of {sorted(SYSTEM_PROMPTS)} or None, got "
                f"{prompt_style!r}"
            )
        self.dataset = dataset
        self.config = dict(config or {})
        self._config_json = _check_config(dataset, self.config)
        try:  # the generator's own validation, now rather than at the first reset
            _entry(dataset, 0, self._config_json)
        except AssertionError as e:
            raise ValueError(f"{dataset} rejects config {self.config}: {e}") from None
        self.prompt_style = prompt_style
        self._system = SYSTEM_PROMPTS[prompt_style] if prompt_style is not None else None
        self.success_threshold = float(success_threshold)
        self.retry_message = retry_message
        self._seed: int | None = None
        self._dataset: Any = None

    def _facts(self) -> dict[str, Any]:
        # fresh objects every call: reset's and step's infos must not share one (check_env)
        config = json.loads(self._config_json)
        return {"rg_dataset": self.dataset, "rg_seed": self._seed, "rg_config": config}

    def make_task(self, options: dict[str, Any] | None) -> Task:
        self._seed = int(self.np_random.integers(2**31))
        self._dataset, entry = _entry(self.dataset, self._seed, self._config_json)
        messages = [{"role": "user", "content": str(entry["question"])}]
        if self._system is not None:
            messages.insert(0, {"role": "system", "content": self._system})
        reference = entry.get("answer")
        return Task(
            messages=messages,
            id=f"{self.dataset}:{self._seed}",
            answer=entry,
            info=self._facts(),
            reference=reference if isinstance(reference, (str, int, float)) else None,
        )

    def golden(self) -> list[Any] | None:
        """The dataset's answer in ``<answer>`` tags (``None`` when the entry has none)."""
        ref = self.task.reference if self.task is not None else None
        return (
            None if ref is None else [{"role": "assistant", "content": f"<answer>{ref}</answer>"}]
        )

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        answer = _submitted(message.content)
        score = _score(self._dataset, answer, self.task.answer)
        correct = score >= self.success_threshold
        info = {**self._facts(), "submitted": answer, "score": score, "correct": correct}
        if correct or self.turn >= self.max_turns:
            return Feedback(reward=score, done=correct, info=info)
        return Feedback(messages=[{"role": "user", "content": self.retry_message}], info=info)


@reward(name="reasoning_gym")
def reasoning_gym_score(
    trajectory: Trajectory,
    rg_dataset: str | None = None,
    rg_seed: int | None = None,
    rg_config: Mapping[str, Any] | None = None,
) -> float:
    """reasoning-gym's ``score_answer`` on an episode of an ``envkit/rg-*`` env.

    The task is rebuilt from the env's step info (``rg_dataset``, ``rg_seed``, ``rg_config``);
    the answer is the one the env graded (info ``submitted``), or, without it, the one the final
    reply marks. Episodes of other envs cannot be scored: an error (the reward is ``None``).

    Example:
        >>> from envkit.types import Message, Trajectory
        >>> reply = Message(role="assistant", content="<answer>8</answer>")
        >>> t = Trajectory(env_id="x", messages=[reply],
        ...                info={"rg_dataset": "basic_arithmetic", "rg_seed": 1,
        ...                      "rg_config": {"max_terms": 2, "max_digits": 1}})
        >>> reasoning_gym_score(t, **t.info)
        0.0
    """
    if rg_dataset is None or rg_seed is None:
        raise ValueError(
            "reasoning_gym scores episodes of envkit/rg-* envs; this trajectory's info has no "
            "rg_dataset/rg_seed (it comes from another env)"
        )
    _rg()
    dataset, entry = _entry(rg_dataset, int(rg_seed), _check_config(rg_dataset, rg_config or {}))
    if "submitted" in trajectory.info:
        submitted = trajectory.info["submitted"]
        answer = submitted if isinstance(submitted, str) else None
    else:
        answer = _submitted(final_response(trajectory))
    return _score(dataset, answer, entry)
