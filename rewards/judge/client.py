"""``JudgeClient``: one judge request through litellm, with envkit's own retries and accounting.

litellm's retries are turned off (``num_retries=0``) so that every retry is envkit's: timeouts,
429s (honouring ``Retry-After`` up to ``backoff_max_s``), 5xx answers and connection errors are
retried with exponential backoff and jitter; other errors (400, 401, 404, a context-window
overflow) fail at once. A limit on requests in flight is shared by all groups of the judge.

Every request a group costs (each order, each transport retry, each retry after an invalid
answer) is counted in that group's ``JudgeStats`` and checked against one budget,
``JudgeConfig.max_requests_per_group``: once it is spent, the group fails with
``JudgeBudgetError`` instead of sending more. An HTTP 200 whose body holds no usable answer (no
``choices``, ``content: null``) is a ``JudgeResponseError``, recorded like any judge failure.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, PrivateAttr

from envkit.rewards.judge.config import JudgeConfig
from envkit.rewards.judge.schema import JudgeResponse

__all__ = [
    "CallResult",
    "JudgeBudgetError",
    "JudgeCallError",
    "JudgeClient",
    "JudgeResponseError",
    "JudgeStats",
    "is_retryable",
]


class JudgeCallError(RuntimeError):
    """A judge request failed for good (retries exhausted or an error that retrying cannot fix)."""


class JudgeBudgetError(JudgeCallError):
    """The group's request budget (``JudgeConfig.max_requests_per_group``) is spent."""


class JudgeResponseError(JudgeCallError):
    """The server answered (HTTP 200) without a usable answer: no ``choices``, no message."""


