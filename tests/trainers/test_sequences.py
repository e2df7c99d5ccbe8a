"""The training sequence of a multi-turn tool episode, checked token by token.

A scripted 3-turn episode (two tool calls, then an answer) is played through the real rollout
engine and a real ``ChatEnv`` with a ``ToolBox``; the policy renders its prompts exactly as
``HFPolicy`` does (same chat template, same tokenizer) and "samples" scripted tokens. The
expected layout is computed independently from chat-template renderings of the conversation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import envkit
from envkit.policies import CallablePolicy, HFPolicy
from envkit.trainers.sequences import SequenceError, render_trajectory
from envkit.types import Completion, GenerationRequest, Message, Trajectory

sys.path.insert(0, str(Path(__file__).parent))
from calc_support import CalcEnv, scripted_policy

CANONICAL = [
    '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
    '<tool_call>\n{"name": "mul", "arguments": {"a": 5, "b": 4}}\n</tool_call>',
    "The answer is 20.",
]
# The same calls as a model might write them: compact JSON the chat template re-renders.
COMPACT = [
    '<tool_call>{"name":"add","arguments":{"a":2,"b":3}}</tool_call>',
    '<tool_call>{"name":"mul","arguments":{"a":5,"b":4}}</tool_call>',
    "The answer is 20.",
]


@pytest.fixture(scope="module", params=["tiny-random", "smollm2-135m"])
def model_and_tokenizer(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    from envkit.models import load_model

    return load_model(request.param)


def _scripted_episode(model: Any, tok: Any, texts: list[str]) -> Trajectory:
    """Plays CalcEnv with a policy that renders like HFPolicy and samples the scripted texts."""
    turn = iter(texts)
    policy = scripted_policy(
        HFPolicy(model, tok, max_new_tokens=64),
        tok,
        lambda messages: next(turn),
        lambda i: -0.5 - 0.01 * i,
    )
    groups = envkit.collect(CalcEnv, policy, seeds=[0], progress=False)
    traj = groups[0][0]
    assert traj.outcome == "ok", traj.error
    assert [m.role for m in traj.messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert traj.reward == 1.0
    return traj


def _render(tok: Any, traj: Trajectory, upto: int, generation_prompt: bool) -> list[int]:
    messages = []
    for m in traj.messages[:upto]:
        d = m.to_dict()
        d["content"] = d.get("content") or ""
        for call in d.get("tool_calls") or []:
            import json

            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        messages.append(d)
    text = tok.apply_chat_template(
        messages, tools=traj.tools, add_generation_prompt=generation_prompt, tokenize=False
    )
    return list(tok(text, add_special_tokens=False)["input_ids"])


def test_three_turn_tool_episode_mask_token_by_token(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tok = model_and_tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    traj = _scripted_episode(model, tok, CANONICAL)
    seq = render_trajectory(traj, stop_token_ids=[eos])

    assert seq.rerendered_turns == 0
    assert seq.turns == 3
    # The whole sequence is the conversation as the chat template renders it (up to the end of
    # the last assistant turn, whose sampled tokens end with <|im_end|>).
    full = _render(tok, traj, len(traj.messages), generation_prompt=False)
    sequence = seq.prompt_ids + seq.completion_ids
    assert sequence == full[: len(sequence)]
    assert tok.decode(full[len(sequence) :]).strip() == ""
    # The first prompt is the opening conversation with the generation prompt.
    assert seq.prompt_ids == _render(tok, traj, 1, generation_prompt=True)

    # Expected mask: 1 exactly on the tokens of each assistant turn, located independently as
    # "what follows the rendering of the conversation before that turn".
    assistant_at = [i for i, m in enumerate(traj.messages) if m.role == "assistant"]
    expected = [0] * len(sequence)
    for k, i in enumerate(assistant_at):
        start = len(_render(tok, traj, i, generation_prompt=True))
        sampled = traj.completions[k].token_ids
        assert sequence[start : start + len(sampled)] == sampled
        expected[start : start + len(sampled)] = [1] * len(sampled)
    assert seq.mask == expected[len(seq.prompt_ids) :]

    # Env/tool segments are exactly the masked tokens: tool responses and chat markup.
    env_text = tok.decode([t for t, m in zip(seq.completion_ids, seq.mask, strict=True) if m == 0])
    assert "<tool_response>\n5\n</tool_response>" in env_text
    assert "<tool_response>\n20\n</tool_response>" in env_text
    assert "The answer" not in env_text and '"add"' not in env_text
    pairs = list(zip(seq.completion_ids, seq.mask, strict=True))
    policy_text = tok.decode([t for t, m in pairs if m == 1])
    assert "tool_response" not in policy_text and '"add"' in policy_text

    # Log-probabilities: the sampled ones on policy tokens, 0.0 on env tokens.
    sampled_lps = [lp for c in traj.completions for lp in c.logprobs or []]
    assert [lp for lp, m in zip(seq.logprobs or [], seq.mask, strict=True) if m == 1] == sampled_lps
    assert all(lp == 0.0 for lp, m in zip(seq.logprobs or [], seq.mask, strict=True) if m == 0)


def test_rerendered_tool_calls_keep_the_sampled_tokens(
    model_and_tokenizer: tuple[Any, Any],
) -> None:
    model, tok = model_and_tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    traj = _scripted_episode(model, tok, COMPACT)
    seq = render_trajectory(traj, stop_token_ids=[eos])
    # The template re-serialized both tool calls, so two turns could not be matched by prefix.
    assert seq.rerendered_turns == 2
    sampled = [t for c in traj.completions for t in c.token_ids or []]
    assert [t for t, m in zip(seq.completion_ids, seq.mask, strict=True) if m == 1] == sampled
    # Each env segment is what the next prompt holds after the previous turn's end-of-turn.
    segments, current = [], []
    for t, m in zip(seq.completion_ids, seq.mask, strict=True):
        if m == 0:
            current.append(t)
        elif current:
            segments.append(current)
            current = []
    assert len(segments) == 2
    for k, segment in enumerate(segments, start=1):
        prompt = traj.completions[k].prompt_token_ids or []
        assert prompt[-len(segment) :] == segment
        assert tok.decode(segment).startswith("\n<|im_start|>user\n<tool_response>")


def test_turn_cut_by_max_new_tokens_masks_the_closing_token() -> None:
    from envkit.models import load_model

    model, tok = load_model("tiny-random")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    renderer = HFPolicy(model, tok, max_new_tokens=8)
    answers = iter(["I think it is", "14"])

    def fn(messages: list[dict[str, Any]], tools: Any) -> Completion:
        text = next(answers)
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        cut = text != "14"  # the first turn ran out of tokens: no <|im_end|> sampled
        request = GenerationRequest(messages=[Message.coerce(m) for m in messages])
        return Completion(
            message=Message(role="assistant", content=text),
            prompt_token_ids=renderer.render(request),
            token_ids=ids if cut else [*ids, eos],
            logprobs=[-1.0] * (len(ids) + (0 if cut else 1)),
            finish_reason="length" if cut else "stop",
        )

    env_kwargs = {"operators": "+", "max_turns": 2}
    groups = envkit.collect(
        "Arithmetic-v0", CallablePolicy(fn), seeds=[0], env_kwargs=env_kwargs, progress=False
    )
    traj = groups[0][0]
    seq = render_trajectory(traj, stop_token_ids=[eos])
    first = traj.completions[0].token_ids or []
    # The env part starts with the <|im_end|> the template added: a token the model never sampled.
    env_start = len(first)
    assert seq.completion_ids[env_start] == eos
    assert seq.mask[env_start] == 0
    assert seq.mask[:env_start] == [1] * env_start
    assert (
        seq.completion_ids[-len(traj.completions[1].token_ids or []) :]
        == traj.completions[1].token_ids
    )


def _completion(prompt: list[int] | None, ids: list[int] | None) -> Completion:
    return Completion(
        message=Message(role="assistant", content="x"), prompt_token_ids=prompt, token_ids=ids
    )


@pytest.mark.parametrize(
    ("completions", "needle"),
    [
        ([], "no policy turns"),
        ([_completion(None, None)], "no token ids"),
        (
            [_completion([1, 2], [3, 0]), _completion([9, 9, 3, 0, 5], [6])],
            "does not start with the prompt",
        ),
        (
            [_completion([1, 2], [3, 4]), _completion([1, 2, 7, 8, 5], [6])],
            "cannot find the end of turn",
        ),
    ],
)
def test_unrenderable_trajectories_raise_clear_errors(
    completions: list[Completion], needle: str
) -> None:
    traj = Trajectory(env_id="e", completions=completions)
    with pytest.raises(SequenceError, match=needle):
        render_trajectory(traj, stop_token_ids=[0])
