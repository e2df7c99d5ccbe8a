"""Linking a session's gateway calls into training branches (envkit.gateway.linking).

Hand-built ``CallRecord``s with small token ids (0 is the end-of-turn token, 9 the assistant
header that ends every prompt, 100+ sampled tokens) cover each way an agent's calls relate; one
test renders a real tool conversation with the tiny-random chat template and checks that the
gateway's calls link to the very sequence ``render_trajectory`` builds for the same episode run
as a ``ChatEnv``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from envkit.chat_render import RenderedSequence, render_trajectory
from envkit.gateway.linking import (
    GATEWAY_METRICS,
    Fork,
    branches_to_trajectories,
    link_calls,
)
from envkit.gateway.records import CallRecord
from envkit.metrics import merge_metrics
from envkit.types import Completion, Message, Trajectory

STOP = 0
STOPS = {STOP}
SYSTEM = Message(role="system", content="sys")
TASK = Message(role="user", content="task")


def msg(role: str, content: str) -> Message:
    return Message(role=role, content=content)  # type: ignore[arg-type]


def call(
    index: int,
    prompt: list[int] | None,
    ids: list[int] | None,
    *,
    messages: list[Message] | None = None,
    logprobs: bool = True,
    error: str | None = None,
    session: str = "s",
) -> CallRecord:
    """A call record; the i-th sampled token has log-probability ``-(index + 1) - i / 100``."""
    lps = (
        [-(index + 1) - i / 100 for i in range(len(ids))] if ids is not None and logprobs else None
    )
    return CallRecord(
        session=session,
        index=index,
        api="chat.completions",
        messages=messages or [],
        prompt_token_ids=prompt,
        token_ids=ids,
        logprobs=lps,
        message=None if error else msg("assistant", f"turn {index}"),
        error=error,
        status=502 if error else 200,
    )


def metrics(linked: Any, **nonzero: float) -> None:
    """Asserts the session's metrics: the named ones as given, every other one 0."""
    expected = {name: 0.0 for name in GATEWAY_METRICS}
    expected.update({f"gateway/{k}": v for k, v in nonzero.items()})
    assert linked.metrics() == expected


def sequence_of(*records: CallRecord) -> RenderedSequence:
    """What render_trajectory makes of these calls as one trajectory (the reference)."""
    completions = [
        Completion(
            message=r.message,
            prompt_token_ids=r.prompt_token_ids,
            token_ids=r.token_ids,
            logprobs=r.logprobs,
        )
        for r in records
        if r.message is not None
    ]
    return render_trajectory(Trajectory(env_id="e", completions=completions), stop_token_ids=STOPS)


# --- one branch -----------------------------------------------------------------------------


@pytest.mark.parametrize("logprobs", [True, False], ids=["logprobs", "no-logprobs"])
def test_a_single_call_is_one_branch_of_its_sampled_tokens(logprobs: bool) -> None:
    rec = call(0, [1, 2, 9], [101, 102, STOP], logprobs=logprobs)
    linked = link_calls([rec], stop_token_ids=STOPS)
    (branch,) = linked.branches
    assert branch.calls == [0] and branch.joins == ["start"] and branch.fork is None
    seq = branch.sequence
    assert (seq.prompt_ids, seq.completion_ids, seq.mask) == ([1, 2, 9], [101, 102, 0], [1, 1, 1])
    assert seq.logprobs == (rec.logprobs if logprobs else None)
    assert branch.messages == [rec.message]
    metrics(linked, calls=1, trainable_calls=1, branches=1)


