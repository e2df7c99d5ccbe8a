"""Training agent envs (``envkit.AgentEnv``): the run's gateway, branch rows and the group judge.

An agent env's episodes are played by the agent calling the policy through an OpenAI-compatible
``envkit.gateway.Gateway``. For a training run the trainer keeps **one** gateway for the whole
run (``RunGateway``; session files under ``<run>/gateway/``) and passes it to every rollout. Its
upstream wraps the very policy object the step samples with (the HFPolicy on the adapter being
trained, or, with ``max_staleness > 0``, on the frozen copy the newest adapter weights are
loaded into), so every call an agent makes is sampled by the adapter of that step; the calls
record the prompt and sampled token ids and logprobs, which are what the step trains on.

* Branches: an agent that rewrites its history leaves several training sequences per episode
  (``Trajectory.branches``, besides the main ``completions``). ``branch_sequences`` renders each
  branch; the backend appends them as extra rows with the advantage of their episode.
* Token ids: an upstream that reports none (a hosted API) cannot be trained on;
  ``check_trainable`` refuses it with the reason (evaluation stays allowed).
* Group judge: an ``AgentEnv`` without a reward is scored by the run's RULER judge
  (``GRPOConfig.judge_model``, ``envkit train --judge MODEL``): its trajectories carry
  ``metrics["reward_pending"] == "ruler"`` and ``score_pending`` scores those groups.
* Metrics: the ``gateway/*`` and ``agent/*`` counts of a step's trajectories are summed into the
  step's log (``AGENT_METRICS`` declares their reductions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envkit.chat_render import RenderedSequence, SequenceError, render_trajectory
from envkit.gateway.linking import GATEWAY_METRICS
from envkit.metrics import Reduction
from envkit.types import Trajectory, TrajectoryGroup

__all__ = [
    "AGENT_METRICS",
    "BranchRow",
    "RunGateway",
    "agent_metrics",
    "append_branch_rows",
    "branch_sequences",
    "check_trainable",
    "group_scorers",
    "score_pending",
]

AGENT_METRICS: dict[str, Reduction] = {
    **GATEWAY_METRICS,
    "agent/no_model_calls": "sum",
    "agent/failed_calls": "sum",
    "agent/episodes": "sum",
    "agent/branch_rows": "sum",
}
"""The agent metrics of a step (sums over its trajectories) and how processes merge them."""

_SUMMED = tuple(k for k in AGENT_METRICS if k not in ("agent/episodes", "agent/branch_rows"))


def check_trainable(upstream: Any) -> None:
    """Refuses an upstream whose completions carry no token ids (nothing to train on).

    Raises:
        ValueError: the upstream does not report token ids; the message says what to use.
    """
    if getattr(upstream, "reports_token_ids", False):
        return
    policy = getattr(upstream, "policy", upstream)
    raise ValueError(
        f"cannot train an agent env through {type(policy).__name__}: it reports no token ids "
        "(prompt and sampled ids with logprobs), and training needs exactly the sampled ids. "
        "Sample with an in-process HFPolicy (the trainer's default), envkit serve or vLLM "
        "(policy_server); a hosted API can be evaluated (envkit eval), not trained"
    )


class RunGateway:
    """The run's one gateway, over whatever policy the current step samples with.

    Args:
        log_dir: Where the sessions' JSONL files go (``<run>/gateway``); ``None``: a temp dir.
    """

    def __init__(self, log_dir: str | Path | None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.gateway: Any = None

    def for_policy(self, policy: Any) -> Any:
        """The started gateway, its upstream wrapping ``policy`` (rebound when it changed).

        Raises:
            ValueError: ``policy`` reports no token ids (``check_trainable``).
        """
        from envkit.gateway.server import Gateway
        from envkit.gateway.upstream import PolicyUpstream

        if self.gateway is None:
            upstream = _upstream(policy)
            check_trainable(upstream)
            self.gateway = Gateway(upstream, log_dir=self.log_dir).start()
        elif getattr(self.gateway.upstream, "policy", None) is not policy:
            upstream = _upstream(policy)
            check_trainable(upstream)
            self.gateway.upstream = upstream  # between plays: no call is in flight
        assert isinstance(self.gateway.upstream, PolicyUpstream)
        return self.gateway

    def close(self) -> None:
        """Stops the gateway (the session files stay)."""
        gateway, self.gateway = self.gateway, None
        if gateway is not None:
            gateway.close()


def _upstream(policy: Any) -> Any:
    from envkit.gateway.upstream import PolicyUpstream

    # An HFPolicy (VLLMPolicy is one) or a ServerPolicy reports token ids; others do not.
    return PolicyUpstream(policy)


class BranchRow:
    """One extra training row: a branch of the episode at ``parent`` (its row in the step)."""

    __slots__ = ("parent", "sequence")

    def __init__(self, parent: int, sequence: RenderedSequence) -> None:
        self.parent = parent
        self.sequence = sequence

    def __repr__(self) -> str:
        return f"BranchRow(parent={self.parent}, tokens={len(self.sequence.completion_ids)})"


def branch_sequences(
    traj: Trajectory, stop_token_ids: Sequence[int]
) -> tuple[list[RenderedSequence], int]:
    """The rendered sequence of each of ``traj.branches``, and how many failed to render."""
    out: list[RenderedSequence] = []
    errors = 0
    for completions in traj.branches or []:
        if not completions:
            continue
        view = Trajectory.model_construct(env_id=traj.env_id, completions=list(completions))
        try:
            out.append(render_trajectory(view, stop_token_ids=stop_token_ids))
        except SequenceError:
            errors += 1
    return out, errors


def agent_metrics(groups: Sequence[TrajectoryGroup]) -> dict[str, float]:
    """The step's ``gateway/*`` and ``agent/*`` counts, summed over its agent episodes (empty
    when it played none)."""
    trajs = [t for g in groups for t in g if "agent/no_model_calls" in t.metrics]
    if not trajs:
        return {}
    out: dict[str, float] = {"agent/episodes": float(len(trajs))}
    for key in _SUMMED:
        values = [t.metrics.get(key) for t in trajs]
        finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
        out[key] = math.fsum(finite)
    return out


def group_scorers(env: Any) -> dict[str, Any]:
    """``{reward_pending name: scorer}`` of an agent env scored by its group (``"ruler"``
    maps to ``None``: the run's judge); ``{}`` for any other env."""
    from envkit.environments.agent import GROUP_JUDGE, AgentEnv

    inner = getattr(env, "unwrapped", env)
    if not isinstance(inner, AgentEnv) or not inner.scored_by_group:
        return {}
    scorer = inner.group_reward
    if isinstance(scorer, str) and scorer == GROUP_JUDGE:
        return {GROUP_JUDGE: None}
    return {getattr(scorer, "name", type(scorer).__name__): scorer}


async def score_pending(
    groups: Sequence[TrajectoryGroup], scorers: Mapping[str, Any], judge: Any
) -> None:
    """Scores the groups whose trajectories wait for a group scorer (``reward_pending``):
    ``"ruler"`` with ``judge``, another name with the env's own group scorer. A trajectory
    that got its reward loses ``reward_pending`` (one the scorer failed on keeps it)."""
    from envkit.environments.agent import GROUP_JUDGE
    from envkit.rewards.scoring import ascore_groups

    by_scorer: dict[str, list[TrajectoryGroup]] = {}
    for group in groups:
        pending = {t.metrics.get("reward_pending") for t in group} - {None}
        for name in pending:
            by_scorer.setdefault(str(name), []).append(group)
    for name, waiting in by_scorer.items():
        scorer = judge if name == GROUP_JUDGE else scorers.get(name)
        if scorer is None:
            continue
        await ascore_groups(waiting, scorer)
        for group in waiting:
            for traj in group:
                if traj.reward is not None:
                    traj.metrics.pop("reward_pending", None)


def append_branch_rows(
    batch: dict[str, Any], rows: Sequence[BranchRow], *, pad_token_id: int, gather: Any
) -> dict[str, Any]:
    """TRL's scored batch with ``rows`` appended, each with its parent episode's advantage.

    Prompts are left-padded, completions right-padded (as TRL pads); the env/tool tokens of a
    branch are masked out of the loss (``tool_mask`` 0) and its sampled logprobs become
    ``sampling_per_token_logps``. ``num_items_in_batch`` (loss tokens over every process) grows
    by the branches' loss tokens (``gather``: the accelerator's, summing over processes).
    Per-token tensors a row cannot supply (``old_per_token_logps``, ``ref_per_token_logps``)
    must be recomputed by the caller.
    """
    import torch

    if not rows:
        return batch
    device = batch["completion_ids"].device
    prompts = [r.sequence.prompt_ids for r in rows]
    completions = [r.sequence.completion_ids for r in rows]
    width_p = max(batch["prompt_ids"].shape[1], *(len(p) for p in prompts))
    width_c = max(batch["completion_ids"].shape[1], *(len(c) for c in completions))

    def left(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (width_p - t.shape[1], 0), value=value)

    def right(t: torch.Tensor, value: float) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width_c - t.shape[1]), value=value)

    def rows_of(values: list[list[Any]], width: int, fill: Any, dtype: Any, lpad: bool) -> Any:
        out = torch.full((len(values), width), fill, dtype=dtype, device=device)
        for i, v in enumerate(values):
            if v:
                if lpad:
                    out[i, width - len(v) :] = torch.tensor(v, dtype=dtype)
                else:
                    out[i, : len(v)] = torch.tensor(v, dtype=dtype)
        return out

    out = dict(batch)
    p_ids, p_mask = batch["prompt_ids"], batch["prompt_mask"]
    out["prompt_ids"] = torch.cat(
        [left(p_ids, pad_token_id), rows_of(prompts, width_p, pad_token_id, p_ids.dtype, True)]
    )
    out["prompt_mask"] = torch.cat(
        [left(p_mask, 0), rows_of([[1] * len(p) for p in prompts], width_p, 0, p_mask.dtype, True)]
    )
    c_ids, c_mask = batch["completion_ids"], batch["completion_mask"]
    new_ids = rows_of(completions, width_c, pad_token_id, c_ids.dtype, False)
    out["completion_ids"] = torch.cat([right(c_ids, pad_token_id), new_ids])
    ones = [[1] * len(c) for c in completions]
    out["completion_mask"] = torch.cat(
        [right(c_mask, 0), rows_of(ones, width_c, 0, c_mask.dtype, False)]
    )
    masks = [list(r.sequence.mask) for r in rows]
    tool = batch.get("tool_mask")
    if tool is None:
        tool = torch.ones_like(c_mask)
    out["tool_mask"] = torch.cat([right(tool, 1), rows_of(masks, width_c, 1, tool.dtype, False)])
    behaviour = batch.get("sampling_per_token_logps")
    if behaviour is not None:
        lps = [list(r.sequence.logprobs or [0.0] * len(r.sequence.completion_ids)) for r in rows]
        out["sampling_per_token_logps"] = torch.cat(
            [right(behaviour, 0.0), rows_of(lps, width_c, 0.0, behaviour.dtype, False)]
        )
    parents = torch.tensor([r.parent for r in rows], device=device)
    out["advantages"] = torch.cat([batch["advantages"], batch["advantages"][parents]])
    extra = torch.tensor(float(sum(sum(m) for m in masks)), device=device)
    total = batch["num_items_in_batch"]
    out["num_items_in_batch"] = total + gather(extra.reshape(1)).sum().to(total.dtype)
    for key in ("old_per_token_logps", "ref_per_token_logps", "importance_sampling_ratio"):
        out.pop(key, None)
    return out
