"""Small, pure, documented verifiable rewards (registered under their function names).

* ``exact_match``, ``numeric_match``: the final answer against a reference answer,
* ``regex_match``, ``json_valid``: format checks (a regular expression, JSON, a JSON schema),
* ``tool_calls_valid``: the fraction of well-formed tool calls,
* ``length_penalty``: a negative reward beyond a length budget,
* ``code_tests``: the fraction of unit tests passed, run in an envkit sandbox.

Example:
    >>> from envkit.rewards import list_rewards
    >>> {"exact_match", "numeric_match", "code_tests"} <= set(list_rewards())
    True
"""

from __future__ import annotations

# The text helpers live in ``envkit.parsing`` (shared with the environments); re-exported here.
from envkit.parsing import extract_answer, extract_code, final_response, parse_number
from envkit.rewards.verifiable.answers import exact_match, numeric_match
from envkit.rewards.verifiable.code import CodeTest, code_tests
from envkit.rewards.verifiable.formats import json_valid, regex_match
from envkit.rewards.verifiable.length import length_penalty
from envkit.rewards.verifiable.tool_calls import tool_call_problem, tool_calls_valid

__all__ = [
    "CodeTest",
    "code_tests",
    "exact_match",
    "extract_answer",
    "extract_code",
    "final_response",
    "json_valid",
    "length_penalty",
    "numeric_match",
    "parse_number",
    "regex_match",
    "tool_call_problem",
    "tool_calls_valid",
]
