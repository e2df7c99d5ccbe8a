"""Chat rendering: conversations into prompt token ids, trajectories into training sequences.

One renderer for everything that turns messages into tokens, below the policies and the trainer
in envkit's layers (docs/architecture.md): ``HFPolicy``, ``ServerPolicy`` and ``envkit serve``
render prompts with ``render_prompt``; the GRPO trainer and ``envkit check-template`` build the
training sequence with ``render_trajectory``, so the template check validates exactly what
training does. (``envkit.trainers.sequences`` and ``envkit.policies.hf.render_prompt`` re-export
these names.)

``render_trajectory``: the trained sequence is the conversation as the model saw it: the first
prompt's token ids, then, turn by turn, the tokens the environment or the tools added (masked out
of the loss) and the tokens the policy sampled (in the loss). The sampled tokens are taken
verbatim from each ``Completion.token_ids``, never re-tokenized from the assistant's text, so the
log-probabilities in the loss are those of exactly the sampled tokens.

For turn ``k > 1`` the env part is read off the prompt the policy was actually given for that turn
(``Completion.prompt_token_ids``):

* exact: that prompt starts with the sequence so far token for token (the chat template re-renders
  the earlier turns identically); the env tokens are the rest of it;
* re-rendered: the template rendered the previous assistant turn differently (a tool call's JSON
  re-serialized, a sampled non-canonical tokenization, a turn cut by ``max_new_tokens``); the env
  tokens are what follows the previous turn's end-of-turn token in that prompt. The sampled
  tokens stay exact; the turn is counted in ``RenderedSequence.rerendered_turns``.

Example:
    >>> from envkit.types import Completion, Message, Trajectory
    >>> a = Message(role="assistant", content="x")
    >>> traj = Trajectory(env_id="e", completions=[
    ...     Completion(message=a, prompt_token_ids=[1, 2], token_ids=[7, 0], logprobs=[-.5, -.1]),
    ...     Completion(message=a, prompt_token_ids=[1, 2, 7, 0, 3, 4], token_ids=[8, 0],
    ...                logprobs=[-.2, -.3])])
    >>> seq = render_trajectory(traj, stop_token_ids={0})
    >>> seq.prompt_ids, seq.completion_ids, seq.mask
    ([1, 2], [7, 0, 3, 4, 8, 0], [1, 1, 0, 0, 1, 1])
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from envkit.types import Completion, GenerationRequest, Message, Trajectory

__all__ = [
    "RenderedSequence",
    "SequenceError",
    "env_after_rerender",
    "render_prompt",
    "render_trajectory",
    "template_message",
]


def template_message(message: Message) -> dict[str, Any]:
    """A message as chat templates expect it: text content, tool-call arguments as dicts."""
    out = message.to_dict()
    if out.get("content") is None:
        out["content"] = ""
    for call in out.get("tool_calls") or []:
        fn = call["function"]
        try:
            args = json.loads(fn["arguments"])
        except ValueError:
            continue  # malformed JSON the model wrote: render it verbatim
        if isinstance(args, dict):
            fn["arguments"] = args
    return out


def render_prompt(tokenizer: Any, tool_format: Any, request: GenerationRequest) -> list[int]:
    """The prompt token ids of a request: its chat-template rendering with the generation prompt.

    Shared by ``HFPolicy``, ``ServerPolicy`` (which sends these ids to a server) and
    ``envkit check-template``, so all of them see the tokens training sees. ``tool_format`` is
    ``envkit.toolcalls.detect_format(tokenizer)`` (or the format being checked).
    """
    messages = tool_format.prepare_messages([template_message(m) for m in request.messages])
    text = tokenizer.apply_chat_template(
        messages, tools=request.tools or None, add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class SequenceError(ValueError):
    """A trajectory cannot be turned into a training sequence (the message says why)."""


@dataclass
class RenderedSequence:
    """One trajectory as token ids: ``prompt_ids + completion_ids``, ``mask`` over the latter.

    Attributes:
        prompt_ids: The first prompt, exactly as the policy saw it.
        completion_ids: Everything after it: sampled turns and the env/tool tokens between them.
        mask: Per ``completion_ids`` token: 1 for a token the policy sampled, 0 for env/tool text.
        logprobs: Sampling log-probabilities of the policy tokens (0.0 at env tokens), or
            ``None`` when the policy did not report them.
        rerendered_turns: Turns whose env part had to be located by end-of-turn token because the
            chat template re-rendered history differently from the sampled tokens.
        turns: Number of assistant turns.
    """

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = field(default_factory=list)
    rerendered_turns: int = 0
    turns: int = 0

    @property
    def policy_tokens(self) -> int:
        """How many tokens carry gradient."""
        return sum(self.mask)

    def _extend(self, ids: list[int], is_policy: bool, logprobs: list[float] | None) -> None:
        self.completion_ids.extend(ids)
        self.mask.extend([1 if is_policy else 0] * len(ids))
        if self.logprobs is not None:
            if logprobs is None:
                self.logprobs = None
            else:
                self.logprobs.extend(logprobs)


def _token_data(c: Completion, k: int) -> tuple[list[int], list[int]]:
    if c.prompt_token_ids is None or c.token_ids is None:
        raise SequenceError(
            f"turn {k + 1} has no token ids: training needs a local policy that reports "
            "prompt_token_ids and token_ids (envkit.policies.HFPolicy), not an API policy"
        )
    return list(c.prompt_token_ids), list(c.token_ids)


def render_trajectory(traj: Trajectory, *, stop_token_ids: Collection[int]) -> RenderedSequence:
    """Builds the training sequence and loss mask of one trajectory (see the module doc).

    Args:
        traj: A trajectory whose ``completions`` carry token ids (one per assistant turn).
        stop_token_ids: The end-of-turn token ids of the model (its EOS ids).

    Raises:
        SequenceError: the trajectory has no completions, a completion has no token ids, or a
            later prompt does not continue the earlier ones.
    """
    if not traj.completions:
        raise SequenceError("the trajectory has no policy turns (the episode failed before one)")
    stops = set(stop_token_ids)
    first_prompt, first_ids = _token_data(traj.completions[0], 0)
    seq = RenderedSequence(prompt_ids=first_prompt)
    prev_prompt, prev_ids = first_prompt, first_ids
    for k, c in enumerate(traj.completions):
        prompt, ids = _token_data(c, k)
        if k > 0:
            so_far = seq.prompt_ids + seq.completion_ids
            if prompt[: len(so_far)] == so_far:
                env = prompt[len(so_far) :]
            else:
                env = env_after_rerender(prompt, prev_prompt, prev_ids, stops, k)
                seq.rerendered_turns += 1
            seq._extend(env, False, [0.0] * len(env))
        lps = list(c.logprobs) if c.logprobs is not None else None
        seq._extend(ids, True, lps)
        seq.turns += 1
        prev_prompt, prev_ids = prompt, ids
    return seq


def env_after_rerender(
    prompt: list[int], prev_prompt: list[int], prev_ids: list[int], stops: set[int], k: int
) -> list[int]:
    """The env tokens between turn ``k`` and turn ``k + 1`` when turn ``k`` was re-rendered.

    ``prompt`` (turn ``k + 1``'s prompt) must start with ``prev_prompt`` (turn ``k``'s); the
    template's own rendering of turn ``k`` follows, up to its end-of-turn token (one of
    ``stops``). What comes after it is the env's part. The sampled turn's end-of-turn token is
    kept (masked) when the sampled ids ``prev_ids`` lack one.

    Raises:
        SequenceError: the prompts do not share the prefix, or no end of turn is found.
    """
    if prompt[: len(prev_prompt)] != prev_prompt:
        raise SequenceError(
            f"the prompt of turn {k + 1} does not start with the prompt of turn {k}: the chat "
            "template rewrites earlier turns (e.g. it strips reasoning), so one sequence cannot "
            "hold the episode"
        )
    rest = prompt[len(prev_prompt) :]
    end = next((i for i, t in enumerate(rest) if t in stops), None)
    if end is None:
        raise SequenceError(
            f"cannot find the end of turn {k} in the prompt of turn {k + 1}: none of the stop "
            f"token ids {sorted(stops)} appears after it; pass the model's EOS ids"
        )
    # Keep the re-rendered end-of-turn token (masked) when the sampled turn lacks one.
    closed = bool(prev_ids) and prev_ids[-1] in stops
    return rest[end + 1 :] if closed else rest[end:]
