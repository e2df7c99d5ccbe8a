"""``RulerJudge``: a RULER-style relative LLM judge that scores a whole group in one call.

GRPO only needs the trajectories of a group ranked correctly, so the judge sees them side by
side: the shared prefix once, then each trajectory's own part under an id, then the rubric (a
default that gives the lowest scores to reward hacking, plus yours). It answers
``{id, explanation, score}`` per trajectory; scores are matched by id, never by position. The
order is shuffled per group with a recorded seed (``both_orders=True`` judges the reverse order
too and averages). Invalid answers are retried with the problem named; transport failures are
retried with backoff; a group that still cannot be judged gets ``outcome="judge_error"`` and
rewards ``None``, so a trainer skips it instead of crashing.

Example:
    >>> from envkit.rewards import RulerJudge
    >>> judge = RulerJudge("openai/gpt-4o-mini", rubric="Prefer answers that cite sources.",
    ...                    max_concurrency=4, cache=False)
    >>> judge.config.max_concurrency, judge.name
    (4, 'judge')
    >>> # await judge.score_group(group) -> [0.9, 0.2, ...] (one request per group)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import warnings
from pathlib import Path
from typing import Any

from envkit.rewards.base import BaseScorer
from envkit.rewards.judge.cache import JudgeCache, cache_key
from envkit.rewards.judge.client import JudgeCallError, JudgeClient, JudgeStats
from envkit.rewards.judge.config import JudgeConfig
from envkit.rewards.judge.prompt import build_messages, fix_message
from envkit.rewards.judge.schema import InvalidJudgeOutput, TrajectoryScore, parse_judge_output
from envkit.rewards.result import GroupScores, describe_error
from envkit.types import Trajectory, TrajectoryGroup

__all__ = ["RulerJudge"]


def _fingerprint(trajectories: list[Trajectory]) -> str:
    payload = json.dumps(
        [[t.message_dicts(), t.tools] for t in trajectories], sort_keys=True, default=repr
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class RulerJudge(BaseScorer):
    """A group reward that asks an LLM to score a whole ``TrajectoryGroup`` at once.

    Args:
        model: Any litellm model string (``"openai/gpt-4o-mini"``, ``"openai/<name>"`` with
            ``api_base`` for a local OpenAI-compatible server, ``"anthropic/..."``...).
        rubric: Task-specific criteria, added to the default rubric (or replacing it with
            ``default_rubric=False``).
        api_base: Base URL of an OpenAI-compatible server (``http://127.0.0.1:8000/v1``).
        api_key: Its API key (litellm reads the provider's env var when ``None``).
        cache: ``True`` for the default on-disk cache (``~/.cache/envkit/judge``), a directory,
            a ``JudgeCache``, or ``None``/``False`` for none.
        name: The component name (in breakdowns, metrics and rubrics).
        config: A ``JudgeConfig``; keyword ``options`` override its fields.
        **options: ``JudgeConfig`` fields (``timeout_s``, ``max_retries``, ``clamp``,
            ``both_orders``, ``max_concurrency``, ``max_requests_per_group``...).

    ``with_name`` copies share the stats, the client and the cache.

    Raises:
        ValueError: an empty model string or an unknown option.
    """

    group = True

    def __init__(
        self,
        model: str,
        rubric: str | None = None,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        cache: JudgeCache | str | Path | bool | None = None,
        name: str = "judge",
        config: JudgeConfig | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("RulerJudge needs a litellm model string, e.g. 'openai/gpt-4o-mini'")
        base = config or JudgeConfig()
        self.config = JudgeConfig(**{**base.model_dump(), **options}) if options else base
        if not self.config.default_rubric and not (rubric or "").strip():
            raise ValueError("default_rubric=False needs a rubric: pass rubric='...'")
        self.model = model
        self.rubric = rubric
        self.api_base = api_base
        self.api_key = api_key
        self.name = name
        if cache is True:
            self.cache: JudgeCache | None = JudgeCache()
        elif isinstance(cache, (str, Path)):
            self.cache = JudgeCache(cache)
        elif isinstance(cache, JudgeCache):
            self.cache = cache
        elif cache in (None, False):
            self.cache = None
        else:
            raise TypeError(
                f"cache must be True, False, None, a directory or a JudgeCache, got {cache!r}"
            )
        self.stats = JudgeStats()
        self.client = JudgeClient(
            model, api_base=api_base, api_key=api_key, config=self.config, stats=self.stats
        )

    def __repr__(self) -> str:
        where = f", api_base={self.api_base!r}" if self.api_base else ""
        return f"RulerJudge({self.model!r}{where}, name={self.name!r})"

    def bind(self, **options: Any) -> RulerJudge:
        """A copy whose config has ``options`` (``JudgeConfig`` fields) changed."""
        return RulerJudge(
            self.model,
            self.rubric,
            api_base=self.api_base,
            api_key=self.api_key,
            cache=self.cache,
            name=self.name,
            config=self.config,
            **options,
        )

    def _seed(self, fingerprint: str) -> int:
        digest = hashlib.sha256(f"{self.config.seed}:{fingerprint}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    async def _judge_order(
        self, ordered: list[Trajectory], ids: list[str], tally: JudgeStats
    ) -> dict[str, TrajectoryScore]:
        cfg = self.config
        messages = build_messages(ordered, ids, self.rubric, cfg)
        key = cache_key(self.model, messages, {**self.client.params(), "api_base": self.api_base})
        if self.cache is not None:
            entry = self.cache.get(key)
            if entry is not None:
                try:
                    parsed = parse_judge_output(str(entry.get("content", "")), ids, clamp=cfg.clamp)
                except InvalidJudgeOutput:
                    parsed = None
                if parsed is not None:
                    self.client.count(tally, cache_hits=1)
                    return parsed
        convo = list(messages)
        for attempt in range(cfg.max_invalid_retries + 1):
            result = await self.client.complete(convo, tally)
            try:
                parsed = parse_judge_output(result.content, ids, clamp=cfg.clamp)
            except InvalidJudgeOutput as e:
                problem = str(e)
                if result.finish_reason == "length":
                    problem += (
                        " (the answer was cut off at the token limit, finish_reason='length'; "
                        "raise JudgeConfig.max_tokens)"
                    )
                self.client.count(tally, invalid_answers=1)
                if attempt == cfg.max_invalid_retries:
                    raise InvalidJudgeOutput(
                        f"invalid judge answer after {attempt + 1} attempt(s): {problem}"
                    ) from None
                self.client.count(tally, retries=1)
                convo = [
                    *messages,
                    {"role": "assistant", "content": result.content},
                    {"role": "user", "content": fix_message(problem, ids)},
                ]
                continue
            if self.cache is not None:
                try:
                    self.cache.put(key, {"content": result.content, "model": self.model})
                except OSError as e:  # a full or read-only disk must not fail the group
                    warnings.warn(
                        f"could not write the judge cache {self.cache}: {e}", stacklevel=2
                    )
            return parsed
        raise AssertionError("unreachable")

    async def evaluate(self, group: TrajectoryGroup) -> GroupScores:
        """Judges a group without changing it; failures come back as ``group_error``."""
        n = len(group)
        scores = GroupScores.empty(n)
        live = [i for i, t in enumerate(group) if not t.failed]
        self.stats.add(groups=1)
        if not live:
            return scores
        start = time.perf_counter()
        trajs = [group[i] for i in live]
        seed = self._seed(_fingerprint(trajs))
        order = random.Random(seed).sample(live, len(live)) if self.config.shuffle else live
        orders = [order]
        if self.config.both_orders and len(live) > 1:
            orders.append(order[::-1])
        ids = [f"T{k + 1}" for k in range(len(live))]
        tally = JudgeStats()
        results = await asyncio.gather(
            *(self._judge_order([group[i] for i in o], ids, tally) for o in orders),
            return_exceptions=True,
        )
        p = self.name
        scores.group_metrics = {
            f"{p}_model": self.model,
            f"{p}_calls": tally.calls,
            f"{p}_retries": tally.retries,
            f"{p}_cache_hits": tally.cache_hits,
            f"{p}_prompt_tokens": tally.prompt_tokens,
            f"{p}_completion_tokens": tally.completion_tokens,
            f"{p}_cost_usd": None if tally.cost_unknown_calls else tally.cost_usd,
            f"{p}_shuffle_seed": seed if self.config.shuffle else None,
            f"{p}_orders": [list(o) for o in orders],
            f"{p}_latency_s": round(time.perf_counter() - start, 4),
        }
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, Exception):  # cancellation, KeyboardInterrupt
                raise failure
        if failures:
            first = failures[0]
            known = isinstance(first, (JudgeCallError, InvalidJudgeOutput))
            why = str(first) if known else describe_error(first, "the judge")
            reason = f"judge {self.model!r} could not score this group: {why}"
            self.stats.add(judge_errors=1)
            scores.group_error = reason
            for i in live:
                scores.errors[i] = {self.name: reason}
            return scores
        for i in live:
            verdicts = [res[ids[o.index(i)]] for o, res in zip(orders, results, strict=True)]  # type: ignore[index]
            value = sum(v.score for v in verdicts) / len(verdicts)
            scores.totals[i] = value
            scores.breakdown[i] = {self.name: value}
            scores.traj_metrics[i] = {
                f"{p}_explanation": verdicts[0].explanation,
                f"{p}_reward_hacking": any(v.reward_hacking for v in verdicts),
            }
        return scores
