"""``DatasetEnv``: tasks from data. Rows with a prompt (and a reference answer) become an env.

Any ``datasets.Dataset``, JSONL file or list of dicts with a prompt column (a string, or a list
of chat messages) becomes an envkit env; ``register_dataset`` registers it under an id in a few
lines. Answers are scored by a reward (a registered name, a function, a ``Reward`` or a
``Rubric``) or, by default, by the built-in answer check against the ``answer`` column:
``numeric_match`` when the reference is one number, else ``exact_match``. The reference lives
in ``Task.reference`` (and so in ``Trajectory.reference``), never in the step info.

Single-turn (``max_turns=1``): the episode's reward is the score of the one reply. Multi-turn:
a reply that scores below ``success_threshold`` gets ``retry_message`` and another try; the
episode's reward (the sum of its step rewards) is the score of its last reply.

Train/test splits are by content: a row is in the test split when a hash of its prompt and
``split_seed`` falls below ``test_fraction``. The same prompt is always in the same split, the
two splits never share a prompt, and reordering or appending rows moves no existing row.

Example:
    >>> from envkit.environments.dataset import register_dataset
    >>> rows = [{"question": f"What is the capital of {c}?", "answer": a} for c, a in
    ...         [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Peru", "Lima")]]
    >>> register_dataset("DocCapitals-v0", rows, prompt="question", answer="answer",
    ...                  test_fraction=0.25, override=True)
    'envkit/DocCapitals-v0'
    >>> import envkit
    >>> env = envkit.make("DocCapitals-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs[-1]["content"], info["split"]
    ('What is the capital of Peru?', 'train')
    >>> env.step("<answer>Lima</answer>")[1:3]
    (1.0, True)
    >>> envkit.make("DocCapitals-v0", split="test").unwrapped.num_tasks
    1
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from envkit.env import ChatEnv, Feedback, Task
from envkit.types import Message, Trajectory, TrajectoryGroup

__all__ = ["DatasetEnv", "DatasetRows", "load_rows", "register_dataset", "split_of"]

Split = Literal["train", "test", "all"]
SPLITS = ("train", "test", "all")
RESERVED_INFO = frozenset({"task_id", "turn", "split", "row", "score", "correct", "answer"})
"""Info keys the env writes itself (``answer`` is never info: the reference is not info)."""
DEFAULT_RETRY = "That is not correct. Try again."


# --------------------------------------------------------------------------- loading rows
def load_rows(data: Any) -> list[dict[str, Any]]:
    """The rows of ``data`` as a list of dicts.

    Args:
        data: A ``datasets.Dataset``, a path to a ``.jsonl`` file (one JSON object a line) or a
            ``.json`` file (a list of objects), a pandas ``DataFrame``, or a sequence of dicts.

    Raises:
        TypeError: ``data`` is none of these, or a row is not a dict.
        FileNotFoundError: the path does not exist.
        ValueError: a line of the file is not a JSON object; a ``DatasetDict`` (pick a split).

    Example:
        >>> load_rows([{"prompt": "2+2?", "answer": 4}])
        [{'prompt': '2+2?', 'answer': 4}]
    """
    if isinstance(data, (str, os.PathLike)):
        return _read_file(Path(data))
    if isinstance(data, Mapping):
        splits = [k for k, v in data.items() if hasattr(v, "column_names")]
        if splits:
            raise ValueError(
                f"got a DatasetDict with splits {splits}; pass one of them, e.g. "
                f"data[{splits[0]!r}] (envkit makes its own train/test split: test_fraction=...)"
            )
        raise TypeError(
            "got a single dict; pass a list of rows (dicts), a datasets.Dataset or a JSONL path"
        )
    if hasattr(data, "column_names") and not hasattr(data, "__len__"):
        raise TypeError(
            "got a streaming datasets.IterableDataset; envkit needs all rows to split them: "
            "materialize some, e.g. datasets.Dataset.from_list(list(ds.take(1000)))"
        )
    if hasattr(data, "column_names") and hasattr(data, "to_list"):  # datasets.Dataset
        return list(data.to_list())
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        return list(data.to_dict(orient="records"))
    if isinstance(data, Iterable) and not isinstance(data, (bytes, bytearray)):
        rows = []
        for i, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise TypeError(f"row {i} is a {type(row).__name__}, not a dict: {row!r:.100}")
            rows.append(dict(row))
        return rows
    raise TypeError(
        f"cannot read rows from a {type(data).__name__}; pass a datasets.Dataset, a path to a "
        ".jsonl/.json file, a pandas DataFrame or a list of dicts"
    )


def _read_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        return load_rows(items)
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e}); one object a line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: a {type(row).__name__}, not a JSON object")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- splits
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _fraction(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(prompt: Any, *, test_fraction: float, seed: int = 0) -> Literal["train", "test"]:
    """The split of a row with this prompt: ``"test"`` for about ``test_fraction`` of prompts.

    A deterministic hash of the prompt's content and ``seed`` (not of the row's position):
    the same prompt is always in the same split, in every process and on every machine.

    Example:
        >>> split_of("What is 2+2?", test_fraction=0.0), split_of("x", test_fraction=1.0)
        ('train', 'test')
    """
    return "test" if _fraction(_canonical(prompt), seed) < test_fraction else "train"


# --------------------------------------------------------------------------- validated rows
class DatasetRows:
    """Rows checked once for a prompt (and answer) column; their splits are cached.

    ``register_dataset`` loads and checks the data once; every env made from the id shares it.

    Args:
        data: Anything ``load_rows`` reads.
        prompt: The prompt column: a string, or a list of chat messages (``role``/``content``).
        answer: The reference-answer column (JSON: a string, number or list of accepted answers),
            or ``None`` when the reward needs no reference.
        info_columns: Other columns copied into the reset and step info, where rewards read
            their keyword arguments (e.g. a per-row ``pattern`` for ``regex_match``).

    Raises:
        ValueError: no rows, a missing column (the message lists the columns that exist), an
            empty or malformed prompt, a missing or non-JSON answer or info value.
    """

    def __init__(
        self,
        data: Any,
        *,
        prompt: str = "prompt",
        answer: str | None = "answer",
        info_columns: Sequence[str] = (),
    ) -> None:
        rows = load_rows(data)
        if not rows:
            raise ValueError("the dataset has no rows; pass at least one row with a prompt")
        if isinstance(info_columns, str):
            info_columns = [info_columns]
        clash = sorted(set(info_columns) & RESERVED_INFO)
        if clash:
            raise ValueError(f"info_columns {clash} clash with keys the env writes; rename them")
        columns: set[str] = set()
        for row in rows:
            columns.update(row)
        wanted = [("prompt", prompt)] + ([("answer", answer)] if answer is not None else [])
        wanted += [("info_columns", c) for c in info_columns]
        for param, column in wanted:
            if column not in columns:
                raise ValueError(
                    f"the {param} column {column!r} is not in the dataset; its columns are "
                    f"{sorted(columns)} (pass {param}=... naming one of them)"
                )
        self.rows = rows
        self.columns = sorted(columns)
        self.prompt = prompt
        self.answer = answer
        self.info_columns = list(info_columns)
        self.messages = [_prompt_messages(row, prompt, i) for i, row in enumerate(rows)]
        for i, row in enumerate(rows):
            if answer is not None:
                _check_json(row.get(answer), f"row {i}: the answer {answer!r}", allow_none=False)
            for c in info_columns:
                _check_json(row.get(c), f"row {i}: the info column {c!r}", allow_none=True)
        self._keys = [_canonical(row[prompt]) for row in rows]
        self._splits: dict[tuple[str, float, int], list[int]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def indices(self, split: Split, *, test_fraction: float, seed: int) -> list[int]:
        """The row numbers of ``split`` (in the data's order).

        Raises:
            ValueError: an unknown split, a ``test_fraction`` outside [0, 1), or a split with no
                rows (the message says how many rows each split has and what to change).
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        frac = float(test_fraction)
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
        if split == "all":
            return list(range(len(self.rows)))
        cache_key = (split, frac, int(seed))
        if cache_key not in self._splits:
            test = [i for i, k in enumerate(self._keys) if _fraction(k, int(seed)) < frac]
            test_set = set(test)
            train = [i for i in range(len(self.rows)) if i not in test_set]
            self._splits[("test", frac, int(seed))] = test
            self._splits[("train", frac, int(seed))] = train
        out = self._splits[cache_key]
        if not out:
            n_test = len(self._splits[("test", frac, int(seed))])
            hint = (
                "raise test_fraction" if split == "test" else "lower test_fraction"
            ) + " or use split='all'"
            raise ValueError(
                f"the {split!r} split has no rows ({len(self.rows)} rows: "
                f"{len(self.rows) - n_test} train, {n_test} test with test_fraction={frac}, "
                f"split_seed={seed}); {hint}"
            )
        return out


def _prompt_messages(row: Mapping[str, Any], column: str, i: int) -> list[dict[str, Any]]:
    value = row.get(column)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"row {i}: the prompt {column!r} is empty")
        return [{"role": "user", "content": value}]
    if isinstance(value, Sequence) and value and all(isinstance(m, Mapping) for m in value):
        try:
            messages = [Message.coerce(dict(m)).to_dict() for m in value]
        except Exception as e:
            raise ValueError(f"row {i}: the prompt {column!r} has a bad message: {e}") from None
        if messages[-1]["role"] == "assistant":
            raise ValueError(
                f"row {i}: the prompt {column!r} ends with an assistant message; the model "
                "answers the last user message, so end the prompt with one"
            )
        return messages
    raise ValueError(
        f"row {i}: the prompt {column!r} must be a non-empty string or a list of chat messages "
        f"({{'role': ..., 'content': ...}}), got {type(value).__name__}: {value!r:.100}"
    )


