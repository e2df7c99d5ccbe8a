"""Linking a session's calls into training branches by token prefix.

An agent calls the model through the gateway many times per episode; each call is a
``CallRecord`` with the prompt token ids the upstream rendered and the token ids it sampled.
``link_calls`` groups the trainable calls of one session into *branches*, each one training
sequence built by ``envkit.chat_render.render_trajectory`` (first prompt, then per turn the
env/tool tokens, masked, and the sampled tokens verbatim, in the loss). Nothing is re-tokenized.

A call, taken in ``index`` order, *joins* a branch when its prompt continues it the way
``render_trajectory`` accepts:

* exact: the prompt starts with the branch's whole sequence so far;
* re-rendered: the prompt starts with the branch's last prompt and the end of the last sampled
  turn can be found after it (the chat template rendered that turn differently from how it was
  sampled: a tool call's JSON re-serialized, a non-canonical tokenization).

Among several such branches it joins the one whose tokens it matches longest (ties: the one
extended last). Otherwise it starts a new branch: the agent rewrote its history (a summary,
dropped turns, a changed tool result), interleaves several conversations, or the chat template
re-rendered an earlier turn so differently that no sequence can hold both.

**Drift.** Re-applying a chat template to history can silently change tokens the model sampled.
For every call, ``Branch.drift`` counts the *drift tokens*: the sampled tokens of an earlier turn
that its prompt does not reproduce. With ``a`` the tokens of that model turn as sampled and ``b``
the same turn as the prompt renders it, both cut by their common prefix and then by their common
suffix, drift is the length of the longer remainder, ``max(len(a'), len(b'))``: the size of the
smallest window covering every difference (one token re-tokenized as two counts 2; a turn
rendered identically counts 0). It is measured for

* a re-rendered join: ``a`` is the previous call's sampled ids, ``b`` the span of the prompt
  after the previous prompt up to and including the located end-of-turn token (excluding it when
  the sampled turn had none, e.g. cut by ``max_tokens``);
* a *re-render fork*: a call that starts a new branch although its first token differing from
  the closest branch (the longest common prefix with that branch's latest prompt + sampled ids)
  lies inside a model turn of that branch. That is a false fork: history the agent sent back was
  re-templated or re-tokenized differently, and the two branches train on the same turns twice.
  ``a`` is that model turn, ``b`` the prompt from the turn's start through its next end-of-turn
  token.

A new branch whose first differing token lies outside the closest branch's model turns is a
*rewrite fork* (the agent changed its history on purpose) when the two calls share the
conversation's opening: their leading messages agree up to and including the first non-system
message (for records without messages: when they share any token). Otherwise it is a new
conversation (a sub-agent, an interleaved task) and no fork at all.

``LinkedSession.metrics()`` reports the counts (``GATEWAY_METRICS`` declares how a multi-process
run merges each: all are sums).

Example:
    >>> from envkit.gateway.records import CallRecord
    >>> from envkit.types import Message
    >>> def call(i, prompt, ids):
    ...     return CallRecord(session="s", index=i, api="chat.completions",
    ...                       prompt_token_ids=prompt, token_ids=ids, logprobs=[-0.5] * len(ids),
    ...                       message=Message(role="assistant", content="..."))
    >>> linked = link_calls([call(0, [1, 2], [7, 0]), call(1, [1, 2, 7, 0, 3], [8, 0]),
    ...                      call(2, [1, 5], [9, 0])], stop_token_ids={0})
    >>> [b.calls for b in linked.branches], [b.joins for b in linked.branches]
    ([[0, 1], [2]], [['start', 'exact'], ['start']])
    >>> linked.branches[0].sequence.mask
    [1, 1, 0, 1, 1]
    >>> linked.metrics()["gateway/branches"], linked.metrics()["gateway/rewrite_forks"]
    (2.0, 1.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from envkit.chat_render import (
    RenderedSequence,
    SequenceError,
    env_after_rerender,
    render_trajectory,
)
from envkit.gateway.records import CallRecord
from envkit.metrics import Reduction
from envkit.types import Completion, Message, Trajectory

__all__ = [
    "GATEWAY_METRICS",
    "Branch",
    "Fork",
    "ForkKind",
    "JoinKind",
    "LinkedSession",
    "branches_to_trajectories",
    "link_calls",
]

ForkKind = Literal["rewrite", "rerender"]
"""How a branch split off an earlier one (see the module doc)."""

JoinKind = Literal["start", "exact", "rerendered"]
"""How a call entered its branch: it started it, continued it exactly, or after re-rendering."""

GATEWAY_METRICS: dict[str, Reduction] = {
    "gateway/calls": "sum",
    "gateway/trainable_calls": "sum",
    "gateway/untrainable_calls": "sum",
    "gateway/branches": "sum",
    "gateway/rerendered_calls": "sum",
    "gateway/drift_tokens": "sum",
    "gateway/rerender_forks": "sum",
    "gateway/rewrite_forks": "sum",
}
"""The metrics of ``LinkedSession.metrics`` (counts over sessions) and how a multi-process run
merges each (``envkit.metrics.merge_metrics``)."""


@dataclass(frozen=True)
class Fork:
    """Where a branch split off an earlier branch.

    Attributes:
        parent: Index (in ``LinkedSession.branches``) of the closest earlier branch.
        kind: ``"rerender"`` (the first differing token lies inside a model turn of the parent: a
            false fork) or ``"rewrite"`` (the agent changed its history).
        shared_tokens: Length of the common prefix of the branch's first prompt with the
            parent's latest prompt + sampled ids.
        drift_tokens: For a re-render fork, the parent's sampled tokens the prompt does not
            reproduce (module doc); 0 for a rewrite.
    """

    parent: int
    kind: ForkKind
    shared_tokens: int
    drift_tokens: int = 0


@dataclass
class Branch:
    """Calls of one session that form one training sequence.

    Attributes:
        calls: The ``CallRecord.index`` of each call, in order.
        sequence: The training sequence (``render_trajectory`` of ``completions``).
        completions: One ``Completion`` per call, with its token ids and logprobs.
        joins: Per call, how it entered the branch (``"start"`` for the first).
        drift: Per call, the drift tokens its prompt showed (module doc): for a re-rendered join
            against the previous turn; for the first call of a re-render fork against the
            parent; else 0.
        fork: How the branch split off an earlier one (``None``: a new conversation).
        messages: The conversation of the last call followed by its answer.
        tools: The tools offered to the last call.
    """

    calls: list[int]
    sequence: RenderedSequence
    completions: list[Completion]
    joins: list[JoinKind]
    drift: list[int]
    fork: Fork | None = None
    messages: list[Message] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None

    @property
    def drift_tokens(self) -> int:
        """Drift tokens over the branch's calls (its fork's included)."""
        return sum(self.drift)

    @property
    def rerendered_calls(self) -> int:
        """Calls that joined the branch with a prompt re-rendering the previous turn differently.

        ``sequence.rerendered_turns`` can be larger: once a turn was re-rendered, every later
        turn goes through ``render_trajectory``'s re-rendered path even when it shows no drift.
        """
        return sum(1 for j, d in zip(self.joins, self.drift, strict=True) if j != "start" and d)


@dataclass
class LinkedSession:
    """One session's calls as training branches.

    Attributes:
        calls: How many calls the session made.
        branches: The training branches, in the order they started.
        untrainable: ``(index, reason)`` of each call that cannot be trained on.
    """

    calls: int
    branches: list[Branch] = field(default_factory=list)
    untrainable: list[tuple[int, str]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The session's linking counts, named as in ``GATEWAY_METRICS``."""
        forks = [b.fork.kind for b in self.branches if b.fork is not None]
        return {
            "gateway/calls": float(self.calls),
            "gateway/trainable_calls": float(sum(len(b.calls) for b in self.branches)),
            "gateway/untrainable_calls": float(len(self.untrainable)),
            "gateway/branches": float(len(self.branches)),
            "gateway/rerendered_calls": float(sum(b.rerendered_calls for b in self.branches)),
            "gateway/drift_tokens": float(sum(b.drift_tokens for b in self.branches)),
            "gateway/rerender_forks": float(forks.count("rerender")),
            "gateway/rewrite_forks": float(forks.count("rewrite")),
        }


