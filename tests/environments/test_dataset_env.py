"""Tasks from data: ``DatasetEnv`` / ``register_dataset`` (``envkit.environments.dataset``)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import gymnasium as gym
import pytest

import envkit
from envkit.checks import run_checks
from envkit.environments import DatasetEnv, register_dataset
from envkit.environments.dataset import DatasetRows, load_rows, split_of
from envkit.policies import CallablePolicy
from envkit.rewards import Rubric, reward, score_groups, unregister
from envkit.types import Trajectory, TrajectoryGroup, read_jsonl

CAPITALS = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Peru", "Lima"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Chile", "Santiago"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Norway", "Oslo"),
]
ROWS = [{"question": f"What is the capital of {c}?", "answer": a} for c, a in CAPITALS]
ARITH = [{"prompt": f"What is {a} + {b}?", "answer": a + b} for a in range(30) for b in range(30)]


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    before = set(gym.registry)
    yield
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]


def _capital_of(prompt: str) -> str:
    country = prompt.removeprefix("What is the capital of ").removesuffix("?")
    return dict(CAPITALS)[country]


def _user_text(obs: list[dict[str, Any]]) -> str:
    return next(m["content"] for m in reversed(obs) if m["role"] == "user")


# --------------------------------------------------------------------------- the README example
def test_register_make_and_answer() -> None:
    fid = register_dataset(
        "Capitals-v0", ROWS, prompt="question", answer="answer", reward="exact_match"
    )
    assert fid == "envkit/Capitals-v0" and fid in envkit.registered_ids()
    env = envkit.make("Capitals-v0")
    obs, info = env.reset(seed=3)
    prompt = _user_text(obs)
    task = env.unwrapped.task
    assert task.reference == _capital_of(prompt)  # the reference lives in Task.reference
    assert "answer" not in info and info["split"] == "train"
    obs, reward_, terminated, truncated, step_info = env.step(f"<answer>{task.reference}</answer>")
    assert (reward_, terminated, truncated) == (1.0, True, False)
    assert step_info["correct"] is True and step_info["reward_breakdown"] == {"exact_match": 1.0}
    assert "answer" not in step_info
    env.reset(seed=3)
    assert env.step("<answer>Atlantis</answer>")[1:4] == (0.0, True, False)


def test_rollouts_carry_the_reference_and_rewards_agree_with_the_env() -> None:
    register_dataset("Capitals-v0", ROWS, prompt="question", answer="answer")
    right = CallablePolicy(lambda m, t: f"The answer is {_capital_of(_user_text(m))}.")
    wrong = CallablePolicy(lambda m, t: "The answer is Atlantis.")
    for policy, expected in ((right, 1.0), (wrong, 0.0)):
        groups = envkit.collect("Capitals-v0", policy, seeds=range(6), progress=False)
        trajs = [t for g in groups for t in g]
        assert [t.reward for t in trajs] == [expected] * 6
        assert all(
            t.reference == _capital_of(_user_text(t.model_dump()["messages"])) for t in trajs
        )
        score_groups(groups, "exact_match")  # a registered reward re-scores the same way
        assert [t.reward for t in trajs] == [expected] * 6


# --------------------------------------------------------------------------- sources
def _sources(tmp_path: Path) -> dict[str, Any]:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    as_json = tmp_path / "rows.json"
    as_json.write_text(json.dumps(ROWS))
    return {
        "list": ROWS,
        "tuple": tuple(ROWS),
        "jsonl": jsonl,
        "jsonl-str": str(jsonl),
        "json": as_json,
        "datasets.Dataset": datasets.Dataset.from_list(ROWS),
    }


def test_every_source_gives_the_same_tasks(tmp_path: Path) -> None:
    seen = {}
    for name, source in _sources(tmp_path).items():
        env = DatasetEnv(data=source, prompt="question", answer="answer", test_fraction=0.3)
        seen[name] = [_user_text(env.reset(seed=s)[0]) for s in range(8)]
    first = next(iter(seen.values()))
    assert all(v == first for v in seen.values()), seen
    assert len(set(first)) > 3


def test_a_prompt_of_chat_messages() -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Answer with one word."},
                {"role": "user", "content": f"Capital of {c}?"},
            ],
            "answer": a,
        }
        for c, a in CAPITALS
    ]
    env = DatasetEnv(data=rows, prompt="messages")
    obs, _ = env.reset(seed=0)
    assert [m["role"] for m in obs] == ["system", "user"]
    country = obs[1]["content"].removeprefix("Capital of ").removesuffix("?")
    assert env.step(dict(CAPITALS)[country])[1] == 1.0


# --------------------------------------------------------------------------- splits
def test_splits_are_disjoint_cover_the_data_and_follow_content_not_position() -> None:
    rows = DatasetRows(ARITH)
    train = rows.indices("train", test_fraction=0.2, seed=0)
    test = rows.indices("test", test_fraction=0.2, seed=0)
    prompts = [r["prompt"] for r in ARITH]
    train_p, test_p = {prompts[i] for i in train}, {prompts[i] for i in test}
    assert not train_p & test_p
    assert train_p | test_p == set(prompts)
    assert 0.15 < len(test) / len(ARITH) < 0.25  # about test_fraction
    assert all(split_of(prompts[i], test_fraction=0.2, seed=0) == "test" for i in test)

    shuffled = list(ARITH)
    random.Random(7).shuffle(shuffled)
    moved = DatasetRows([*shuffled, {"prompt": "What is 1000 + 1?", "answer": 1001}])
    test2 = moved.indices("test", test_fraction=0.2, seed=0)
    assert {moved.rows[i]["prompt"] for i in test2} - {"What is 1000 + 1?"} == test_p

    other = {prompts[i] for i in rows.indices("test", test_fraction=0.2, seed=1)}
    assert other != test_p  # another split_seed, another split


def test_a_duplicated_prompt_never_straddles_the_split() -> None:
    rows = ARITH + [dict(r, source="copy") for r in ARITH[:200]]
    data = DatasetRows(rows)
    test = {rows[i]["prompt"] for i in data.indices("test", test_fraction=0.3, seed=0)}
    train = {rows[i]["prompt"] for i in data.indices("train", test_fraction=0.3, seed=0)}
    assert test and train and not test & train


def test_envs_of_the_two_splits_only_draw_their_own_rows() -> None:
    register_dataset("Sums-v0", ARITH, test_fraction=0.2, split_seed=5)
    train_env = envkit.make("Sums-v0").unwrapped
    test_env = envkit.make("Sums-v0", split="test").unwrapped
    all_env = envkit.make("Sums-v0", split="all").unwrapped
    assert train_env.num_tasks + test_env.num_tasks == all_env.num_tasks == len(ARITH)
    train_seen = {_user_text(train_env.reset(seed=s)[0]) for s in range(300)}
    test_seen = {_user_text(test_env.reset(seed=s)[0]) for s in range(300)}
    assert not train_seen & test_seen
    expected_test = {ARITH[i]["prompt"] for i in test_env.indices}
    assert test_seen <= expected_test and len(test_seen) > len(expected_test) // 2
    # every row of a split is reachable by index, e.g. for a full held-out evaluation
    by_index = {
        _user_text(test_env.reset(options={"index": i})[0]) for i in range(len(expected_test))
    }
    assert by_index == expected_test


def test_reset_with_a_seed_is_reproducible() -> None:
    register_dataset("Sums-v0", ARITH, test_fraction=0.2)
    a, b = envkit.make("Sums-v0"), envkit.make("Sums-v0")
    for seed in (0, 1, 99):
        obs_a, info_a = a.reset(seed=seed)
        obs_b, info_b = b.reset(seed=seed)
        assert (obs_a, info_a) == (obs_b, info_b)
        assert a.unwrapped.task.id == b.unwrapped.task.id
    assert len({_user_text(a.reset(seed=s)[0]) for s in range(20)}) > 10


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_envkit_check_passes(split: str) -> None:
    register_dataset("Capitals-v0", ROWS, prompt="question", max_turns=2, test_fraction=0.3)
    results = run_checks("Capitals-v0", {"split": split})
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


def test_envkit_check_passes_single_turn_with_info_columns() -> None:
    rows = [dict(r, tags=["geo", {"level": i}]) for i, r in enumerate(ROWS)]
    register_dataset("Capitals-v0", rows, prompt="question", info_columns=["tags"])
    results = run_checks("Capitals-v0")
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


# --------------------------------------------------------------------------- multi-turn
def test_retries_until_right_and_the_reward_is_the_last_replys_score() -> None:
    env = DatasetEnv(data=ROWS, prompt="question", max_turns=3, retry_message="Nope, again.")
    obs, _ = env.reset(seed=1)
    answer = env.task.reference
    obs, r1, term, trunc, info = env.step("<answer>Atlantis</answer>")
    assert (r1, term, trunc, info["correct"]) == (0.0, False, False, False)
    assert obs[-1] == {"role": "user", "content": "Nope, again."}
    obs, r2, term, trunc, _ = env.step(f"<answer>{answer}</answer>")
    assert (r2, term, trunc) == (1.0, True, False)
    assert r1 + r2 == 1.0

    env.reset(seed=1)
    rewards = [env.step("<answer>Atlantis</answer>")[1:4] for _ in range(3)]
    assert rewards == [(0.0, False, False), (0.0, False, False), (0.0, False, True)]
    assert env.messages[-1].role == "assistant"  # no retry message after the last try


def test_partial_scores_are_paid_once_at_the_end() -> None:
    def half(trajectory: Trajectory) -> float:
        return 0.5

    env = DatasetEnv(data=ROWS, prompt="question", answer=None, reward=half, max_turns=3)
    env.reset(seed=0)
    rewards = [env.step("something")[1] for _ in range(3)]
    assert rewards == [0.0, 0.0, 0.5]  # the sum is the last reply's score, not 1.5


# --------------------------------------------------------------------------- rewards
def test_the_built_in_check_is_numeric_for_numbers() -> None:
    env = DatasetEnv(data=ARITH)
    env.reset(seed=4)
    value = env.task.reference
    assert isinstance(value, int)
    assert env.step(f"So it is {value}.0")[1] == 1.0  # numeric_match: "12.0" is 12
    env.reset(seed=4)
    assert env.step(f"<answer>{value + 1}</answer>")[1] == 0.0


def test_a_rubric_and_a_reward_with_options_from_info_columns() -> None:
    rows = [dict(r, pattern=r"^<answer>") for r in ROWS]
    rubric = Rubric([("exact_match", 0.8), ("regex_match", 0.2)])
    env = DatasetEnv(
        data=rows,
        prompt="question",
        reward=rubric,
        info_columns=["pattern"],
        success_threshold=0.8,
    )
    env.reset(seed=2)
    answer = env.task.reference
    _, r, term, _, info = env.step(f"<answer>{answer}</answer>")
    assert r == pytest.approx(1.0) and term
    assert info["reward_breakdown"] == {"exact_match": 1.0, "regex_match": 1.0}
    assert info["pattern"] == r"^<answer>"
    env.reset(seed=2)
    _, r, term, _, info = env.step(f"The answer is {answer}")
    assert r == pytest.approx(0.8) and term  # right, but not in the format
    assert info["reward_breakdown"] == {"exact_match": 1.0, "regex_match": 0.0}


def test_a_registered_reward_by_name() -> None:
    @reward(name="test_dataset_says_please", override=True)
    def says_please(trajectory: Trajectory) -> float:
        return float("please" in (trajectory.messages[-1].content or ""))

    try:
        register_dataset("Polite-v0", ROWS, prompt="question", answer=None, reward=says_please)
        env = envkit.make("Polite-v0")
        env.reset(seed=0)
        assert env.step("please")[1] == 1.0
        env = envkit.make("Polite-v0", reward="test_dataset_says_please")
        env.reset(seed=0)
        assert env.step("no")[1] == 0.0
    finally:
        unregister("test_dataset_says_please")


def test_a_reward_that_fails_fails_the_step_not_a_silent_zero() -> None:
    def broken(trajectory: Trajectory) -> float:
        raise RuntimeError("the grader is down")

    env = DatasetEnv(data=ROWS, prompt="question", reward=broken)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"could not score this reply.*the grader is down"):
        env.step("Paris")
    register_dataset("Broken-v0", ROWS, prompt="question", reward=broken)
    groups = envkit.collect(
        "Broken-v0", CallablePolicy(lambda m, t: "Paris"), seeds=[0], progress=False
    )
    traj = groups[0][0]
    assert traj.outcome == "env_error" and "the grader is down" in (traj.error or "")
    assert traj.reward is None


def test_numeric_match_on_a_text_reference_is_an_error() -> None:
    env = DatasetEnv(data=ROWS, prompt="question", reward="numeric_match")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not one finite number"):
        env.step("42")


# --------------------------------------------------------------------------- errors
def test_a_missing_column_names_the_columns_that_exist() -> None:
    with pytest.raises(ValueError, match=r"prompt column 'prompt'.*\['answer', 'question'\]"):
        register_dataset("Bad-v0", ROWS)
    with pytest.raises(ValueError, match=r"answer column 'solution'.*\['answer', 'question'\]"):
        DatasetEnv(data=ROWS, prompt="question", answer="solution")
    with pytest.raises(ValueError, match=r"info_columns column 'level'"):
        DatasetEnv(data=ROWS, prompt="question", info_columns=["level"])
    assert "envkit/Bad-v0" not in gym.registry


def test_a_row_without_the_column_is_named() -> None:
    rows = [*ROWS, {"question": "What is the capital of Mars?"}]
    with pytest.raises(ValueError, match=r"row 10: the answer 'answer' is missing"):
        DatasetEnv(data=rows, prompt="question")
    with pytest.raises(ValueError, match=r"row 1: the prompt 'question' must be"):
        DatasetEnv(data=[ROWS[0], {"question": 3, "answer": "x"}], prompt="question")
    with pytest.raises(ValueError, match=r"row 0: the prompt 'question' is empty"):
        DatasetEnv(data=[{"question": "  ", "answer": "x"}], prompt="question")


@pytest.mark.parametrize("empty", [[], datasets.Dataset.from_list([])])
def test_an_empty_dataset(empty: Any) -> None:
    with pytest.raises(ValueError, match="the dataset has no rows"):
        register_dataset("Empty-v0", empty)


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match="the dataset has no rows"):
        DatasetEnv(data=path)


def test_a_split_with_no_rows() -> None:
    with pytest.raises(ValueError, match=r"the 'test' split has no rows.*raise test_fraction"):
        register_dataset("Capitals-v0", ROWS, prompt="question", split="test")
    register_dataset("Capitals-v0", ROWS, prompt="question")  # train, test_fraction=0
    with pytest.raises(ValueError, match=r"'test' split has no rows \(10 rows: 10 train, 0 test"):
        envkit.make("Capitals-v0", split="test")
    with pytest.raises(ValueError, match=r"split must be one of"):
        envkit.make("Capitals-v0", split="validation")
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\)"):
        envkit.make("Capitals-v0", test_fraction=1.0)


def test_bad_sources(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "answer": 1}\n{"prompt": "b", answer: 2}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        load_rows(bad)
    with pytest.raises(FileNotFoundError, match="no such data file"):
        load_rows(tmp_path / "missing.jsonl")
    with pytest.raises(TypeError, match=r"row 1 is a str, not a dict"):
        load_rows([{"prompt": "a"}, "b"])
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)})
    with pytest.raises(ValueError, match=r"DatasetDict with splits \['train'\].*data\['train'\]"):
        load_rows(splits)
    with pytest.raises(TypeError, match="cannot read rows from a int"):
        load_rows(3)


def test_nothing_to_score_with_and_group_scorers_are_refused() -> None:
    with pytest.raises(ValueError, match="nothing to score answers with"):
        DatasetEnv(data=ROWS, prompt="question", answer=None)

    @reward(name="test_dataset_group", group=True, override=True)
    def ranks(group: TrajectoryGroup) -> list[float]:
        return [1.0] * len(group)

    try:
        with pytest.raises(TypeError, match="scores whole groups"):
            DatasetEnv(data=ROWS, prompt="question", reward="test_dataset_group")
        with pytest.raises(TypeError, match="scores whole groups"):
            DatasetEnv(
                data=ROWS,
                prompt="question",
                reward=Rubric([("exact_match", 1.0), ("test_dataset_group", 1.0)]),
            )
    finally:
        unregister("test_dataset_group")


def test_bad_reset_options() -> None:
    env = DatasetEnv(data=ROWS, prompt="question")
    with pytest.raises(ValueError, match=r"options\['index'\]=10 is out of range.*10 rows"):
        env.reset(options={"index": 10})
    with pytest.raises(TypeError, match=r"options\['index'\] must be an int"):
        env.reset(options={"index": "3"})


def test_a_taken_id_needs_override() -> None:
    register_dataset("Capitals-v0", ROWS, prompt="question")
    with pytest.raises(gym.error.Error, match="already registered"):
        register_dataset("Capitals-v0", ROWS, prompt="question")
    register_dataset("Capitals-v0", ROWS[:3], prompt="question", override=True)
    assert envkit.make("Capitals-v0", split="all").unwrapped.num_tasks == 3


# --------------------------------------------------------------------------- the docs
def test_the_docs_snippets_run() -> None:
    """Every Python block of docs/datasets.md runs as written (prints included)."""
    import contextlib
    import io
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, "docs/datasets.md", "exec"), {"__name__": "__main__"})
    printed = out.getvalue().splitlines()
    assert printed[:3] == [
        "What is the capital of Japan? train",
        "2",
        "1.0 {'exact_match': 1.0, 'regex_match': 1.0}",
    ], printed
    assert "Calculate ( ( 5 + 0 ) )." in printed


# --------------------------------------------------------------------------- training
def test_trains_one_step_with_tiny_random(tmp_path: Path) -> None:
    import torch

    from envkit.trainers import GRPOConfig, GRPOTrainer
    from envkit.trainers.run_dir import RunDir

    register_dataset("Sums-v0", ARITH, test_fraction=0.2, max_turns=2)
    config = GRPOConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        group_size=2,
        groups_per_step=2,
        max_new_tokens=6,
        progress=False,
        torch_threads=1,
    )
    threads = torch.get_num_threads()
    trainer = GRPOTrainer("tiny-random", "Sums-v0", config=config)
    try:
        result = trainer.train()
    finally:
        trainer.close()
        torch.set_num_threads(threads)
    assert result.steps == 1
    metrics = [r for r in RunDir(result.run_dir).read_metrics() if r.get("kind") == "train"]
    assert [r["step"] for r in metrics] == [1] and metrics[0]["reward/known_frac"] == 1.0
    train_prompts = {ARITH[i]["prompt"] for i in envkit.make("Sums-v0").unwrapped.indices}
    files = sorted((Path(result.run_dir) / "trajectories").glob("*.jsonl"))
    trajs = [t for f in files for g in read_jsonl(f, TrajectoryGroup) for t in g]
    assert len(trajs) == 4
    prompts = [next(m.content for m in t.messages if m.role == "user") for t in trajs]
    assert set(prompts) <= train_prompts  # the trainer drew from the train split only
    assert all(t.reference is not None for t in trajs)