def _check_json(value: Any, what: str, *, allow_none: bool) -> None:
    if value is None and not allow_none:
        raise ValueError(f"{what} is missing (None); every row needs a reference answer")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not JSON ({type(value).__name__}): {e}") from None


# --------------------------------------------------------------------------- scoring
def _answer_check(trajectory: Trajectory, answer: Any = None) -> float:
    """``numeric_match`` when the reference is one number, else ``exact_match``."""
    from envkit.parsing import as_number
    from envkit.rewards.verifiable.answers import exact_match, numeric_match

    if answer is not None and not isinstance(answer, list) and as_number(answer) is not None:
        return numeric_match(trajectory, answer=answer)
    return exact_match(trajectory, answer=answer)


def _per_trajectory(scorer: Any) -> bool:
    from envkit.rewards.registry import Reward
    from envkit.rewards.rubric import Rubric

    if isinstance(scorer, Reward):
        return not scorer.group
    if isinstance(scorer, Rubric):
        return all(_per_trajectory(s) for s, _ in scorer.components)
    return False


def _make_scorer(reward: Any, answer: str | None) -> Any:
    from envkit.rewards.registry import Reward
    from envkit.rewards.scoring import as_scorer

    if reward is None:
        if answer is None:
            raise ValueError(
                "nothing to score answers with: name the reference column (answer='...') for "
                "the built-in answer check, or pass reward= (a registered name, a function "
                "fn(trajectory, **kw) -> float, a Reward or a Rubric)"
            )
        return Reward(_answer_check, name="answer_check", inline=True)
    scorer = as_scorer(reward)
    if not _per_trajectory(scorer):
        raise TypeError(
            f"the env scores each reply on its own, but {scorer!r} scores whole groups (a judge "
            "or a group reward); give the env an answer column or a per-reply reward, and pass "
            "the group scorer to the trainer (GRPOTrainer(reward=...), envkit train --judge)"
        )
    return scorer


