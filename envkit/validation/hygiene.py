"""The hygiene rules of ``envkit validate``: the reference never leaks, the same seed gives the
same task and reward, rewards stay in the declared range, and the grader runs outside the
agent's reach.

Each check returns a ``Check``: its table row and, when the rule broke, a ``Finding``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envkit.types import Message, Trajectory
from envkit.validation.report import Finding, ProbeResult

__all__ = ["Check", "determinism", "isolation", "leaks", "reward_range"]

LEAK_RATE = 0.5
"""Above this fraction of the seeds, a reference in the opening prompt is reported as "a
retrieval task, or a leak" (below it, as chance: ``"7"`` in ``What is 7 * 1?``). A reference that
the prompts of tasks with other references show too (an option the task names: "Return True
... or False") does not count."""
TOOL_LEAK_MIN_CHARS = 6
"""In the tool output of the tool-abuse probe (which prints /etc/passwd and directory listings)
a reference counts as leaked only when it is at least this long: shorter ones appear by chance."""


@dataclass
class Check:
    """One hygiene rule's row and, when it broke, its finding."""

    result: ProbeResult
    finding: Finding | None = None


def _fail(name: str, description: str, message: str, trajs: Sequence[Trajectory]) -> Check:
    return Check(
        ProbeResult(
            name=name,
            kind="hygiene",
            description=description,
            status="finding",
            detail=message[:300],
        ),
        Finding(probe=name, kind="hygiene", message=message, trajectories=list(trajs)[:8]),
    )


def _pass(name: str, description: str, detail: str = "") -> Check:
    return Check(ProbeResult(name=name, kind="hygiene", description=description, detail=detail))


def reward_range(trajs: Sequence[Trajectory], lo: float, hi: float) -> Check:
    """Every episode reward lies in ``[lo, hi]``."""
    name, what = "hygiene:range", f"every reward in [{lo:g}, {hi:g}]"
    bad = [t for t in trajs if t.reward is not None and not lo - 1e-9 <= t.reward <= hi + 1e-9]
    if bad:
        got = sorted({round(t.reward or 0.0, 6) for t in bad})[:5]
        return _fail(
            name,
            what,
            f"rewards {got} are outside the declared range [{lo:g}, {hi:g}]; declare the env's "
            "real range with the class attribute reward_range = (low, high)",
            bad,
        )
    return _pass(name, what)


def _pattern(reference: Any) -> re.Pattern[str] | None:
    if reference is None or isinstance(reference, (bool, dict, list)):
        return None
    text = str(reference).strip()
    if not text:
        return None
    # A whole token: "12" is not in "123" nor in "1.25".
    return re.compile(r"(?<![\w.])" + re.escape(text) + r"(?![\w]|\.\d)", re.I)


def _texts(m: Message) -> str:
    parts = [m.content or ""]
    for c in m.tool_calls or []:
        parts.append(c.function.arguments or "")
    return "\n".join(parts)


def _leak_in(traj: Trajectory, min_chars: int = 0) -> tuple[bool, bool]:
    """(in the opening prompt, in a later env message the agent had not written itself)."""
    pat = _pattern(traj.reference)
    if pat is None or len(str(traj.reference).strip()) < min_chars:
        return False, False
    said = ""
    prompt = later = False
    opening = True
    for m in traj.messages:
        if m.role == "assistant":
            opening = False
            said += "\n" + _texts(m)
            continue
        if m.content and pat.search(m.content):
            if opening:
                prompt = True
            elif not pat.search(said):
                later = True
    return prompt, later


def leaks(
    plain: Mapping[str, Sequence[Trajectory]], tool_abuse: Mapping[str, Sequence[Trajectory]]
) -> Check:
    """The reference never appears in what the env shows (prompt, feedback, tool output)
    unless the agent wrote it first; golden trajectories are not looked at."""
    name, what = "hygiene:leak", "the reference never appears in an observation or tool output"
    later = [t for ts in plain.values() for t in ts if _leak_in(t)[1]]
    later += [t for ts in tool_abuse.values() for t in ts if _leak_in(t, TOOL_LEAK_MIN_CHARS)[1]]
    if later:
        return _fail(
            name,
            what,
            f"the reference appeared in the env's feedback or a tool's output in {len(later)} "
            "episode(s) before the agent wrote it: a policy can read the answer off the env",
            later,
        )
    # The opening prompt: one trajectory per seed (every probe sees the same prompt). A reference
    # that the prompts of tasks with other references show too is one of the options the task
    # names ("Return True ... or False"), not a leak.
    first = next(iter(plain.values()), [])
    in_prompt = [t for t in first if _leak_in(t)[0] and not _an_option(t, first)]
    # In the prompt it is reported, not a finding: a retrieval task (find the name in the text)
    # shows its answer by design; when a policy can read it off, the echo and numbers probes
    # earn reward and are the findings.
    detail = ""
    if in_prompt:
        many = len(in_prompt) / len(first) > LEAK_RATE
        detail = (
            f"the reference is in the opening prompt of {len(in_prompt)} of {len(first)} seeds"
            + (": a retrieval task, or a leak" if many else " (by chance)")
        )
    return _pass(name, what, detail)


def _opening(traj: Trajectory) -> str:
    out = []
    for m in traj.messages:
        if m.role == "assistant":
            break
        out.append(m.content or "")
    return "\n".join(out)


def _an_option(traj: Trajectory, others: Sequence[Trajectory]) -> bool:
    """Whether the prompt of a task with another reference shows ``traj``'s reference too."""
    pat = _pattern(traj.reference)
    return pat is not None and any(
        o.reference != traj.reference and pat.search(_opening(o)) for o in others
    )


def determinism(first: Sequence[Trajectory], again: Sequence[Trajectory] | None) -> Check | None:
    """The same seed gives the same task (id and opening messages) and the same reward."""
    if again is None:
        return None
    name, what = "hygiene:determinism", "same seed -> same task and same reward"
    bad = []
    for a, b in zip(first, again, strict=True):
        if a.failed or b.failed:
            continue
        opening_a = [m.content for m in a.messages[:1]]
        opening_b = [m.content for m in b.messages[:1]]
        if a.task_id != b.task_id or opening_a != opening_b or a.reward != b.reward:
            bad += [a, b]
    if bad:
        return _fail(
            name,
            what,
            f"{len(bad) // 2} seed(s) gave a different task or reward when played again: draw "
            "tasks from self.np_random (seeded by reset) and keep the reward a function of the "
            "episode",
            bad,
        )
    return _pass(name, what)


def isolation(env: Any) -> Check:
    """Where the env lets the agent act on a machine (a sandbox), the grader must run outside
    its reach: the env declares ``grader_isolated = True`` (grading in a fresh sandbox that
    receives only the submitted artifact, or on the host)."""
    name, what = "hygiene:isolation", "the grader runs outside the agent's reach"
    from envkit.environments._sandboxed import SandboxedEnv

    if not isinstance(env, SandboxedEnv):
        return _pass(name, what, "no sandbox: the agent acts only through its replies")
    if getattr(env, "grader_isolated", False) is True:
        return _pass(name, what, "declared: grader_isolated = True")
    return _fail(
        name,
        what,
        f"{type(env).__name__} lets the agent act in a sandbox but does not declare "
        "grader_isolated = True: grade in a fresh sandbox that receives only the submitted "
        "artifact (or on the host), then declare it",
        [],
    )