def test_an_exact_three_call_chain_is_one_sequence_with_exact_masks_and_logprobs() -> None:
    p1, s1 = [1, 2, 9], [101, 102, STOP]
    e2, s2 = [3, 4, 9], [103, STOP]
    e3, s3 = [5, 9], [104, 105, STOP]
    recs = [
        call(0, p1, s1),
        call(1, p1 + s1 + e2, s2),
        call(2, p1 + s1 + e2 + s2 + e3, s3),
    ]
    linked = link_calls(recs, stop_token_ids=STOPS)
    (branch,) = linked.branches
    assert branch.calls == [0, 1, 2]
    assert branch.joins == ["start", "exact", "exact"]
    assert branch.drift == [0, 0, 0]
    seq = branch.sequence
    assert seq.prompt_ids == p1
    assert seq.completion_ids == s1 + e2 + s2 + e3 + s3
    assert seq.mask == [1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1]
    lp = [r.logprobs for r in recs]
    assert seq.logprobs == [*lp[0], 0.0, 0.0, 0.0, *lp[1], 0.0, 0.0, *lp[2]]
    assert (seq.turns, seq.rerendered_turns) == (3, 0)
    metrics(linked, calls=3, trainable_calls=3, branches=1)


@pytest.mark.parametrize(
    ("sampled", "rendered", "env", "drift"),
    [
        # one sampled token re-tokenized as another
        ([101, 102, 103, STOP], [101, 109, 103, STOP], [3, 9], 1),
        # one sampled token re-rendered as two (compact JSON re-serialized, say)
        ([101, 102, 103, STOP], [101, 110, 111, 103, STOP], [3, 9], 2),
        # the template drops sampled text (reasoning stripped from the last turn)
        ([105, 106, 101, STOP], [101, STOP], [3, 9], 2),
        # a turn cut by max_tokens (no stop sampled): the template's end-of-turn token is env
        ([101, 102], [101, 109, STOP], [STOP, 3, 9], 1),
    ],
    ids=["retokenized", "one-to-two", "stripped", "truncated"],
)
def test_a_rerendered_assistant_turn_stays_one_branch_and_counts_its_drift(
    sampled: list[int], rendered: list[int], env: list[int], drift: int
) -> None:
    p1 = [1, 2, 9]
    tail = [t for t in env if t != STOP]  # what follows the re-rendered turn's end
    recs = [call(0, p1, sampled), call(1, p1 + rendered + tail, [104, STOP])]
    linked = link_calls(recs, stop_token_ids=STOPS)
    (branch,) = linked.branches
    assert branch.joins == ["start", "rerendered"]
    assert branch.drift == [0, drift] and branch.drift_tokens == drift
    seq = branch.sequence
    # the sampled tokens verbatim, never the re-rendering
    assert seq.completion_ids == sampled + env + [104, STOP]
    assert seq.mask == [1] * len(sampled) + [0] * len(env) + [1, 1]
    assert seq.rerendered_turns == 1
    assert seq == sequence_of(*recs)
    metrics(linked, calls=2, trainable_calls=2, branches=1, rerendered_calls=1, drift_tokens=drift)


def test_drift_is_counted_once_although_render_trajectory_counts_every_later_turn() -> None:
    p1, s1, r1 = [1, 9], [101, 102, STOP], [101, 109, STOP]
    p2, s2 = p1 + r1 + [3, 9], [103, STOP]
    recs = [call(0, p1, s1), call(1, p2, s2), call(2, p2 + s2 + [4, 9], [104, STOP])]
    linked = link_calls(recs, stop_token_ids=STOPS)
    (branch,) = linked.branches
    assert branch.joins == ["start", "rerendered", "rerendered"]
    assert branch.drift == [0, 1, 0]
    assert branch.sequence.rerendered_turns == 2  # turn 3 reproduced turn 2 exactly
    assert branch.rerendered_calls == 1
    assert branch.sequence.completion_ids == [*s1, 3, 9, *s2, 4, 9, 104, STOP]


# --- several branches -------------------------------------------------------------------------


def _history(*extra: Message) -> list[Message]:
    return [SYSTEM, TASK, *extra]


