"""``to_trl``: envkit rewards as TRL reward functions, inside a real ``trl.GRPOTrainer`` on CPU."""

from __future__ import annotations

import asyncio
import os
import re

import pytest
from rewards_support import judge_for

from envkit.rewards import Reward, Rubric, to_trl
from envkit.testing import Reply, ScriptedOpenAIServer, ruler_responder


def call(fn, **kwargs):
    return asyncio.run(fn(**kwargs))


def test_signature_and_name_fit_trl() -> None:
    from trl.trainer.utils import get_callable_name, is_async_callable

    fn = to_trl("numeric_match")
    assert is_async_callable(fn) and get_callable_name(fn) == "numeric_match"
    assert "to_trl(" in repr(fn)


def test_standard_format_with_dataset_columns() -> None:
    fn = to_trl("numeric_match")
    rewards = call(
        fn,
        prompts=["1+1?", "1+1?", "2+2?", "2+2?"],
        completions=["2", "3", "It is 4", "\\boxed{4}"],
        completion_ids=[[1], [2], [3], [4]],
        answer=[2, 2, 4, 4],
        trainer_state=object(),  # TRL extras are not columns
    )
    assert rewards == [1.0, 0.0, 1.0, 1.0]
    assert [len(g) for g in fn.last_groups] == [2, 2]
    assert fn.last_groups[0][0].reference == 2 and fn.last_groups[0][0].info == {}
    assert fn.last_groups[1][1].group_index == 1


def test_conversational_format_with_tool_calls() -> None:
    seen = []

    def inspect(trajectory) -> float:
        seen.append(trajectory)
        return float(len(trajectory.messages))

    prompt = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    completion = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}],
        },
        {"role": "tool", "name": "f", "content": "2"},
        {"role": "assistant", "content": "done", "thinking": "ignored key"},
    ]
    rewards = call(to_trl(inspect), prompts=[prompt], completions=[completion])
    assert rewards == [5.0]
    t = seen[0]
    assert [m.role for m in t.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert t.messages[1].content == "hi"
    assert t.messages[2].tool_calls[0].function.arguments == '{"x": 1}'
    assert t.messages[2].tool_calls[0].id == "call_0"


def test_grouping() -> None:
    fn = to_trl(Reward(lambda g: list(range(len(g))), name="pos", group=True))
    same = ["p"] * 6
    assert call(fn, prompts=same, completions=["c"] * 6) == [0, 1, 2, 3, 4, 5]
    fixed = to_trl(Reward(lambda g: list(range(len(g))), name="pos", group=True), group_size=3)
    assert call(fixed, prompts=same, completions=["c"] * 6) == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="not a multiple of group_size=4"):
        call(to_trl("exact_match", group_size=4), prompts=same, completions=["c"] * 6)
    with pytest.raises(ValueError, match="group_size must be"):
        to_trl("exact_match", group_size=0)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        call(fn, prompts=["a", "b"], completions=["c"])


def test_errors_become_none_and_are_logged() -> None:
    logged = {}
    fn = to_trl(Rubric([("numeric_match", 1.0)]))
    rewards = call(
        fn,
        prompts=["a", "a"],
        completions=["1", "2"],
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )  # no answer column: the reward is unknown, not 0
    assert rewards == [None, None]
    assert logged == {"envkit/rubric/errors": 2.0, "envkit/rubric/judge_errors": 0.0}


def test_judge_sees_each_prompt_group_in_one_request(server: ScriptedOpenAIServer) -> None:
    server.responder = ruler_responder(lambda text: 1.0 if "good" in text else 0.0)
    fn = to_trl(judge_for(server), group_size=2)
    rewards = call(
        fn,
        prompts=["task A", "task A", "task B", "task B"],
        completions=["good", "bad", "bad", "good"],
    )
    assert rewards == [1.0, 0.0, 0.0, 1.0]
    assert len(server.requests) == 2
    assert all(len(r.trajectories) == 2 for r in server.requests)


def test_inside_a_real_grpo_trainer(server: ScriptedOpenAIServer, tmp_path) -> None:
    """Two GRPO steps on CPU with a tiny random model: judge + verifiable reward via to_trl."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import trl
    from datasets import Dataset

    from envkit.models import load_model

    def respond(req):
        if any("What is 3+3?" in text for text in [req.user_text]):
            return Reply(status=400)  # this prompt's group cannot be judged
        return ruler_responder(lambda text: min(1.0, len(text) / 400))(req)

    server.responder = respond
    model, tokenizer = load_model("tiny-random")
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}], "answer": 2 * i}
        for i in range(4)
    ]
    judge_fn = to_trl(judge_for(server), group_size=4)
    numeric_fn = to_trl("numeric_match")
    args = trl.GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=6,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        shuffle_dataset=False,
        seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[judge_fn, numeric_fn],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    # TRL lays out 4 completions per prompt, 2 prompts per step: one judge request per group
    assert len(server.requests) == 4
    assert all(len(r.trajectories) == 4 for r in server.requests)
    logs = [h for h in trainer.state.log_history if "rewards/judge/mean" in h]
    assert len(logs) == 2
    assert logs[0]["rewards/numeric_match/mean"] == 0.0  # gibberish never gets the answer
    # the group of "What is 3+3?" was a judge error: None (NaN to TRL), training went on
    errors = [h.get("envkit/judge/judge_errors") for h in logs]
    assert errors == [0.0, 1.0]
    last = judge_fn.last_groups
    bad = next(g for g in last if re.search(r"3\+3", g[0].messages[0].content or ""))
    assert bad.outcome == "judge_error" and bad.rewards == [None] * 4
    good = next(g for g in last if g is not bad)
    assert good.outcome == "ok" and all(r is not None for r in good.rewards)
