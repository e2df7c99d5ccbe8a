"""Training agent envs: ``GRPOTrainer`` on an ``AgentEnv`` through the run's gateway.

The agents are plain ``openai``-SDK code (``agents_support``); the model is the tiny random
Qwen2, so each run takes a few seconds. Checked: the step trains on exactly the token ids the
gateway recorded, the adapter the gateway samples with is the one being trained (also with
``max_staleness=1``, where each episode's logprobs belong to the adapter version it records),
a rewritten history trains as a second sequence, an upstream without token ids is refused, the
RULER judge scores agent envs without a reward (a scripted judge server on 127.0.0.1), the
``envkit train module:function --tasks`` CLI, and a one-call agent trains exactly as the same task
as a single-turn ``ChatEnv`` (same ids, masks and loss).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from envkit.env import ChatEnv, Feedback, Task
from envkit.environments.agent import register_agent
from envkit.metrics import reduction_of
from envkit.trainers import GRPOConfig, GRPOTrainer
from envkit.trainers.batch import loss_mask
from envkit.trainers.episodes import step_metric_reductions
from envkit.trainers.run_dir import RunDir
from envkit.types import Trajectory, TrajectoryGroup

TASKS = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]


def spread(trajectory: Trajectory, **_: Any) -> float:
    """A reward that never ties within a group (its episode's index), so every step learns."""
    return float(trajectory.group_index)


@pytest.fixture(scope="module", autouse=True)
def keep_threads() -> Iterator[None]:
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def agent_envs() -> Iterator[dict[str, str]]:
    import gymnasium as gym

    ids = {
        "two": register_agent(
            "TrainTwoCall-v0",
            agent="agents_support:two_call_agent",
            tasks=TASKS,
            reward=spread,
            override=True,
        ),
        "rewrite": register_agent(
            "TrainRewrite-v0",
            agent="agents_support:rewriting_agent",
            tasks=TASKS,
            reward=spread,
            override=True,
        ),
        "one": register_agent(
            "TrainOneCall-v0",
            agent="agents_support:one_call_agent",
            tasks=TASKS,
            reward=spread,
            override=True,
        ),
        "judged": register_agent(
            "TrainJudged-v0", agent="agents_support:one_call_agent", tasks=TASKS, override=True
        ),
    }
    yield ids
    for env_id in ids.values():
        gym.registry.pop(env_id, None)


def config(out: Path, **overrides: Any) -> GRPOConfig:
    base: dict[str, Any] = dict(
        output_dir=str(out),
        max_steps=2,
        save_steps=10,
        group_size=2,
        groups_per_step=2,
        max_new_tokens=5,
        concurrency=4,
        kl_to_base_every=0,
        progress=False,
        torch_threads=1,
        learning_rate=0.05,  # one update visibly moves the tiny model's distribution
    )
    base.update(overrides)
    return GRPOConfig(**base)


class Capture:
    """Keeps TRL's scored batch of every step (before zero-advantage rows are dropped)."""

    def __init__(self, trainer: GRPOTrainer) -> None:
        self.batches: list[dict[str, Any]] = []
        backend = trainer.backend
        original = backend._generate_and_score_completions

        def wrapped(inputs: list[dict[str, Any]]) -> dict[str, Any]:
            batch = original(inputs)
            self.batches.append({k: v for k, v in batch.items()})
            return batch

        backend._generate_and_score_completions = wrapped  # type: ignore[method-assign]


def lora(trainer: GRPOTrainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def step_groups(out: Path, step: int) -> list[TrajectoryGroup]:
    lines = RunDir(out).trajectories_path(step).read_text().splitlines()
    return [TrajectoryGroup.model_validate_json(line) for line in lines]


def train_rows(out: Path) -> list[dict[str, Any]]:
    return [r for r in RunDir(out).read_metrics() if r["kind"] == "train"]


def sampled_tokens(groups: list[TrajectoryGroup], *, branches: bool = True) -> int:
    trajs = [t for g in groups for t in g if not t.failed and t.reward is not None]
    n = sum(len(c.token_ids or []) for t in trajs for c in t.completions)
    if branches:
        n += sum(len(c.token_ids or []) for t in trajs for b in t.branches for c in b)
    return n


# --------------------------------------------------------------------------- training
def test_a_two_call_agent_trains_on_the_recorded_ids(
    agent_envs: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with GRPOTrainer("tiny-random", agent_envs["two"], config=config(out)) as trainer:
        capture = Capture(trainer)
        versions = adapter_snapshots(trainer)
        result = trainer.train()
        gateway = trainer.episodes.agent_gateway.gateway
        # the gateway samples with the very policy object the trainer samples (and trains) with
        assert gateway.upstream.policy is trainer.episodes._policy
        assert trainer.episodes._policy.model is trainer.model
        # step 2's calls were sampled by the adapter after step 1 (version 1), not version 0
        step2 = [c for g in step_groups(out, 2) for t in g for c in t.completions]
        assert max_logp_diff(trainer, versions[1], step2) < 1e-4
        assert max_logp_diff(trainer, versions[0], step2) > 1e-2
    assert result.steps == 2
    assert any(not torch.equal(versions[0][k], versions[2][k]) for k in versions[0])
    for step, batch in enumerate(capture.batches, start=1):
        groups = step_groups(out, step)
        trajs = [t for g in groups for t in g]
        assert all(t.outcome == "ok" and len(t.completions) == 2 for t in trajs)
        # every loss token is a token the policy sampled through the gateway, and vice versa
        assert int(loss_mask(batch).sum()) == sampled_tokens(groups)
        rows = zip(batch["completion_ids"].tolist(), loss_mask(batch).tolist(), strict=True)
        for (ids, mask), traj in zip(rows, trajs, strict=True):
            sampled = [t for c in traj.completions for t in c.token_ids or []]
            assert [t for t, m in zip(ids, mask, strict=True) if m] == sampled
            assert Path(traj.info["gateway_session"]).parent == out / "gateway"
            assert traj.metrics["behaviour_version"] == step - 1
    rows = train_rows(out)
    assert [r["gateway/calls"] for r in rows] == [8.0, 8.0]  # 4 episodes x 2 calls
    reductions = step_metric_reductions()  # a multi-process run sums the counts
    assert reduction_of("gateway/calls", reductions) == reduction_of("agent/episodes", reductions)
    assert reduction_of("gateway/drift_tokens", reductions) == "sum"
    for key in ("gateway/trainable_calls", "gateway/branches", "agent/episodes"):
        assert all(key in r for r in rows), key
    assert all(r["agent/no_model_calls"] == 0.0 for r in rows)


def test_the_gateway_samples_with_each_new_adapter_overlapped(
    agent_envs: dict[str, str], tmp_path: Path
) -> None:
    """``max_staleness=1``: the gateway's upstream is rebound to the frozen rollout copy and
    each episode's behaviour logprobs are those of the adapter version it records."""
    out = tmp_path / "run"
    cfg = config(out, max_staleness=1, max_steps=3, concurrency=1)
    with GRPOTrainer("tiny-random", agent_envs["two"], config=cfg) as trainer:
        versions = adapter_snapshots(trainer)
        trainer.train()
        frozen = trainer.episodes._rollout_model
        assert trainer.episodes.agent_gateway.gateway.upstream.policy.model is frozen
        by_version: dict[int, list[Any]] = {}
        for step in (1, 2, 3):
            for group in step_groups(out, step):
                for traj in group:
                    v = int(traj.metrics["behaviour_version"])
                    by_version.setdefault(v, []).extend(traj.completions)
        assert sorted(by_version) == [0, 1]
        for version, completions in by_version.items():
            assert max_logp_diff(trainer, versions[version], completions) < 1e-4, version
        # not vacuous: version 1 moved
        assert max_logp_diff(trainer, versions[0], by_version[1]) > 1e-2


def adapter_snapshots(trainer: GRPOTrainer) -> dict[int, dict[str, torch.Tensor]]:
    """The LoRA weights of version 0 (start) and of version k (after the k-th step)."""
    from transformers import TrainerCallback

    versions: dict[int, dict[str, torch.Tensor]] = {}

    class Keep(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            versions[state.global_step] = lora(trainer)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            versions[state.global_step] = lora(trainer)

    trainer.backend.add_callback(Keep())
    return versions


def max_logp_diff(
    trainer: GRPOTrainer, weights: dict[str, torch.Tensor], completions: list[Any]
) -> float:
    """The largest gap between the recorded logprobs of ``completions`` and those of the
    trained model with the LoRA ``weights`` loaded (a copy of it)."""
    model = copy.deepcopy(trainer.model).eval()
    for module in model.modules():  # TRL's instance-level forward still calls the original
        vars(module).pop("forward", None)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return max(
        float((completion_logps(model, c) - torch.tensor(c.logprobs)).abs().max())
        for c in completions
    )


def completion_logps(model: Any, completion: Any) -> torch.Tensor:
    prompt, sampled = list(completion.prompt_token_ids), list(completion.token_ids)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + sampled])).logits
    logits = logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(sampled)[:, None])[:, 0]