@pytest.mark.parametrize(
    ("new_prompt", "new_messages", "shared"),
    [
        # a summary replaces the turns: [system, task, user(summary)] diverges in the first prompt
        ([1, 2, 3, 4, 8, 7, 9], _history(msg("user", "summary")), 4),
        # the tool result of turn 1 is edited: diverges in env tokens after the sampled turn
        (
            [1, 2, 3, 4, 9, 101, 102, STOP, 5, 66, 9],
            _history(msg("assistant", "turn 0"), msg("user", "edited")),
            9,
        ),
        # the last turns dropped: back to the first prompt, sampled again
        ([1, 2, 3, 4, 9], _history(), 5),
    ],
    ids=["summary", "edited-result", "dropped-turns"],
)
def test_an_agent_rewriting_its_history_starts_a_new_branch_a_rewrite_fork(
    new_prompt: list[int], new_messages: list[Message], shared: int
) -> None:
    p1, s1 = [1, 2, 3, 4, 9], [101, 102, STOP]
    p2, s2 = [*p1, *s1, 5, 6, 9], [103, STOP]
    recs = [
        call(0, p1, s1, messages=_history()),
        call(1, p2, s2, messages=_history(msg("assistant", "turn 0"), msg("user", "r"))),
        call(2, new_prompt, [104, STOP], messages=new_messages),
        # the rewritten conversation goes on: it extends the new branch
        call(3, [*new_prompt, 104, STOP, 7, 9], [105, STOP], messages=new_messages),
    ]
    linked = link_calls(recs, stop_token_ids=STOPS)
    assert [b.calls for b in linked.branches] == [[0, 1], [2, 3]]
    first, second = linked.branches
    assert second.fork == Fork(parent=0, kind="rewrite", shared_tokens=shared, drift_tokens=0)
    assert first.sequence == sequence_of(recs[0], recs[1])
    assert second.sequence == sequence_of(recs[2], recs[3])
    assert second.joins == ["start", "exact"]
    metrics(linked, calls=4, trainable_calls=4, branches=2, rewrite_forks=1)


@pytest.mark.parametrize(
    ("s1", "rerendered", "drift"),
    [
        # the first turn's text re-tokenized differently when the history is rendered again
        ([101, 102, 103, STOP], [101, 108, 103, STOP], 1),
        # a template that strips the reasoning of earlier turns (Qwen3-style)
        ([120, 121, 122, 101, STOP], [101, STOP], 3),
    ],
    ids=["retokenized", "reasoning-stripped"],
)
def test_history_rerendered_inside_sampled_tokens_is_a_rerender_fork(
    s1: list[int], rerendered: list[int], drift: int
) -> None:
    p1 = [1, 2, 9]
    p2, s2 = [*p1, *s1, 3, 9], [104, STOP]
    # turn 3's prompt renders turn 1 differently from turn 2's prompt: no sequence holds both
    p3 = [*p1, *rerendered, 3, 9, *s2, 4, 9]
    recs = [call(0, p1, s1), call(1, p2, s2), call(2, p3, [105, STOP])]
    linked = link_calls(recs, stop_token_ids=STOPS)
    assert [b.calls for b in linked.branches] == [[0, 1], [2]]
    fork = linked.branches[1].fork
    assert fork == Fork(
        parent=0,
        kind="rerender",
        shared_tokens=len(p1) + (1 if drift == 1 else 0),
        drift_tokens=drift,
    )
    assert linked.branches[1].drift == [drift]
    metrics(linked, calls=3, trainable_calls=3, branches=2, rerender_forks=1, drift_tokens=drift)


def test_a_rerendering_of_a_rerendered_turn_is_a_rerender_fork_too() -> None:
    """Turn 1 was re-rendered once (joined); a third rendering diverges inside that span."""
    p1, s1 = [1, 9], [101, 102, STOP]
    p2, s2 = [*p1, 101, 109, STOP, 3, 9], [103, STOP]
    p3 = [*p1, 101, 107, STOP, 3, 9, *s2, 4, 9]
    linked = link_calls(
        [call(0, p1, s1), call(1, p2, s2), call(2, p3, [104, STOP])], stop_token_ids=STOPS
    )
    assert [b.calls for b in linked.branches] == [[0, 1], [2]]
    assert linked.branches[1].fork == Fork(0, "rerender", 3, 1)
    assert linked.metrics()["gateway/drift_tokens"] == 2.0  # 1 at the join, 1 at the fork