@dataclass
class _Join:
    kind: JoinKind
    matched: int  # prompt tokens equal to the branch's tokens
    env: list[int]  # tokens between the previous turn and this call's sampled ids
    drift: int = 0
    turn: tuple[int, int] | None = None  # re-rendered: the previous turn's span in the prompt


@dataclass
class _Open:
    """A branch being built."""

    calls: list[int]
    completions: list[Completion]
    joins: list[JoinKind]
    drift: list[int]
    fork: Fork | None
    so_far: list[int]  # the training sequence so far: prompt_ids + completion_ids
    sampled: list[tuple[int, int]]  # spans of sampled turns in so_far
    context: list[int]  # the latest prompt + its sampled ids
    turns: list[tuple[int, int]]  # spans of model turns (sampled or re-rendered) in context
    last_prompt: list[int]
    last_ids: list[int]
    messages: list[Message]
    tools: list[dict[str, Any]] | None

    @classmethod
    def empty(cls, fork: Fork | None) -> _Open:
        return cls([], [], [], [], fork, [], [], [], [], [], [], [], None)

    def join(self, prompt: list[int], stops: set[int]) -> _Join | None:
        """How ``prompt`` continues this branch, or ``None`` if ``render_trajectory`` refuses."""
        if prompt[: len(self.so_far)] == self.so_far:
            return _Join("exact", len(self.so_far), prompt[len(self.so_far) :])
        try:
            env = env_after_rerender(
                prompt, self.last_prompt, self.last_ids, stops, len(self.completions)
            )
        except SequenceError:
            return None
        start, end = len(self.last_prompt), len(prompt) - len(env)
        rendered = prompt[start:end]
        return _Join(
            "rerendered",
            start + _common_prefix(rendered, self.last_ids),
            env,
            _drift(self.last_ids, rendered),
            (start, end),
        )

    def extend(self, index: int, c: Completion, j: _Join, record: CallRecord) -> None:
        prompt, ids = list(c.prompt_token_ids or []), list(c.token_ids or [])
        begin = len(self.so_far) + len(j.env)
        self.so_far = [*self.so_far, *j.env, *ids]
        self.sampled = [*self.sampled, (begin, begin + len(ids))]
        if j.turn is None:  # exact: the prompt is the sequence so far
            self.turns = list(self.sampled)
        else:
            self.turns = [*self.turns[:-1], j.turn, (len(prompt), len(prompt) + len(ids))]
        self.context = [*prompt, *ids]
        self.last_prompt, self.last_ids = prompt, ids
        self.calls.append(index)
        self.completions.append(c)
        self.joins.append(j.kind)
        self.drift.append(j.drift)
        self.messages = _conversation(record)
        self.tools = record.tools

    def close(self, stops: set[int]) -> Branch:
        traj = Trajectory(env_id="gateway", completions=self.completions)
        seq = render_trajectory(traj, stop_token_ids=stops)
        if seq.prompt_ids + seq.completion_ids != self.so_far:  # pragma: no cover - a bug here
            raise RuntimeError(
                f"linking calls {self.calls} disagrees with render_trajectory on their sequence"
            )
        return Branch(
            calls=self.calls,
            sequence=seq,
            completions=self.completions,
            joins=self.joins,
            drift=self.drift,
            fork=self.fork,
            messages=self.messages,
            tools=self.tools,
        )