def test_a_rewritten_history_trains_as_a_second_sequence(
    agent_envs: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with GRPOTrainer("tiny-random", agent_envs["rewrite"], config=config(out, max_steps=1)) as t:
        capture = Capture(t)
        t.train()
        held_out = t.evaluate(seeds=[0, 1])  # eval plays agent envs too (a gateway of its own)
    assert [tr.outcome for g in held_out for tr in g] == ["ok", "ok"]
    assert all(tr.reward is not None and tr.branches for g in held_out for tr in g)
    groups = step_groups(out, 1)
    trajs = [t for g in groups for t in g]
    assert all(len(t.branches) == 1 and len(t.completions) == 1 for t in trajs)
    batch = capture.batches[0]
    assert batch["completion_ids"].shape[0] == 2 * len(trajs)  # each episode: two rows
    assert int(loss_mask(batch).sum()) == sampled_tokens(groups)
    # a branch row trains with the advantage of its episode
    n = len(trajs)
    assert torch.equal(batch["advantages"][n:], batch["advantages"][:n])
    ids, mask = batch["completion_ids"][n].tolist(), loss_mask(batch)[n].tolist()
    assert [i for i, m in zip(ids, mask, strict=True) if m] == trajs[0].branches[0][0].token_ids
    row = train_rows(out)[0]
    assert row["agent/branch_rows"] == float(n) and row["gateway/branches"] == float(2 * n)


def test_an_upstream_without_token_ids_is_refused(
    agent_envs: dict[str, str], tmp_path: Path
) -> None:
    from envkit.gateway.upstream import PolicyUpstream
    from envkit.policies import ScriptedPolicy
    from envkit.trainers.agents import check_trainable

    with pytest.raises(ValueError, match="reports no token ids"):
        check_trainable(PolicyUpstream(ScriptedPolicy(["4"])))
    cfg = config(tmp_path / "run", max_steps=1)
    with GRPOTrainer("tiny-random", agent_envs["one"], config=cfg) as trainer:
        trainer.episodes.make_policy = lambda model: ScriptedPolicy(["4"] * 8)
        with pytest.raises(ValueError, match=r"ScriptedPolicy: it reports no token ids.*eval"):
            trainer.train()


def test_an_agent_without_a_reward_needs_a_judge(
    agent_envs: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="pass --judge MODEL"):
        GRPOTrainer("tiny-random", agent_envs["judged"], config=config(tmp_path / "run"))


def test_the_ruler_judge_scores_agent_groups_by_default(
    agent_envs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envkit.testing import Reply, ScriptedOpenAIServer
    from envkit.testing.judge_answers import ruler_answer, trajectory_blocks

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def respond(request: Any) -> Any:
        blocks = trajectory_blocks(request.user_text)
        return Reply(content=ruler_answer({tid: i / 4 for i, tid in enumerate(sorted(blocks))}))

    out = tmp_path / "run"
    with ScriptedOpenAIServer(responder=respond) as server:
        cfg = config(out, max_steps=1, judge_model="openai/judge", judge_api_base=server.url)
        with GRPOTrainer("tiny-random", agent_envs["judged"], config=cfg) as trainer:
            trainer.train()
        assert len(server.requests) == 2  # one judge call per group
    trajs = [t for g in step_groups(out, 1) for t in g]
    assert sorted(t.reward for t in trajs) == [0.0, 0.0, 0.25, 0.25]
    assert not any("reward_pending" in t.metrics for t in trajs)  # scored: no longer pending
    row = train_rows(out)[0]
    assert row["groups/with_signal_frac"] == 1.0 and row["episodes/trained_frac"] == 1.0


@pytest.mark.usefixtures("clean_registry")  # the CLI registers envkit/agent-<fn>-v0 in-process
def test_the_cli_trains_an_agent_on_a_tasks_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from envkit.cli.main import app
    from envkit.cli.train import _is_agent_spec

    assert _is_agent_spec("my_pkg.agents:solve")
    assert not any(map(_is_agent_spec, ["Arithmetic-v0:2", "envkit/Countdown-v0", "A-v0:x"]))

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS[:4]))
    out = tmp_path / "run"
    args = ["train", "agents_support:two_call_agent", "--tasks", str(tasks), "--model"]
    args += ["tiny-random", "--reward", "exact_match", "--steps", "1", "--out", str(out)]
    args += ["-g", "2", "--groups-per-step", "1", "--max-new-tokens", "4"]
    args += ["--set", "torch_threads=1", "--set", "kl_to_base_every=0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads(RunDir(out).run_info_path.read_text())
    assert info["env"] == "envkit/agent-two-call-agent-v0"
    trajs = [t for g in step_groups(out, 1) for t in g]
    assert len(trajs) == 2 and all(len(t.completions) == 2 for t in trajs)
    assert all(t.reward is not None and t.reward_breakdown for t in trajs)
    # --resume registers the agent env again from the run folder and trains on
    result = CliRunner().invoke(app, ["train", "--resume", "--out", str(out), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in train_rows(out)] == [1, 2]
    # no reward and no judge: refused, saying what to pass
    args = ["train", "agents_support:one_call_agent", "--tasks", str(tasks), "--model"]
    args += ["tiny-random", "--out", str(tmp_path / "run2")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--judge MODEL" in result.output
    result = CliRunner().invoke(app, ["train", "--help"])
    assert "module:function" in result.output and "--tasks" in result.output


# --------------------------------------------------------------------------- equivalence
class SingleTurn(ChatEnv):
    """The ChatEnv counterpart of a one-call agent: the same tasks, one assistant turn."""

    def __init__(self) -> None:
        super().__init__(max_turns=1)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        row = TASKS[(self._seed or 0) % len(TASKS)]
        return Task(messages=[{"role": "user", "content": row["prompt"]}], id="t")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self._seed = seed
        return super().reset(seed=seed, options=options)

    _seed: int | None = None

    def respond(self, message: Any) -> Feedback:
        return Feedback(reward=0.0, done=True)


def one_step(env: Any, out: Path) -> tuple[dict[str, Any], float]:
    cfg = config(out, max_steps=1, concurrency=1)  # one call at a time: the same RNG draws
    with GRPOTrainer("tiny-random", env, reward=spread, config=cfg) as trainer:
        capture = Capture(trainer)
        losses: list[float] = []
        original = trainer.backend.compute_loss

        def compute_loss(*args: Any, **kwargs: Any) -> Any:
            loss = original(*args, **kwargs)
            losses.append(float(loss.detach()))
            return loss

        trainer.backend.compute_loss = compute_loss  # type: ignore[method-assign]
        trainer.train()
    return capture.batches[0], sum(losses)


def test_a_one_call_agent_trains_exactly_as_the_same_chat_env(
    agent_envs: dict[str, str], tmp_path: Path
) -> None:
    agent_batch, agent_loss = one_step(agent_envs["one"], tmp_path / "agent")
    chat_batch, chat_loss = one_step(SingleTurn, tmp_path / "chat")
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages"):
        assert torch.equal(agent_batch[key], chat_batch[key]), key
    assert torch.equal(loss_mask(agent_batch), loss_mask(chat_batch))
    assert torch.allclose(
        agent_batch["sampling_per_token_logps"], chat_batch["sampling_per_token_logps"]
    )
    assert agent_loss == pytest.approx(chat_loss, rel=1e-6, abs=1e-9)