# --------------------------------------------------------------------------- the env
class DatasetEnv(ChatEnv):
    """Tasks from data: each reset draws a row of the split; a reward scores the replies.

    Args:
        data: A ``DatasetRows``, or anything ``load_rows`` reads (``datasets.Dataset``, JSONL
            path, list of dicts).
        prompt: The prompt column (a string, or a list of chat messages).
        answer: The reference-answer column (``None``: no reference; then pass ``reward``).
        reward: How a reply is scored: a registered reward name, a function
            ``fn(trajectory, **kw) -> float | None``, a ``Reward`` or a ``Rubric`` of such;
            ``None``: the built-in answer check (``numeric_match`` for a numeric reference, else
            ``exact_match``). Group scorers (a judge) belong to the trainer, not the env.
        max_turns: Tries per task (1: single-turn).
        split: ``"train"``, ``"test"`` or ``"all"``.
        test_fraction: The share of prompts in the test split (0 <= f < 1).
        split_seed: Seed of the split's hash (another seed, another split).
        info_columns: Columns copied into the reset and step info (for rewards' keyword
            arguments).
        success_threshold: A reply that scores at least this ends the episode.
        retry_message: The user's reply to a reply below the threshold (multi-turn).
        system_prompt: Replaces (or adds) the system message of every task.
        render_mode: ``"ansi"``, ``"human"`` or ``None``.

    Raises:
        ValueError: see ``DatasetRows``; an empty split; nothing to score with.
        TypeError: a group reward or judge as ``reward``.
    """

    def __init__(
        self,
        *,
        data: Any,
        prompt: str = "prompt",
        answer: str | None = "answer",
        reward: Any = None,
        max_turns: int = 1,
        split: Split = "train",
        test_fraction: float = 0.0,
        split_seed: int = 0,
        info_columns: Sequence[str] = (),
        success_threshold: float = 1.0,
        retry_message: str = DEFAULT_RETRY,
        system_prompt: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, render_mode=render_mode)
        if isinstance(data, DatasetRows):
            if (data.prompt, data.answer) != (prompt, answer) or list(info_columns) not in (
                [],
                data.info_columns,
            ):
                data = DatasetRows(
                    data.rows, prompt=prompt, answer=answer, info_columns=info_columns
                )
            rows = data
        else:
            rows = DatasetRows(data, prompt=prompt, answer=answer, info_columns=info_columns)
        self.data = rows
        self.split = split
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.indices = rows.indices(split, test_fraction=test_fraction, seed=split_seed)
        self.scorer = _make_scorer(reward, answer)
        self.success_threshold = float(success_threshold)
        self.retry_message = retry_message
        self._info: dict[str, Any] = {}

    @property
    def num_tasks(self) -> int:
        """How many rows the env's split holds."""
        return len(self.indices)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        index = (options or {}).get("index")
        if index is None:
            index = int(self.np_random.integers(len(self.indices)))
        elif isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"options['index'] must be an int, got {index!r}")
        elif not 0 <= index < len(self.indices):
            raise ValueError(
                f"options['index']={index} is out of range: the {self.split!r} split has "
                f"{len(self.indices)} rows"
            )
        i = self.indices[index]
        row = self.data.rows[i]
        key = hashlib.sha256(self.data._keys[i].encode()).hexdigest()[:12]
        self._info = {c: row.get(c) for c in self.data.info_columns}
        reference = row[self.data.answer] if self.data.answer is not None else None
        return Task(
            messages=self.data.messages[i],
            id=key,
            answer=reference,
            info={"split": self.split, "row": i, **copy.deepcopy(self._info)},
            reference=reference,
        )

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        score, breakdown = self._score()
        correct = score >= self.success_threshold
        last = self.turn >= self.max_turns
        info = {"score": score, "correct": correct, "reward_breakdown": breakdown}
        info.update(copy.deepcopy(self._info))  # never an object reset's info holds too
        if correct or last:
            return Feedback(reward=score, done=correct, info=info)
        return Feedback(messages=[{"role": "user", "content": self.retry_message}], info=info)

    def _score(self) -> tuple[float, dict[str, float | None]]:
        from envkit._async import run_sync

        assert self.task is not None
        env_id = self.spec.id if self.spec is not None else type(self).__name__
        traj = Trajectory(
            env_id=env_id,
            messages=list(self.messages),
            reference=self.task.reference,
            info=copy.deepcopy(self._info),
        )
        scores = run_sync(self.scorer.evaluate(TrajectoryGroup(env_id=env_id, trajectories=[traj])))
        value = scores.totals[0]
        if value is None:
            errors = scores.errors[0] or {"?": "the reward returned None (unknown)"}
            raise ValueError(
                f"{self.scorer.name!r} could not score this reply: "
                + "; ".join(f"{k}: {v}" for k, v in errors.items())
            )
        return float(value), dict(scores.breakdown[0])


