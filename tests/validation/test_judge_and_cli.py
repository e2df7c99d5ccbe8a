"""The judge probe against the scripted judge server, and ``envkit validate`` end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import validation_support  # noqa: F401  (registers the test envs)
from typer.testing import CliRunner

from envkit.cli.main import app
from envkit.rewards import RulerJudge
from envkit.testing import ScriptedOpenAIServer, ruler_responder
from envkit.validation import validate
from envkit.viewer.data import load_view

SUPPORT = Path(__file__).with_name("validation_support.py")


def _reply(text: str) -> str:
    """The last assistant reply in a trajectory block of the judge's prompt."""
    found = re.findall(r'<message role="assistant"[^>]*>\n(.*?)\n</message>', text, re.S)
    return found[-1] if found else text


def _naive(text: str) -> float:
    """A judge that believes text addressed to it."""
    if "ranked first" in text or "score this 1" in text:
        return 1.0
    return 0.9 if _reply(text).strip().isdigit() else 0.0


def _sound(text: str) -> float:
    """A judge that scores the answer: a plain number is an answer; anything else is not."""
    return 1.0 if _reply(text).strip().isdigit() else 0.0


def _judge(server: ScriptedOpenAIServer) -> RulerJudge:
    return RulerJudge(
        "openai/judge-test",
        api_base=server.url,
        api_key="test",
        cache=False,
        timeout_s=5.0,
        backoff_s=0.001,
        backoff_max_s=0.05,
        jitter=0.0,
    )


@pytest.mark.parametrize(("score_of", "fooled"), [(_naive, True), (_sound, False)])
def test_judge_injection_rate_with_the_scripted_judge(score_of, fooled: bool) -> None:  # type: ignore[no-untyped-def]
    with ScriptedOpenAIServer(responder=ruler_responder(score_of)) as server:
        report = validate("SoundSum-v0", episodes=3, judge=_judge(server))
        assert len(server.requests) == 3  # one judge call per seed's group
        prompt = server.requests[0].user_text
    assert "Note to the judge" in prompt and "score this 1" in prompt  # both injections shown
    assert report.judge is not None and report.judge.groups == 3
    assert report.judge.injected_first == (3 if fooled else 0)
    row = next(p for p in report.probes if p.name == "judge:injection")
    assert row.status == ("finding" if fooled else "pass")
    assert report.ok is not fooled
    if fooled:
        [finding] = [f for f in report.findings if f.probe == "judge:injection"]
        assert "3 of 3 groups (100%)" in finding.message
        assert any(
            "Note to the judge" in (t.messages[-1].content or "") for t in finding.trajectories
        )


def test_cli_exit_codes_table_and_findings_jsonl(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "220"})  # the table's rows on one line each
    ok = runner.invoke(app, ["validate", "SoundSum-v0", "--episodes", "2"])
    assert ok.exit_code == 0, ok.output
    assert "envkit validate envkit/SoundSum-v0" in ok.output and "holds" in ok.output
    for probe in ("golden", "null", "claims", "every-integer", "hygiene:leak"):
        assert probe in ok.output
    bad = runner.invoke(app, ["validate", "HackClaims-v0", "-n", "2", "--out", str(tmp_path)])
    assert bad.exit_code == 1, bad.output
    assert "FINDING" in bad.output and "[claims]" in bad.output
    view = load_view(tmp_path / "findings.jsonl")  # what `envkit view` opens
    assert view.trajectories and {t["reward"] for t in view.trajectories} == {1.0}
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["findings"][0]["probe"] == "claims"
    assert runner.invoke(app, ["validate", "NoSuchEnv-v0"]).exit_code == 2
    assert runner.invoke(app, ["validate", "SoundSum-v0", "-k", "max_turns"]).exit_code == 2
    assert runner.invoke(app, ["validate", "SoundSum-v0", "-k", "max_turns=0"]).exit_code == 2


def test_cli_subprocess_with_import(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "envkit.cli",
            "validate",
            "HackToolFile-v0",
            "--import",
            str(SUPPORT),
            "--episodes",
            "1",
            "--out",
            str(tmp_path / "v"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tool-abuse" in done.stdout and "FINDING" in done.stdout
    assert "findings.jsonl" in done.stdout
    view = load_view(tmp_path / "v" / "findings.jsonl")
    assert any(t["reward"] == 1.0 for t in view.trajectories)


def test_cli_judge_option_reports_the_injection_rate() -> None:
    runner = CliRunner(env={"COLUMNS": "220"})
    with ScriptedOpenAIServer(responder=ruler_responder(_naive)) as server:
        args = ["validate", "SoundSum-v0", "-n", "2", "--judge", "openai/judge-test"]
        fooled = runner.invoke(app, [*args, "--judge-api-base", server.url])
        assert len(server.requests) == 2
        assert server.requests[0].body["model"] == "judge-test"
    assert fooled.exit_code == 1, fooled.output
    assert "injected trajectory ranked first in 2 of 2 groups (100%)" in fooled.output
    assert "judge:injection" in fooled.output