@pytest.mark.parametrize("with_messages", [True, False], ids=["messages", "tokens-only"])
def test_interleaved_sub_conversations_link_to_their_own_branches(with_messages: bool) -> None:
    pa, pb = [1, 2, 10, 9], [1, 2, 20, 9]  # same system prompt, different tasks
    ma = [SYSTEM, msg("user", "a")] if with_messages else None
    mb = [SYSTEM, msg("user", "b")] if with_messages else None
    sa0, sb0, sa1, sb1 = [101, STOP], [201, STOP], [102, STOP], [202, STOP]
    recs = [
        call(0, pa, sa0, messages=ma),
        call(1, pb, sb0, messages=mb),
        call(2, [*pa, *sa0, 11, 9], sa1, messages=ma),
        call(3, [*pb, *sb0, 21, 9], sb1, messages=mb),
        call(4, [*pa, *sa0, 11, 9, *sa1, 12, 9], [103, STOP], messages=ma),
    ]
    linked = link_calls(recs, stop_token_ids=STOPS)
    assert [b.calls for b in linked.branches] == [[0, 2, 4], [1, 3]]
    a, b = linked.branches
    assert a.joins == ["start", "exact", "exact"] and b.joins == ["start", "exact"]
    assert a.sequence == sequence_of(recs[0], recs[2], recs[4])
    assert b.sequence == sequence_of(recs[1], recs[3])
    if with_messages:  # a new conversation, not a fork
        assert b.fork is None
        metrics(linked, calls=5, trainable_calls=5, branches=2)
    else:  # nothing tells them apart but tokens: a shared prefix is a rewrite
        assert b.fork == Fork(0, "rewrite", 2)
        metrics(linked, calls=5, trainable_calls=5, branches=2, rewrite_forks=1)


def test_the_longest_matching_branch_wins_and_ties_go_to_the_latest() -> None:
    p1 = [1, 9]
    recs = [
        call(0, p1, [101, STOP]),
        call(1, p1, [102, STOP]),  # a second sample of the same prompt (a retry)
        call(2, p1, [102, STOP]),  # a third, equal to the second
        call(3, [*p1, 102, STOP, 3, 9], [103, STOP]),  # continues the second (and the third)
    ]
    linked = link_calls(recs, stop_token_ids=STOPS)
    # call 3 re-renders branch 0's turn (matching 2 tokens) or extends 1 or 2 exactly (4): the
    # latest of the two longest wins
    assert [b.calls for b in linked.branches] == [[0], [1], [2, 3]]
    assert [b.fork for b in linked.branches] == [None, Fork(0, "rewrite", 2), Fork(1, "rewrite", 2)]
    assert linked.branches[2].joins == ["start", "exact"]


