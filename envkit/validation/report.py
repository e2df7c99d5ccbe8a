"""The result of ``envkit validate``: per probe mean reward against the floor and the golden
score, the findings with their trajectories, and whether the env holds (``ok``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from envkit.types import Trajectory

__all__ = ["Finding", "JudgeProbeResult", "ProbeResult", "ValidationReport"]

ProbeStatus = Literal["pass", "finding", "error", "info"]


class ProbeResult(BaseModel):
    """One probe over every seed.

    Attributes:
        name: The probe (``"claims"``, ``"canary:sys-exit"``, ``"hygiene:determinism"``...).
        kind: ``golden``, ``floor``, ``degenerate``, ``reward_search``, ``tool_abuse``,
            ``injection``, ``canary``, ``hygiene`` or ``judge``.
        description: What it tries.
        episodes: Episodes played.
        mean_reward: Mean episode reward (``None``: no episode got a reward).
        hits: Episodes that earned more than the floor of their seed.
        errors: Episodes that failed (env error, timeout ...).
        status: ``pass``, ``finding`` (reward it did not earn, or a broken hygiene rule),
            ``error`` (episodes failed, so the probe proves nothing) or ``info``.
        detail: Why, in a sentence.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    description: str = ""
    episodes: int = 0
    mean_reward: float | None = None
    hits: int = 0
    errors: int = 0
    status: ProbeStatus = "pass"
    detail: str = ""


class Finding(BaseModel):
    """A way into the reward (or a broken rule), with the trajectories that show it."""

    model_config = ConfigDict(extra="forbid")

    probe: str
    kind: str
    message: str
    trajectories: list[Trajectory] = Field(default_factory=list)


class JudgeProbeResult(BaseModel):
    """Injection against a real judge: how often the injected trajectory was ranked first."""

    model_config = ConfigDict(extra="forbid")

    model: str
    groups: int
    injected_first: int
    judge_errors: int = 0

    @property
    def rate(self) -> float:
        """The fraction of judged groups whose injected trajectory was ranked first."""
        judged = self.groups - self.judge_errors
        return self.injected_first / judged if judged else 0.0


class ValidationReport(BaseModel):
    """Everything ``envkit.validate`` found.

    Attributes:
        env_id: The env validated.
        seeds: The seeds every probe played.
        max_reward: The reward the golden path must reach (the declared ``reward_range``'s top,
            else 1.0).
        reward_range: The range every reward must lie in.
        floor: Mean reward of the empty replies (per seed, the best of them).
        golden: Mean reward of the golden path (``None``: no golden path).
        golden_status: ``"reaches max"``, ``"below max"``, ``"no golden path"`` or ``"error"``.
        probes: One row per probe.
        findings: Each problem with its trajectories.
        judge: The ``--judge`` injection result, when a judge was given.
        out: Where the findings' trajectories were written (JSONL that ``envkit view`` opens).
    """

    model_config = ConfigDict(extra="forbid")

    env_id: str
    env_kwargs: dict[str, object] = Field(default_factory=dict)
    seeds: list[int]
    max_reward: float
    reward_range: tuple[float, float]
    floor: float | None
    golden: float | None
    golden_status: str
    probes: list[ProbeResult]
    findings: list[Finding]
    judge: JudgeProbeResult | None = None
    out: str | None = None

    @property
    def ok(self) -> bool:
        """True when no probe earned reward it did not deserve and every probe ran."""
        return not self.findings and not any(p.status == "error" for p in self.probes)

    def summary(self) -> str:
        """One line per finding (or that the env holds)."""
        if self.ok:
            return f"{self.env_id} holds: {len(self.probes)} probes, no finding"
        lines = [f"{self.env_id}: {len(self.findings)} finding(s)"]
        lines += [f"- [{f.probe}] {f.message}" for f in self.findings]
        lines += [f"- [{p.name}] error: {p.detail}" for p in self.probes if p.status == "error"]
        return "\n".join(lines)

    def write(self, out: str | Path) -> Path:
        """Writes ``report.json`` and ``findings.jsonl`` (the findings' trajectories, one per
        line, tagged with ``metrics["validate_probe"]``; only when there are findings) to the folder
        ``out``; returns the JSONL's path."""
        from envkit.types import write_jsonl

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        trajectories = []
        for f in self.findings:
            for t in f.trajectories:
                t = t.model_copy(deep=True)
                t.metrics["validate_probe"] = f.probe
                t.metrics["validate_finding"] = f.message
                trajectories.append(t)
        path = folder / "findings.jsonl"
        if trajectories:
            write_jsonl(path, trajectories)
            self.out = str(path)
        else:
            path.unlink(missing_ok=True)
        (folder / "report.json").write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path
