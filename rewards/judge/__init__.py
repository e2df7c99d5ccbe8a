"""The RULER-style relative judge: ``RulerJudge`` and its parts.

* ``ruler``: ``RulerJudge``, one request per group, scores matched by id,
* ``prompt``: the shared prefix once, each trajectory's own part, the rubric,
* ``schema``: the structured answer and its validation,
* ``client``: the litellm request with retries, backoff, a concurrency limit and accounting,
* ``cache``: valid answers on disk, keyed by model + request hash,
* ``config``: ``JudgeConfig``.
"""

from __future__ import annotations

from envkit.rewards.judge.cache import JudgeCache, cache_key, default_cache_dir
from envkit.rewards.judge.client import JudgeCallError, JudgeStats
from envkit.rewards.judge.config import JudgeConfig
from envkit.rewards.judge.prompt import DEFAULT_RUBRIC, build_messages
from envkit.rewards.judge.ruler import RulerJudge
from envkit.rewards.judge.schema import (
    InvalidJudgeOutput,
    JudgeResponse,
    TrajectoryScore,
    parse_judge_output,
)

__all__ = [
    "DEFAULT_RUBRIC",
    "InvalidJudgeOutput",
    "JudgeCache",
    "JudgeCallError",
    "JudgeConfig",
    "JudgeResponse",
    "JudgeStats",
    "RulerJudge",
    "TrajectoryScore",
    "build_messages",
    "cache_key",
    "default_cache_dir",
    "parse_judge_output",
]
