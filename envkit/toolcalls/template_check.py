"""Does a chat template keep a multi-turn tool episode trainable? (``envkit check-template``)

``check_template(tokenizer)`` plays a scripted tool episode (two user messages, parallel calls
where the family allows them, tool results, text answers) through the tokenizer's chat template
exactly as ``HFPolicy`` and the GRPO trainer do, with their code: prompts are rendered by
``envkit.chat_render.render_prompt`` and the stop tokens are ``envkit._tokens``' (the ids the
trainer and ``HFPolicy`` use; ``envkit check-template`` adds the model's
``generation_config.json`` ones, as loading the model does):

1. each assistant turn is *sampled* as the model would write it: its format's ``render_turn``
   (with ``<think>`` reasoning when the template knows it), tokenized, plus its end-of-turn token;
2. the sampled text is parsed back with the detected format into ``content`` and ``tool_calls``
   (the round-trip check: the same calls must come back) and appended to the conversation;
   when the turn's end-of-turn token is not a stop token, ``HFPolicy`` would not stop there and
   the trainer could not find the turn's end: that is an error;
3. the next prompt is rendered; the **prefix check** asks whether it starts with the previous
   prompt plus the sampled tokens, token for token. When it does not, the template re-renders
   history differently from what the model produced (Qwen3 drops past ``<think>`` blocks), and
   the trainer's single sequence is not what the model saw;
4. ``envkit.chat_render.render_trajectory`` (the trainer's) builds the training sequence and
   its loss mask; ``TemplateReport.spans`` lists which tokens are the model's (in the loss) and
   which the prompt's or the environment's (masked).

Example:
    >>> from envkit.models import load_model
    >>> from envkit.toolcalls.template_check import check_template
    >>> report = check_template(load_model("tiny-random")[1])
    >>> report.format.name, report.ok, [t.prefix_ok for t in report.turns]
    ('hermes', True, [True, True, True, None])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from envkit._tokens import stop_token_ids_for
from envkit.chat_render import SequenceError, render_prompt, render_trajectory
from envkit.toolcalls.base import ToolCallFormat, arguments_dict
from envkit.toolcalls.detect import chat_template_text, matches_template
from envkit.toolcalls.hermes import HermesFormat
from envkit.types import Completion, GenerationRequest, Message, ToolCall, Trajectory

__all__ = [
    "TOOLS",
    "MaskSpan",
    "TemplateReport",
    "TurnCheck",
    "check_template",
    "default_stop_ids",
]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up in the dictionary.",
            "parameters": {
                "type": "object",
                "properties": {"word": {"type": "string"}},
                "required": ["word"],
            },
        },
    },
]
"""The tools offered in the scripted episode."""


@dataclass
class _Step:
    """One scripted assistant turn and what follows it."""

    content: str
    calls: list[tuple[str, dict[str, Any]]]
    results: list[str] = field(default_factory=list)
    then_user: str | None = None


def _script(parallel: bool) -> tuple[list[dict[str, Any]], list[_Step]]:
    first_calls: list[tuple[str, dict[str, Any]]] = [("add", {"a": 2, "b": 3})]
    first_results = ["5"]
    if parallel:
        first_calls.append(("lookup", {"word": "café au lait"}))
        first_results.append("coffee with hot milk")
    start = [
        {"role": "system", "content": "You are a careful assistant. Use the tools."},
        {"role": "user", "content": "What is 2 + 3? And what is a café au lait?"},
    ]
    steps = [
        _Step("I'll use the tools.", first_calls, first_results),
        _Step("2 + 3 = 5.", [], then_user="Now add 10 and 7."),
        _Step("", [("add", {"a": 10, "b": 7})], ["17"]),
        _Step("The sum is 17.", []),
    ]
    return start, steps


@dataclass
class TurnCheck:
    """The checks of one assistant turn."""

    turn: int
    prompt_tokens: int
    sampled_tokens: int
    sampled_text: str
    expected_calls: list[tuple[str, dict[str, Any]]]
    parsed_calls: list[tuple[str, Any]]
    prefix_ok: bool | None = None
    """Whether the next prompt starts with this prompt + the sampled tokens (``None``: last)."""
    prefix_detail: str = ""

    @property
    def roundtrip_ok(self) -> bool:
        """Whether parsing the sampled text gave back exactly the scripted calls."""
        return self.parsed_calls == self.expected_calls


@dataclass
class MaskSpan:
    """A run of tokens of the training sequence with one role."""

    kind: Literal["prompt", "model", "env"]
    tokens: int
    text: str

    @property
    def in_loss(self) -> bool:
        return self.kind == "model"


@dataclass
class TemplateReport:
    """What ``check_template`` found (see the module doc)."""

    format: ToolCallFormat
    detected: bool
    """``False``: no family matched the template and the Hermes default was used."""
    reasoning: bool
    turns: list[TurnCheck] = field(default_factory=list)
    spans: list[MaskSpan] = field(default_factory=list)
    rerendered_turns: int = 0
    stop_token_ids: list[int] = field(default_factory=list)
    """The stop ids checked with (the trainer's and ``HFPolicy``'s, ``envkit._tokens``)."""
    errors: list[str] = field(default_factory=list)
    """Template or sequence errors that stopped a check (empty when all ran)."""

    @property
    def prefix_ok(self) -> bool:
        return all(t.prefix_ok is not False for t in self.turns)

    @property
    def roundtrip_ok(self) -> bool:
        return all(t.roundtrip_ok for t in self.turns)

    @property
    def ok(self) -> bool:
        return not self.errors and self.prefix_ok and self.roundtrip_ok and bool(self.turns)


def check_template(
    tokenizer: Any,
    *,
    tool_format: ToolCallFormat | None = None,
    reasoning: bool | None = None,
    stop_token_ids: Sequence[int] | None = None,
    on_turn: Callable[[int, int], None] | None = None,
) -> TemplateReport:
    """Plays the scripted tool episode through ``tokenizer``'s chat template (module doc).

    Args:
        tokenizer: A transformers tokenizer with ``chat_template``.
        tool_format: The format to check (default: detected from the template).
        reasoning: Write ``<think>`` reasoning in the sampled turns (default: when the template
            mentions ``</think>``).
        stop_token_ids: The model's end-of-turn ids, as training uses them (default:
            ``envkit._tokens.stop_token_ids_for(tokenizer, None)``, what the trainer uses for a
            model whose ``generation_config`` names no EOS).
        on_turn: Called as ``on_turn(done, total)`` after each assistant turn (progress bars).

    Raises:
        ValueError: the tokenizer has no chat template.
    """
    template = chat_template_text(tokenizer)
    if not template:
        raise ValueError(
            "the tokenizer has no chat template; set tokenizer.chat_template (or pass a model "
            "whose tokenizer_config.json / chat_template.jinja has one)"
        )
    matched = matches_template(template)
    fmt = tool_format or matched or HermesFormat()
    if reasoning is None:
        reasoning = "</think>" in template
    report = TemplateReport(format=fmt, detected=matched is not None, reasoning=reasoning)
    start, steps = _script(fmt.parallel)
    stops = list(stop_token_ids) if stop_token_ids else default_stop_ids(tokenizer)
    report.stop_token_ids = stops
    history = [Message.model_validate(m) for m in start]
    completions: list[Completion] = []
    counter = iter(range(1000))
    for k, step in enumerate(steps):
        try:
            prompt = _render(tokenizer, fmt, history)
        except Exception as e:  # a template's raise_exception, a missing key...
            report.errors.append(f"turn {k + 1}: the template failed to render: {e}")
            break
        if report.turns:
            _compare(report.turns[-1], prompt, completions[-1], tokenizer)
        calls = [ToolCall.create(n, a, id=f"call_{next(counter)}") for n, a in step.calls]
        content = step.content if fmt.content_with_calls or not calls else ""
        text = fmt.render_turn(calls, content, _reasoning(k) if reasoning else None)
        sampled = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        end = _end_ids(tokenizer, fmt, bool(calls))
        sampled += end
        if end and end[-1] not in stops:
            report.errors.append(_not_a_stop(k, tokenizer, end[-1], stops))
        decoded = tokenizer.decode(sampled[: len(sampled) - len(end)], skip_special_tokens=False)
        parsed = fmt.parse(decoded, tools=TOOLS)
        message = Message(
            role="assistant",
            content=parsed.content if parsed.content or not parsed.tool_calls else None,
            tool_calls=parsed.tool_calls or None,
        )
        report.turns.append(
            TurnCheck(
                turn=k + 1,
                prompt_tokens=len(prompt),
                sampled_tokens=len(sampled),
                sampled_text=decoded,
                expected_calls=[(n, a) for n, a in step.calls],
                parsed_calls=[(c.function.name, _args(c)) for c in parsed.tool_calls],
            )
        )
        completions.append(Completion(message=message, prompt_token_ids=prompt, token_ids=sampled))
        history.append(message)
        for call, result in zip(parsed.tool_calls, step.results, strict=False):
            history.append(
                Message(role="tool", content=result, tool_call_id=call.id, name=call.function.name)
            )
        if step.then_user:
            history.append(Message(role="user", content=step.then_user))
        if on_turn is not None:
            on_turn(k + 1, len(steps))
    _mask(report, completions, stops, tokenizer)
    return report


def _reasoning(k: int) -> str:
    return f"Step {k + 1}: decide what to do next."


def _args(call: ToolCall) -> Any:
    parsed = arguments_dict(call)
    return parsed if parsed is not None else call.function.arguments


def _render(tokenizer: Any, fmt: ToolCallFormat, history: list[Message]) -> list[int]:
    """The prompt token ids of ``history``: ``render_prompt``, as ``HFPolicy.render`` does."""
    return render_prompt(tokenizer, fmt, GenerationRequest(messages=history, tools=TOOLS))


def _single_id(tokenizer: Any, token: str | None) -> int | None:
    if token is None:
        return None
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def _end_ids(tokenizer: Any, fmt: ToolCallFormat, has_calls: bool) -> list[int]:
    """The end-of-turn token(s) the model writes after such a turn."""
    marker = fmt.end_of_turn(has_calls)
    single = _single_id(tokenizer, marker)
    if single is not None:
        return [single]
    if marker is not None and marker in tokenizer.get_vocab():
        return [tokenizer.convert_tokens_to_ids(marker)]
    eos = getattr(tokenizer, "eos_token_id", None)
    return [eos] if isinstance(eos, int) else []


def default_stop_ids(tokenizer: Any, fmt: ToolCallFormat | None = None) -> list[int]:
    """The stop ids training uses with this tokenizer when the model's ``generation_config``
    names no EOS: ``envkit._tokens.stop_token_ids_for(tokenizer, None)``.

    ``fmt`` is ignored (kept for older callers): the format's end-of-turn tokens are *not*
    added, because the trainer does not add them either.
    """
    del fmt
    return stop_token_ids_for(tokenizer, None)


def _not_a_stop(k: int, tokenizer: Any, token_id: int, stops: list[int]) -> str:
    names = [tokenizer.convert_ids_to_tokens(i) for i in stops]
    return (
        f"turn {k + 1} ends with {tokenizer.convert_ids_to_tokens(token_id)!r} (id {token_id}), "
        f"which is not a stop token of training ({', '.join(map(repr, names)) or 'none'}): "
        "HFPolicy would not stop there and the trainer could not find the end of the turn; "
        "list it in the model's generation_config.json eos_token_id (or pass stop_token_ids)"
    )


def _compare(turn: TurnCheck, prompt: list[int], prev: Completion, tokenizer: Any) -> None:
    expected = list(prev.prompt_token_ids or []) + list(prev.token_ids or [])
    got = prompt[: len(expected)]
    if got == expected:
        turn.prefix_ok = True
        return
    turn.prefix_ok = False
    at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
    if at is None:
        turn.prefix_detail = (
            f"the next prompt has {len(prompt)} tokens, shorter than the {len(expected)} the "
            "model saw and wrote"
        )
        return
    start = max(0, at - 8)
    model = tokenizer.decode(expected[start : at + 24], skip_special_tokens=False)
    rendered = tokenizer.decode(got[start : at + 24], skip_special_tokens=False)
    where = "in the prompt" if at < len(prev.prompt_token_ids or []) else "in the sampled turn"
    turn.prefix_detail = (
        f"token {at} ({where}) differs: the model saw/wrote {json.dumps(model)}, the next "
        f"prompt renders {json.dumps(rendered)}"
    )


def _mask(
    report: TemplateReport, completions: list[Completion], stops: list[int], tokenizer: Any
) -> None:
    if not completions:
        return
    traj = Trajectory(env_id="envkit/check-template", completions=completions)
    try:
        seq = render_trajectory(traj, stop_token_ids=stops)
    except SequenceError as e:
        report.errors.append(f"the trainer cannot build one training sequence: {e}")
        return
    report.rerendered_turns = seq.rerendered_turns
    text = tokenizer.decode(seq.prompt_ids, skip_special_tokens=False)
    report.spans.append(MaskSpan("prompt", len(seq.prompt_ids), text))
    run: list[int] = []
    kind = None
    for token, bit in zip(seq.completion_ids, seq.mask, strict=True):
        this = "model" if bit else "env"
        if kind is not None and this != kind:
            report.spans.append(_span(kind, run, tokenizer))
            run = []
        kind = this
        run.append(token)
    if run and kind is not None:
        report.spans.append(_span(kind, run, tokenizer))


def _span(kind: str, ids: list[int], tokenizer: Any) -> MaskSpan:
    text = tokenizer.decode(ids, skip_special_tokens=False)
    return MaskSpan("model" if kind == "model" else "env", len(ids), text)