# --------------------------------------------------------------------------- registration
class _DatasetFactory:
    """The entry point of a registered dataset env: shares one ``DatasetRows`` and reward."""

    metadata = DatasetEnv.metadata

    def __init__(self, rows: DatasetRows, reward: Any, env_id: str) -> None:
        self.rows = rows
        self.reward = reward
        self.__doc__ = f"Tasks from data: {len(rows)} rows, columns {rows.columns}."
        self.__name__ = f"DatasetEnv[{env_id}]"

    def __call__(self, **kwargs: Any) -> DatasetEnv:
        kwargs.setdefault("reward", self.reward)
        return DatasetEnv(data=self.rows, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.__name__}: {len(self.rows)} rows>"


def register_dataset(
    id: str,
    data: Any,
    *,
    prompt: str = "prompt",
    answer: str | None = "answer",
    reward: Any = None,
    max_turns: int = 1,
    split: Split = "train",
    test_fraction: float = 0.0,
    split_seed: int = 0,
    info_columns: Sequence[str] = (),
    success_threshold: float = 1.0,
    retry_message: str = DEFAULT_RETRY,
    system_prompt: str | None = None,
    override: bool = False,
) -> str:
    """Registers a ``DatasetEnv`` on ``data`` under ``envkit/<id>``; returns the full id.

    The data is loaded and checked now (errors surface here, not at the first ``make``); every
    env made from the id shares it. The arguments are ``DatasetEnv``'s; all but ``data`` and
    ``reward`` are the registration's default kwargs, which ``envkit.make(id, split="test")``
    and ``envkit train -k split=test`` override.

    Raises:
        ValueError, TypeError: see ``DatasetEnv``; gymnasium.error.Error: a bad or taken id.
    """
    from envkit.registration import full_id, register

    rows = DatasetRows(data, prompt=prompt, answer=answer, info_columns=info_columns)
    kwargs = {
        "prompt": prompt,
        "answer": answer,
        "max_turns": max_turns,
        "split": split,
        "test_fraction": test_fraction,
        "split_seed": split_seed,
        "info_columns": list(info_columns),
        "success_threshold": success_threshold,
        "retry_message": retry_message,
        "system_prompt": system_prompt,
    }
    DatasetEnv(data=rows, reward=reward, **kwargs).close()  # fail now on a bad split or reward
    factory = _DatasetFactory(rows, reward, full_id(id))
    return register(id, factory, kwargs=kwargs, override=override)