def link_calls(records: Sequence[CallRecord], *, stop_token_ids: Collection[int]) -> LinkedSession:
    """Links one session's calls into training branches by token prefix (see the module doc).

    Args:
        records: The calls of one session (any order: they are taken by ``index``).
        stop_token_ids: The model's end-of-turn token ids (its EOS ids), as for
            ``render_trajectory``.

    Returns:
        The branches, the untrainable calls with the reason each cannot be trained on (a failed
        call, no token ids, nothing sampled), and the linking metrics.

    Raises:
        ValueError: the records come from several sessions or two share an index.
    """
    sessions = sorted({r.session for r in records})
    if len(sessions) > 1:
        raise ValueError(f"link_calls links one session at a time, got records of {sessions}")
    ordered = sorted(records, key=lambda r: r.index)
    dup = sorted(i for i, n in Counter(r.index for r in ordered).items() if n > 1)
    if dup:
        raise ValueError(f"session {sessions[0]!r} has several records with call index {dup}")
    stops = set(stop_token_ids)
    linked = LinkedSession(calls=len(ordered))
    open_: list[_Open] = []
    for record in ordered:
        reason = _untrainable(record)
        if reason is not None:
            linked.untrainable.append((record.index, reason))
            continue
        assert record.message is not None and record.prompt_token_ids is not None
        c = Completion(
            message=record.message,
            prompt_token_ids=list(record.prompt_token_ids),
            token_ids=list(record.token_ids or []),
            logprobs=list(record.logprobs) if record.logprobs is not None else None,
            finish_reason=record.finish_reason,
        )
        prompt = c.prompt_token_ids or []
        best: tuple[_Open, _Join] | None = None
        for branch in open_:
            j = branch.join(prompt, stops)
            if j is not None and (
                best is None or (j.matched, branch.calls[-1]) > (best[1].matched, best[0].calls[-1])
            ):
                best = (branch, j)
        if best is not None:
            best[0].extend(record.index, c, best[1], record)
            continue
        fork = _fork(prompt, record, open_, stops)
        fresh = _Open.empty(fork)
        fresh.extend(record.index, c, _Join("start", 0, prompt), record)
        if fork is not None:
            fresh.drift[0] = fork.drift_tokens
        open_.append(fresh)
    linked.branches = [b.close(stops) for b in open_]
    return linked