class JudgeStats(BaseModel):
    """Counts of judge requests, retries, cache hits, tokens and cost.

    One class for both: ``RulerJudge.stats`` sums every group, and each group counts its own in
    a fresh ``JudgeStats`` (its ``judge_*`` metrics, and its request budget).
    """

    groups: int = 0
    judge_errors: int = 0
    calls: int = 0
    retries: int = 0
    invalid_answers: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown_calls: int = 0
    """Calls whose cost litellm could not price (unknown model); ``cost_usd`` leaves them out."""
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def add(self, **deltas: float) -> None:
        """Adds ``deltas`` to the named counters (thread-safe)."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


@dataclass
class CallResult:
    """One successful response."""

    content: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    attempts: int


def _litellm() -> Any:
    from envkit._litellm import import_litellm  # no price-map fetch on import

    return import_litellm()


def _retryable_litellm_errors() -> tuple[type[BaseException], ...]:
    litellm = _litellm()
    return (
        litellm.APIConnectionError,
        litellm.Timeout,
        litellm.InternalServerError,
        litellm.RateLimitError,
        litellm.ServiceUnavailableError,
    )


def is_retryable(error: BaseException) -> bool:
    """Whether retrying may help: timeouts, 408/409/429, 5xx and connection errors."""
    if isinstance(error, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 425, 429) or status >= 500
    return isinstance(error, _retryable_litellm_errors())


def _retry_after(error: BaseException) -> float | None:
    for headers in (
        getattr(error, "litellm_response_headers", None),
        getattr(getattr(error, "response", None), "headers", None),
    ):
        if headers is None:
            continue
        try:
            value = headers.get("retry-after")
        except AttributeError:
            continue
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _short_text(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _short(error: BaseException) -> str:
    text = " ".join((str(error) or repr(error)).split())
    return f"{type(error).__name__}: {text[:300]}"


class JudgeClient:
    """Sends judge requests to one model.

    Args:
        model: A litellm model string (``"openai/gpt-4o-mini"``, ``"openai/<name>"`` with
            ``api_base`` for an OpenAI-compatible server, ``"anthropic/..."``...).
        api_base: Base URL of the server (``http://127.0.0.1:8000/v1``).
        api_key: Its key.
        config: Timeouts, retries, concurrency and sampling parameters.
        stats: Where calls, retries, tokens and cost are counted.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None,
        api_key: str | None,
        config: JudgeConfig,
        stats: JudgeStats,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.config = config
        self.stats = stats
        self._limits: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._random = random.Random()

    def params(self) -> dict[str, Any]:
        """The request parameters besides model and messages (they are part of the cache key)."""
        c = self.config
        out: dict[str, Any] = dict(c.litellm_kwargs)
        if c.temperature is not None:
            out["temperature"] = c.temperature
        if c.max_tokens is not None:
            out["max_tokens"] = c.max_tokens
        if c.response_format == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif c.response_format == "json_schema":
            out["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "judge_scores",
                    "schema": JudgeResponse.model_json_schema(),
                },
            }
        return out

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._limits.get(loop)
        if sem is None:
            sem = self._limits[loop] = asyncio.Semaphore(self.config.max_concurrency)
        return sem

    def _delay(self, retry: int, error: BaseException) -> float:
        c = self.config
        delay = min(c.backoff_max_s, c.backoff_s * 2**retry)
        delay *= 1 + c.jitter * self._random.random()
        hinted = _retry_after(error)
        if hinted is not None:
            delay = max(delay, min(hinted, c.backoff_max_s))
        return delay

    def count(self, tally: JudgeStats | None, **deltas: float) -> None:
        """Adds ``deltas`` to the judge's stats and to ``tally`` (a group's own counts)."""
        self.stats.add(**deltas)
        if tally is not None:
            tally.add(**deltas)

    def _spend(self, tally: JudgeStats | None) -> None:
        """Counts one request, or raises ``JudgeBudgetError`` if the group's budget is spent."""
        budget = self.config.max_requests_per_group
        if tally is not None and tally.calls >= budget:
            raise JudgeBudgetError(
                f"the group's judge request budget is spent ({budget} requests, "
                "JudgeConfig.max_requests_per_group)"
            )
        self.count(tally, calls=1)

    async def complete(
        self, messages: list[dict[str, Any]], tally: JudgeStats | None = None
    ) -> CallResult:
        """Sends one request (retrying transient failures) and returns the answer's text.

        ``tally`` (a group's ``JudgeStats``, if given) counts this request's calls, retries,
        tokens and cost too, and its ``calls`` are held to ``max_requests_per_group``.

        Raises:
            JudgeCallError: retries exhausted, or an error retrying cannot fix.
            JudgeBudgetError: the group's request budget is spent.
            JudgeResponseError: an HTTP 200 without a usable answer.
        """
        litellm = _litellm()
        kwargs: dict[str, Any] = {
            **self.params(),
            "model": self.model,
            "messages": messages,
            "timeout": self.config.timeout_s,
            "num_retries": 0,
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                async with self._limit():
                    self._spend(tally)
                    response = await asyncio.wait_for(
                        litellm.acompletion(**kwargs), self.config.timeout_s + 5
                    )
            except JudgeBudgetError:
                raise
            except Exception as e:
                if not is_retryable(e):
                    raise JudgeCallError(f"judge request failed: {_short(e)}") from e
                if attempt > self.config.max_retries:
                    raise JudgeCallError(
                        f"judge request failed after {attempt} attempts: {_short(e)}"
                    ) from e
                self.count(tally, retries=1)
                await asyncio.sleep(self._delay(attempt - 1, e))
                continue
            return self._result(litellm, response, time.perf_counter() - start, attempt, tally)

    def _result(
        self, litellm: Any, response: Any, latency: float, attempts: int, tally: JudgeStats | None
    ) -> CallResult:
        choice = response.choices[0] if getattr(response, "choices", None) else None
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        finish_reason = getattr(choice, "finish_reason", None)
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if self.config.cost_per_token is not None:
            cost = (
                prompt * self.config.cost_per_token[0] + completion * self.config.cost_per_token[1]
            )
        if cost is None:
            try:
                cost = litellm.completion_cost(completion_response=response)
            except Exception:
                cost = None
        self.count(tally, prompt_tokens=prompt, completion_tokens=completion)
        if cost is None:
            self.count(tally, cost_unknown_calls=1)
        else:
            self.count(tally, cost_usd=float(cost))
        if choice is None or message is None:
            raise JudgeResponseError(
                f"the judge server answered without choices: {_short_text(response)}"
            )
        if content is None:
            raise JudgeResponseError(
                f"the judge's answer has no text (content: null, finish_reason={finish_reason!r})"
            )
        return CallResult(
            content=content,
            finish_reason=finish_reason,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=None if cost is None else float(cost),
            latency_s=latency,
            attempts=attempts,
        )
