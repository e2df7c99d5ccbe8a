"""``JudgeConfig``: the knobs of ``RulerJudge`` (timeouts, retries, ordering, output format).

Example:
    >>> JudgeConfig(timeout_s=5, max_retries=2).backoff_s
    1.0
    >>> try:
    ...     JudgeConfig(timeout=5)  # a typo is an error, not silently ignored
    ... except ValueError as e:
    ...     print(e.errors()[0]["type"])
    extra_forbidden
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["JudgeConfig"]


class JudgeConfig(BaseModel):
    """How ``RulerJudge`` calls its model and reads the answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(60.0, gt=0, description="Seconds per request before it is retried.")
    max_retries: int = Field(
        4, ge=0, description="Retries after a timeout, a 429, a 5xx or a connection error."
    )
    max_requests_per_group: int = Field(
        8,
        ge=1,
        description="The most requests one group may cost, all together: both orders, transport "
        "retries and retries after invalid answers share this one budget (cache hits are free). "
        "When it is spent the group gets judge_error instead of more requests.",
    )
    max_invalid_retries: int = Field(
        2,
        ge=0,
        description="Retries after an invalid answer (malformed JSON, missing / extra / duplicate "
        "ids, out-of-range score); the model is told what was wrong.",
    )
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each retry.")
    backoff_max_s: float = Field(
        30.0, ge=0, description="Longest retry delay (also caps Retry-After)."
    )
    jitter: float = Field(
        0.1, ge=0, le=1, description="Random extra delay, a fraction of the delay."
    )
    max_concurrency: int = Field(8, ge=1, description="Most requests in flight across groups.")
    clamp: bool = Field(
        False,
        description="Clamp scores to [0, 1] instead of retrying answers with out-of-range scores.",
    )
    shuffle: bool = Field(True, description="Show trajectories in a seeded random order per group.")
    both_orders: bool = Field(
        False,
        description="Judge each group twice (an order and its reverse) and average: less position "
        "bias, two calls per group.",
    )
    seed: int = Field(0, description="Seed of the shuffles (mixed with each group's content).")
    dedup_prefix: bool = Field(
        True,
        description="State the shared prefix (system prompt, task, common turns, tools) once; "
        "False repeats it in every trajectory (for comparison only).",
    )
    default_rubric: bool = Field(
        True, description="Include the default rubric (with the reward-hacking clause)."
    )
    max_message_chars: int | None = Field(
        8000, ge=200, description="Longer message texts are cut in the middle (None: never)."
    )
    temperature: float | None = Field(
        None, ge=0, description="Sampling temperature (None: the model's)."
    )
    max_tokens: int | None = Field(None, ge=1, description="Most tokens of the judge's answer.")
    response_format: Literal["json_object", "json_schema", "none"] = Field(
        "json_object",
        description="Ask for a JSON object, for the exact JSON schema (servers that support "
        "structured output), or nothing (the prompt alone asks for JSON).",
    )
    cost_per_token: tuple[float, float] | None = Field(
        None,
        description="(input, output) USD per token, for models litellm cannot price (local "
        "servers); None: litellm's price list (the cost stays unknown for models it lacks).",
    )
    litellm_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra arguments of litellm.acompletion (e.g. extra_headers, "
        "input_cost_per_token); they are part of the cache key.",
    )

    @model_validator(mode="after")
    def _budget_fits_the_orders(self) -> JudgeConfig:
        if self.both_orders and self.max_requests_per_group < 2:
            raise ValueError(
                "both_orders=True sends two requests per group: set max_requests_per_group >= 2"
            )
        return self