def branches_to_trajectories(
    linked: LinkedSession, *, env_id: str, reward: float | None = None
) -> list[Trajectory]:
    """One ``Trajectory`` per branch, each with the episode's reward.

    Each holds the branch's conversation (its last call's messages and answer), tools and
    completions, so ``render_trajectory`` gives back ``Branch.sequence``.

    Args:
        linked: What ``link_calls`` returned.
        env_id: The environment id to record.
        reward: The episode's reward, shared by every branch.
    """
    return [
        Trajectory(
            env_id=env_id,
            messages=b.messages,
            tools=b.tools,
            completions=b.completions,
            reward=reward,
        )
        for b in linked.branches
    ]


def _untrainable(record: CallRecord) -> str | None:
    """Why ``record`` cannot be trained on (``None``: it can)."""
    if not record.ok:
        return f"the call failed: {record.error or 'no answer message'}"
    missing = [
        name
        for name, value in (
            ("prompt_token_ids", record.prompt_token_ids),
            ("token_ids", record.token_ids),
        )
        if value is None
    ]
    if missing:
        return (
            f"no token ids: the upstream reported no {' and no '.join(missing)} (an API without "
            "token ids cannot be trained on)"
        )
    if not record.prompt_token_ids:
        return "the prompt has no token ids (empty prompt_token_ids)"
    if not record.token_ids:
        return "the model sampled no tokens (empty token_ids)"
    if record.message is not None and record.message.role != "assistant":
        return f"the answer is a {record.message.role!r} message, not an assistant turn"
    return None


def _fork(
    prompt: list[int], record: CallRecord, open_: list[_Open], stops: set[int]
) -> Fork | None:
    """How a call that starts a new branch relates to the closest open one (module doc)."""
    best: tuple[int, int, int] | None = None  # (shared tokens, last call, position in open_)
    for n, branch in enumerate(open_):
        key = (_common_prefix(prompt, branch.context), branch.calls[-1], n)
        if best is None or key > best:  # ties: the branch extended last
            best = key
    if best is None or best[0] == 0:
        return None
    shared, _, n = best
    parent = open_[n]
    if shared < len(prompt):
        turn = next(((s, e) for s, e in parent.turns if s <= shared < e), None)
        if turn is not None:
            sampled = parent.context[turn[0] : turn[1]]
            end = next((i for i in range(shared, len(prompt)) if prompt[i] in stops), None)
            if end is None:
                rendered = prompt[turn[0] :]
            else:
                rendered = prompt[turn[0] : end + 1 if sampled[-1] in stops else end]
            return Fork(n, "rerender", shared, _drift(sampled, rendered))
    same = _same_conversation(record.messages, parent.messages)
    if same is False:
        return None
    return Fork(n, "rewrite", shared)


def _same_conversation(new: list[Message], old: list[Message]) -> bool | None:
    """Whether two conversations agree up to their first non-system message (``None``: no
    messages to compare)."""
    if not new or not old:
        return None
    for a, b in zip(new, old, strict=False):
        if a != b:
            return False
        if a.role != "system":
            return True
    return False


def _conversation(record: CallRecord) -> list[Message]:
    return [*record.messages, *([record.message] if record.message is not None else [])]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


def _drift(sampled: Sequence[int], rendered: Sequence[int]) -> int:
    """Tokens in the smallest window covering every difference, on the longer side."""
    p = _common_prefix(sampled, rendered)
    limit = min(len(sampled), len(rendered)) - p
    s = 0
    while s < limit and sampled[-1 - s] == rendered[-1 - s]:
        s += 1
    return max(len(sampled), len(rendered)) - p - s