def test_calls_are_taken_in_index_order() -> None:
    p1, s1 = [1, 9], [101, STOP]
    recs = [call(0, p1, s1), call(1, [*p1, *s1, 3, 9], [102, STOP]), call(2, [4, 9], [103, STOP])]
    shuffled = recs[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != recs
    assert link_calls(shuffled, stop_token_ids=STOPS) == link_calls(recs, stop_token_ids=STOPS)


# --- what is not trained on -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            call(1, None, None, error="upstream unreachable: connection refused"),
            "the call failed: upstream unreachable",
        ),
        (call(1, None, [102, STOP]), "no token ids: the upstream reported no prompt_token_ids"),
        (
            call(1, [1, 9, 101, STOP, 3, 9], None),
            "no token ids: the upstream reported no token_ids",
        ),
        (call(1, None, None), "no prompt_token_ids and no token_ids"),
        (call(1, [1, 9, 101, STOP, 3, 9], []), "the model sampled no tokens"),
        (call(1, [], [102, STOP]), "the prompt has no token ids"),
    ],
    ids=["failed", "no-prompt-ids", "no-sampled-ids", "no-ids", "empty-sample", "empty-prompt"],
)
def test_untrainable_calls_are_listed_with_their_reason(bad: CallRecord, reason: str) -> None:
    p1, s1 = [1, 9], [101, STOP]
    recs = [call(0, p1, s1), bad, call(2, [*p1, *s1, 3, 9], [103, STOP])]
    linked = link_calls(recs, stop_token_ids=STOPS)
    assert [b.calls for b in linked.branches] == [[0, 2]]  # the chain goes on around it
    ((index, why),) = linked.untrainable
    assert index == 1 and reason in why
    metrics(linked, calls=3, trainable_calls=2, untrainable_calls=1, branches=1)


def test_an_empty_session_links_to_nothing() -> None:
    linked = link_calls([], stop_token_ids=STOPS)
    assert (linked.calls, linked.branches, linked.untrainable) == (0, [], [])
    metrics(linked)
    assert branches_to_trajectories(linked, env_id="e", reward=1.0) == []


def test_a_session_of_only_failed_calls_has_no_branch() -> None:
    linked = link_calls([call(0, None, None, error="timeout")], stop_token_ids=STOPS)
    assert linked.branches == [] and linked.untrainable == [(0, "the call failed: timeout")]


