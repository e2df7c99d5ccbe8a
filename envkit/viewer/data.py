"""What the viewer page shows, read from a run folder or a trajectories JSONL file.

``load_view(path)`` accepts:

* a run folder of ``envkit train`` (``run.json``, ``metrics.jsonl``,
  ``trajectories/step-NNNNNN.jsonl``): every step's groups, with their step, plus the metrics
  rows for the curves;
* a JSONL file of ``TrajectoryGroup`` lines (``envkit eval --out``, ``collect(jsonl_path=...)``)
  or of ``Trajectory`` lines (``write_jsonl(path, trajectories)``; grouped by env, seed and task).

Each trajectory becomes a compact JSON-ready dict (token ids and logprobs are left out: the page
shows text, not tokens). Bad input raises :class:`ViewerError` saying what was wrong and how to
fix it; a torn last line (a run killed mid-write) is skipped with a warning kept in
``ViewData.warnings``.

Example:
    >>> import os, tempfile
    >>> from envkit.types import Message, Trajectory, TrajectoryGroup, write_jsonl
    >>> path = os.path.join(tempfile.mkdtemp(), "eval.jsonl")
    >>> traj = Trajectory(env_id="envkit/Arithmetic-v0", seed=1, reward=1.0,
    ...                   messages=[Message(role="user", content="1+1?")])
    >>> write_jsonl(path, [TrajectoryGroup(env_id=traj.env_id, seed=1, trajectories=[traj])])
    1
    >>> view = load_view(path)
    >>> view.kind, len(view.trajectories), view.trajectories[0]["reward"]
    ('jsonl', 1, 1.0)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envkit.errors import EnvkitError
from envkit.types import Trajectory, TrajectoryGroup

__all__ = ["ViewData", "ViewerError", "load_view"]

DEFAULT_MAX_MESSAGE_CHARS = 20_000
"""Messages longer than this are cut in the page (the file on disk keeps every character)."""


class ViewerError(EnvkitError, ValueError):
    """The input of ``envkit view`` cannot be shown (missing, empty or not envkit's format)."""


class ViewData(BaseModel):
    """Everything the page embeds: trajectories, their groups, the run's metrics and info."""

    model_config = ConfigDict(extra="forbid")

    source: str
    kind: Literal["run", "jsonl"]
    run_info: dict[str, Any] = Field(default_factory=dict)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    groups: list[dict[str, Any]] = Field(default_factory=list)
    trajectories: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or limit <= 0 or len(text) <= limit:
        return text
    head = limit * 3 // 4
    tail = limit - head
    cut = len(text) - limit
    return f"{text[:head]}\n[... {cut} characters cut by envkit view ...]\n{text[-tail:]}"


def _judges(traj: Trajectory) -> list[dict[str, Any]]:
    """The judge verdicts a RULER judge wrote (``<name>_explanation`` in the metrics)."""
    out = []
    for key, value in traj.metrics.items():
        if key.endswith("_explanation") and isinstance(value, str):
            name = key[: -len("_explanation")]
            out.append(
                {
                    "name": name,
                    "score": traj.reward_breakdown.get(name),
                    "explanation": value,
                    "reward_hacking": traj.metrics.get(f"{name}_reward_hacking"),
                }
            )
    return out


def _trajectory_row(
    traj: Trajectory, index: int, group: int, step: int | None, max_chars: int
) -> dict[str, Any]:
    messages = []
    for m in traj.messages:
        row: dict[str, Any] = {"role": m.role, "content": _cut(m.content, max_chars)}
        if m.tool_calls:
            row["tool_calls"] = [
                {
                    "id": tc.id,
                    "name": tc.function.name,
                    "arguments": _cut(tc.function.arguments, max_chars),
                }
                for tc in m.tool_calls
            ]
        if m.tool_call_id is not None:
            row["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            row["name"] = m.name
        messages.append(row)
    errors = traj.metrics.get("reward_errors")
    return {
        "id": index,
        "group": group,
        "step": step,
        "env": traj.env_id,
        "seed": traj.seed,
        "task": traj.task_id,
        "member": traj.group_index,
        "reward": traj.reward,
        "breakdown": traj.reward_breakdown,
        "outcome": traj.outcome,
        "error": traj.error,
        "reward_errors": errors if isinstance(errors, dict) else None,
        "turns": traj.num_turns,
        "messages": messages,
        "finish": [c.finish_reason for c in traj.completions],
        "tokens": [len(c.token_ids) if c.token_ids is not None else None for c in traj.completions],
        "judges": _judges(traj),
        "tools": [t.get("function", {}).get("name") for t in traj.tools or []],
        "metrics": traj.metrics,
        "info": traj.info,
        "reference": traj.reference,
        "timings": traj.timings.model_dump(),
        "usage": traj.usage.model_dump() if traj.usage else None,
    }


def _lines(path: Path, warnings: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, JSON object)`` of a JSONL file; a torn last line becomes a warning."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ViewerError(f"cannot read {path}: {e}") from None
    lines = text.split("\n")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):  # no newline after it: a writer was killed mid-line
                warnings.append(f"{path}:{lineno}: skipped a torn last line ({e.msg})")
                continue
            raise ViewerError(
                f"{path}:{lineno}: not JSON ({e.msg} at column {e.colno}); envkit view reads "
                "JSON lines of TrajectoryGroup or Trajectory (envkit eval --out, a run folder)"
            ) from None
        if not isinstance(obj, dict):
            raise ViewerError(
                f"{path}:{lineno}: a JSON {type(obj).__name__}, expected an object "
                "(a TrajectoryGroup or a Trajectory)"
            )
        yield lineno, obj


def _parse_groups(path: Path, warnings: list[str]) -> list[TrajectoryGroup]:
    """The groups of a JSONL file of groups or of single trajectories."""
    groups: list[TrajectoryGroup] = []
    by_task: dict[tuple[Any, ...], TrajectoryGroup] = {}
    for lineno, obj in _lines(path, warnings):
        is_group = "trajectories" in obj
        model: type[TrajectoryGroup] | type[Trajectory] = (
            TrajectoryGroup if is_group else Trajectory
        )
        if not is_group and "env_id" not in obj:
            hint = (
                " (this looks like a metrics file: pass the run folder instead)"
                if "step" in obj or "kind" in obj
                else ""
            )
            raise ViewerError(
                f"{path}:{lineno}: neither a TrajectoryGroup nor a Trajectory (keys: "
                f"{', '.join(sorted(obj)[:8])}){hint}; envkit view reads `envkit eval --out` "
                "files, run folders of `envkit train` and write_jsonl() files of trajectories"
            )
        try:
            item = model.model_validate(obj)
        except ValidationError as e:
            raise ViewerError(
                f"{path}:{lineno}: not a valid {model.__name__}: {e.errors()[0]['msg']} at "
                f"{'.'.join(str(p) for p in e.errors()[0]['loc'])} ({e.error_count()} error(s))"
            ) from None
        if isinstance(item, TrajectoryGroup):
            groups.append(item)
            continue
        key = (item.env_id, item.seed, item.task_id)
        if key not in by_task:
            by_task[key] = TrajectoryGroup(env_id=item.env_id, seed=item.seed, task_id=item.task_id)
            groups.append(by_task[key])
        by_task[key].trajectories.append(item)
    return groups


def _step_files(run: Path, steps: tuple[int | None, int | None]) -> list[tuple[int, int, Path]]:
    from envkit.trainers.run_dir import RunDir

    return RunDir(run).trajectory_files(steps)


def load_view(
    path: str | Path,
    *,
    steps: tuple[int | None, int | None] = (None, None),
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    on_file: Callable[[Path], None] | None = None,
) -> ViewData:
    """Reads a run folder or a trajectories JSONL file into a ``ViewData``.

    Args:
        path: A run folder of ``envkit train`` or a JSONL file of groups or trajectories.
        steps: Only the training steps in this inclusive range (run folders; ``None``: open).
        max_message_chars: Cut longer messages in the page (``0``: keep everything).
        on_file: Called with each file before it is read (progress bars).

    Raises:
        ViewerError: the path is missing, empty or not in envkit's format.
    """
    p = Path(path)
    warnings: list[str] = []
    groups: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def add(file_groups: list[TrajectoryGroup], step: int | None) -> None:
        for g in file_groups:
            gid = len(groups)
            members = []
            for traj in g.trajectories:
                rows.append(_trajectory_row(traj, len(rows), gid, step, max_message_chars))
                members.append(len(rows) - 1)
            groups.append(
                {
                    "id": gid,
                    "env": g.env_id,
                    "seed": g.seed,
                    "task": g.task_id,
                    "step": step,
                    "outcome": g.outcome,
                    "error": g.error,
                    "metrics": g.metrics,
                    "members": members,
                }
            )

    if not p.exists():
        raise ViewerError(
            f"{p} does not exist; give a run folder (envkit train --out DIR) or a JSONL file "
            "(envkit eval ... --out FILE.jsonl)"
        )
    if p.is_dir():
        from envkit.trainers.run_dir import RunDir

        run = RunDir(p)
        files = _step_files(p, steps)
        if not run.run_info_path.is_file() and not run.metrics_path.is_file() and not files:
            raise ViewerError(
                f"{p} is not an envkit run folder (no run.json, metrics.jsonl or "
                "trajectories/step-*.jsonl); give the --out folder of `envkit train` or a JSONL "
                "file of trajectories"
            )
        try:
            info = run.read_run_info() if run.run_info_path.is_file() else {}
        except (OSError, json.JSONDecodeError) as e:
            warnings.append(f"{run.run_info_path}: unreadable ({e}); shown without run info")
            info = {}
        lo, hi = steps
        metrics = [
            r
            for r in run.read_metrics()
            if (lo is None or int(r.get("step", 0)) >= lo)
            and (hi is None or int(r.get("step", 0)) <= hi)
        ]
        for step, _rank, f in files:
            if on_file is not None:
                on_file(f)
            add(_parse_groups(f, warnings), step)
        if not files:
            warnings.append(
                f"{p}: no trajectory files (trajectories/step-*.jsonl) in the chosen steps"
            )
        return ViewData(
            source=str(p),
            kind="run",
            run_info=info,
            metrics=metrics,
            groups=groups,
            trajectories=rows,
            warnings=warnings,
        )
    if on_file is not None:
        on_file(p)
    add(_parse_groups(p, warnings), None)
    if not rows:
        raise ViewerError(
            f"{p} holds no trajectories; write some with `envkit eval ENV --model M --out {p}`"
        )
    return ViewData(
        source=str(p), kind="jsonl", groups=groups, trajectories=rows, warnings=warnings
    )
