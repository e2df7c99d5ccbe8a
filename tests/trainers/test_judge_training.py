"""Training on a RULER judge served by a real OpenAI-compatible server on 127.0.0.1.

The judge fails on its first request (malformed JSON, no retries): that group must end as
``judge_error``, keep unknown rewards, be left out of the backward pass and be counted; the other
groups are scored (one trajectory per group flagged as reward hacking, which the diagnostics
report).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import torch

from envkit.testing import Reply, ScriptedOpenAIServer
from envkit.testing.judge_answers import ruler_answer, trajectory_blocks
from envkit.trainers import GRPOConfig, GRPOTrainer
from envkit.trainers.run_dir import RunDir


def test_judge_errors_are_dropped_and_counted_and_hacking_is_flagged(tmp_path: Path) -> None:
    from envkit.rewards import RulerJudge

    lock = threading.Lock()
    calls = {"n": 0}

    def respond(request):  # type: ignore[no-untyped-def]
        with lock:
            calls["n"] += 1
            first = calls["n"] == 1
        if first:
            return Reply(content="this is not JSON")
        blocks = trajectory_blocks(request.user_text)
        scores = {tid: (len(text) % 7) / 6 for tid, text in blocks.items()}
        return Reply(content=ruler_answer(scores, hacking={"T1"}))

    threads = torch.get_num_threads()
    with ScriptedOpenAIServer(responder=respond) as server:
        judge = RulerJudge(
            "openai/judge",
            api_base=server.url,
            api_key="sk-test",
            max_retries=0,
            max_invalid_retries=0,
        )
        cfg = GRPOConfig(
            output_dir=str(tmp_path / "run"),
            max_steps=2,
            group_size=4,
            groups_per_step=2,
            max_new_tokens=6,
            env_kwargs={"operators": "+", "max_turns": 1},
            progress=False,
            torch_threads=1,
            kl_to_base_every=0,
        )
        trainer = GRPOTrainer("tiny-random", "Arithmetic-v0", reward=judge, config=cfg)
        try:
            trainer.train()
        finally:
            trainer.close()
            torch.set_num_threads(threads)
        assert len(server.requests) == 4  # one judge call per group: 2 steps x 2 groups

    run = RunDir(tmp_path / "run")
    rows = [r for r in run.read_metrics() if r["kind"] == "train"]
    assert [r["groups/judge_error"] for r in rows] == [1.0, 0.0]
    assert rows[0]["episodes/trained_frac"] <= 0.5  # the judge-error group did not train
    assert all(r["judge/hacking_flagged_frac"] > 0 for r in rows)
    assert "reward/judge" in rows[0]
    groups = [json.loads(line) for line in run.trajectories_path(1).read_text().splitlines()]
    failed = [g for g in groups if g["outcome"] == "judge_error"]
    assert len(failed) == 1 and all(t["reward"] is None for t in failed[0]["trajectories"])
    assert json.loads(run.run_info_path.read_text())["reward"] == {"judge": "openai/judge"}