@pytest.mark.parametrize(
    ("recs", "message"),
    [
        ([call(0, [1], [2], session="a"), call(1, [1], [2], session="b")], "one session at a time"),
        (
            [call(0, [1], [2]), call(1, [1], [2]), call(1, [1], [3])],
            "several records with call index [1]",
        ),
    ],
    ids=["two-sessions", "duplicate-index"],
)
def test_records_that_are_not_one_session_are_refused(recs: list[CallRecord], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        link_calls(recs, stop_token_ids=STOPS)


# --- metrics and trajectories ------------------------------------------------------------------


def test_session_metrics_merge_as_sums() -> None:
    one = link_calls([call(0, [1, 9], [101, STOP])], stop_token_ids=STOPS).metrics()
    merged = merge_metrics([one, one], GATEWAY_METRICS)
    assert merged["gateway/calls"] == 2.0 and merged["gateway/branches"] == 2.0
    assert set(one) == set(GATEWAY_METRICS)


def test_branches_become_trajectories_that_render_to_the_branch_sequences() -> None:
    p1, s1 = [1, 2, 9], [101, STOP]
    recs = [
        call(0, p1, s1, messages=_history()),
        call(
            1,
            [*p1, *s1, 3, 9],
            [102, STOP],
            messages=_history(msg("assistant", "turn 0"), msg("user", "r")),
        ),
        call(2, [1, 2, 5, 9], [103, STOP], messages=_history(msg("user", "summary"))),
    ]
    linked = link_calls(recs, stop_token_ids=STOPS)
    trajs = branches_to_trajectories(linked, env_id="agent", reward=0.5)
    assert [t.reward for t in trajs] == [0.5, 0.5]
    assert [render_trajectory(t, stop_token_ids=STOPS) for t in trajs] == [
        b.sequence for b in linked.branches
    ]
    assert trajs[0].messages == [*recs[1].messages, recs[1].message]


# --- a real chat template ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from envkit.models import load_model

    return load_model("tiny-random")[1]


CANONICAL = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
COMPACT = '<tool_call>{"name":"add","arguments":{"a":2,"b":3}}</tool_call>'


@pytest.mark.parametrize("tool_call_text", [CANONICAL, COMPACT], ids=["canonical", "compact"])
def test_gateway_calls_link_to_the_sequence_of_the_same_chatenv_episode(
    tokenizer: Any, tool_call_text: str
) -> None:
    """A two-call tool episode run as a ChatEnv and as an agent's gateway calls: same sequence.

    The ChatEnv side: ``envkit.collect`` with a policy that renders prompts as ``HFPolicy``
    does and samples scripted text. The gateway side: the records an upstream leaves for an
    agent that sends the same conversation, prompts rendered from the messages alone. Compact
    tool-call JSON is re-serialized by the chat template: a re-rendered turn with drift.
    """
    import envkit
    from envkit.chat_render import render_prompt
    from envkit.env import ChatEnv, Feedback, Task
    from envkit.policies import CallablePolicy
    from envkit.policies.toolcall_parsing import parse_tool_calls
    from envkit.toolcalls import detect_format
    from envkit.tools import ToolBox, tool
    from envkit.types import GenerationRequest

    @tool
    def add(a: int, b: int) -> int:
        """Adds two integers.

        Args:
            a: The first addend.
            b: The second addend.
        """
        return a + b

    class AddEnv(ChatEnv):
        def __init__(self) -> None:
            super().__init__(max_turns=2, toolbox=ToolBox([add]))

        def make_task(self, options: dict[str, Any] | None) -> Task:
            return Task(messages=[{"role": "user", "content": "What is 2 + 3? Use the tool."}])

        def respond(self, message: Message) -> Feedback:
            return Feedback(reward=float("5" in (message.content or "")), done=True)

    fmt = detect_format(tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    texts = iter([tool_call_text, "The answer is 5."])

    def sample(messages: list[dict[str, Any]], tools: Any) -> Completion:
        text = next(texts)
        request = GenerationRequest(messages=[Message.coerce(m) for m in messages], tools=tools)
        ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], eos]
        parsed = parse_tool_calls(text)
        return Completion(
            message=Message(
                role="assistant",
                content=(parsed.content or None) if parsed.tool_calls else text,
                tool_calls=parsed.tool_calls or None,
            ),
            prompt_token_ids=render_prompt(tokenizer, fmt, request),
            token_ids=ids,
            logprobs=[-0.5 - 0.01 * i for i in range(len(ids))],
            finish_reason="stop",
        )

    (group,) = envkit.collect(AddEnv, CallablePolicy(sample), seeds=[0], progress=False)
    traj = group[0]
    assert traj.outcome == "ok" and traj.reward == 1.0, traj.error
    assert [m.role for m in traj.messages] == ["user", "assistant", "tool", "assistant"]

    records = []
    assistant_at = [i for i, m in enumerate(traj.messages) if m.role == "assistant"]
    for k, (at, c) in enumerate(zip(assistant_at, traj.completions, strict=True)):
        sent = traj.messages[:at]  # what the agent sends for its k-th call
        prompt = render_prompt(tokenizer, fmt, GenerationRequest(messages=sent, tools=traj.tools))
        records.append(
            CallRecord(
                session="s",
                index=k,
                api="chat.completions",
                messages=sent,
                tools=traj.tools,
                prompt_token_ids=prompt,
                token_ids=c.token_ids,
                logprobs=c.logprobs,
                message=traj.messages[at],
                finish_reason="stop",
            )
        )
    linked = link_calls(records, stop_token_ids={eos})
    expected = render_trajectory(traj, stop_token_ids={eos})
    (branch,) = linked.branches
    assert branch.sequence == expected
    assert branch.calls == [0, 1]
    if tool_call_text == CANONICAL:
        assert branch.joins == ["start", "exact"] and branch.drift == [0, 0]
    else:
        assert branch.joins == ["start", "rerendered"] and branch.drift[1] > 0
        assert expected.rerendered_turns == 1
    # the sampled tool call stays verbatim in the sequence
    first = traj.completions[0].token_ids or []
    assert branch.sequence.completion_ids[: len(first)] == first
