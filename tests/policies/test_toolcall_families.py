"""Tool calls of every major family, on their real chat templates (tests/policies/templates/),
and ``envkit check-template`` on templates that keep and break the prefix property."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from envkit.cli.main import app
from envkit.toolcalls import (
    DeepSeekFormat,
    GLMFormat,
    Llama3Format,
    MistralFormat,
    Qwen3CoderFormat,
    detect_format,
    get_format,
)
from envkit.toolcalls.template_check import check_template
from envkit.types import Message, ToolCall

sys.path.insert(0, str(Path(__file__).parent / "templates"))
import families

FAMILIES = families.FAMILIES
BY_FILE = {f.file: f for f in FAMILIES}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
        },
    },
]


def _ids() -> Any:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def _calls(parallel: bool) -> list[ToolCall]:
    calls = [ToolCall.create("add", {"a": 2, "b": 3}, id="call_0")]
    if parallel:
        calls.append(ToolCall.create("lookup", {"word": "007"}, id="call_1"))
    return calls


def _as_pairs(calls: list[ToolCall]) -> list[tuple[str, Any]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in calls]


def _conversation(calls: list[ToolCall]) -> list[Message]:
    msgs = [
        Message(role="user", content="What is 2 + 3?"),
        Message(role="assistant", content="", tool_calls=calls),
    ]
    msgs += [Message(role="tool", content="5", tool_call_id=c.id) for c in calls]
    return msgs


def _template_dicts(fmt: Any, messages: list[Message]) -> list[dict[str, Any]]:
    from envkit.policies.hf import _template_message

    return fmt.prepare_messages([_template_message(m) for m in messages])


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.file)
def test_the_format_is_detected_from_the_real_template(family: Any) -> None:
    fmt = detect_format(family_tokenizer(family))
    assert fmt.name == family.format
    assert getattr(fmt, "variant", None) == family.variant


def family_tokenizer(family: Any) -> Any:
    return families.family_tokenizer(family)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.variant != "r1"], ids=lambda f: f.file)
def test_tool_calls_round_trip_through_the_real_template(family: Any) -> None:
    """An assistant turn with tool calls, rendered by the family's own template, parses back to
    the same calls, and ``render`` writes exactly the text the template writes."""
    tok = family_tokenizer(family)
    fmt = detect_format(tok)
    calls = _calls(fmt.parallel)
    messages = _template_dicts(fmt, _conversation(calls))
    prompt = tok.apply_chat_template(
        messages[:1], tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    full = tok.apply_chat_template(messages, tools=TOOLS, tokenize=False)
    common = next(
        (i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b), len(prompt)
    )
    turn = full[common:]
    end = fmt.end_of_turn(True) or tok.eos_token
    turn = turn.split(end)[0] if end in turn else turn
    parsed = fmt.parse(turn, tools=TOOLS, make_id=_ids())
    assert _as_pairs(parsed.tool_calls) == _as_pairs(calls)
    assert parsed.malformed == 0
    assert fmt.render(calls) in full


def test_deepseek_r1_round_trips_when_content_is_none_and_transformers_loses_it() -> None:
    """R1's template renders calls only for ``content: None``; rendered directly by Jinja it
    round-trips, while through ``apply_chat_template`` (transformers 5 drops ``None`` keys, so
    the content must be a string) the calls are lost: what ``envkit check-template`` reports."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    family = BY_FILE["deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"]
    fmt = DeepSeekFormat("r1")
    calls = _calls(True)
    messages = _template_dicts(fmt, _conversation(calls))
    messages[1]["content"] = None
    text = _compile_jinja_template(family.template).render(
        messages=messages, bos_token="<s>", add_generation_prompt=False
    )
    assert fmt.render(calls) in text
    assert _as_pairs(fmt.parse(text.split("<｜tool▁outputs▁begin｜>")[0]).tool_calls) == (
        _as_pairs(calls)
    )
    messages[1]["content"] = ""  # what HFPolicy passes: transformers would drop a None
    via_transformers = family_tokenizer(family).apply_chat_template(messages, tokenize=False)
    assert "<｜tool▁calls▁begin｜>" not in via_transformers


@pytest.mark.parametrize(
    ("fmt", "text", "calls", "content"),
    [
        pytest.param(
            Llama3Format(),
            '{"name": "add", "parameters": {"a": 1}}; {"name": "lookup", "parameters": {}}',
            [("add", {"a": 1}), ("lookup", {})],
            "",
            id="llama3-two-calls",
        ),
        pytest.param(
            Llama3Format(),
            '<|python_tag|>brave_search.call(query="weather")',
            [("brave_search", {"query": "weather"})],
            "",
            id="llama3-builtin",
        ),
        pytest.param(
            Llama3Format(), "The answer is {5}.", [], "The answer is {5}.", id="llama3-prose"
        ),
        pytest.param(
            MistralFormat(),
            'Sure[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}, "id": "abcdEF123"}]',
            [("add", {"a": 1})],
            "Sure",
            id="mistral-list",
        ),
        pytest.param(
            MistralFormat(),
            '[TOOL_CALLS]add[ARGS]{"a": 1}[TOOL_CALLS]lookup[CALL_ID]x1y2z3w4q[ARGS]{"word": "w"}',
            [("add", {"a": 1}), ("lookup", {"word": "w"})],
            "",
            id="mistral-args",
        ),
        pytest.param(
            Qwen3CoderFormat(),
            "Let me.\n<tool_call>\n<function=lookup>\n<parameter=word>\n007\n</parameter>\n"
            "</function>\n</tool_call>",
            [("lookup", {"word": "007"})],
            "Let me.",
            id="qwen3-coder-string-stays-text",
        ),
        pytest.param(
            GLMFormat(),
            "<think>x</think>\n<tool_call>add\n<arg_key>a</arg_key>\n<arg_value>2</arg_value>"
            "\n<arg_key>b</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
            [("add", {"a": 2, "b": 3})],
            "<think>x</think>",
            id="glm",
        ),
        pytest.param(
            DeepSeekFormat(),
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n"
            '{"a": 1}\n```<｜tool▁call▁end｜>',
            [("add", {"a": 1})],
            "",
            id="deepseek-r1-unclosed",
        ),
    ],
)
def test_parses_each_family(fmt: Any, text: str, calls: list[Any], content: str) -> None:
    parsed = fmt.parse(text, tools=TOOLS, make_id=_ids())
    assert _as_pairs(parsed.tool_calls) == calls
    assert parsed.content == content


@pytest.mark.parametrize(
    ("fmt", "text", "name", "raw"),
    [
        (Llama3Format(), '{"name": "add", "parameters": {"a": 1,}}', "add", '{"a": 1,}'),
        (MistralFormat(), '[TOOL_CALLS]add[ARGS]{"a": oops}', "add", '{"a": oops}'),
        (
            DeepSeekFormat(),
            "<｜tool▁call▁begin｜>add<｜tool▁sep｜>{bad<｜tool▁call▁end｜>",
            "add",
            "{bad",
        ),
    ],
)
def test_malformed_arguments_keep_the_raw_text(fmt: Any, text: str, name: str, raw: str) -> None:
    parsed = fmt.parse(text)
    assert parsed.malformed == 1
    assert [(c.function.name, c.function.arguments) for c in parsed.tool_calls] == [(name, raw)]


def test_mistral_ids_are_made_template_safe_and_keep_matching() -> None:
    tok = family_tokenizer(BY_FILE["mistralai-Mistral-Small-3.2-24B-Instruct-2506.jinja"])
    fmt = detect_format(tok)
    messages = _conversation(_calls(False))
    with pytest.raises(Exception, match="length 9"):
        tok.apply_chat_template([m.to_dict() for m in messages], tools=TOOLS, tokenize=False)
    text = tok.apply_chat_template(_template_dicts(fmt, messages), tools=TOOLS, tokenize=False)
    short = fmt.prepare_messages([m.to_dict() for m in messages])[2]["tool_call_id"]
    assert f"[CALL_ID]{short}[ARGS]" in text and f"[TOOL_RESULTS]{short}[TOOL_CONTENT]" in text


def test_hf_policy_renders_and_parses_with_the_templates_format(tiny: Any) -> None:
    from envkit.policies import HFPolicy
    from envkit.types import GenerationRequest

    model, _ = tiny
    tok = family_tokenizer(BY_FILE["mistralai-Mistral-Nemo-Instruct-2407.jinja"])
    policy = HFPolicy(model, tok, max_new_tokens=1)
    assert policy.tool_format.name == "mistral"
    ids = policy.render(GenerationRequest(messages=_conversation(_calls(True)), tools=TOOLS))
    assert "[TOOL_RESULTS]" in tok.decode(ids)
    parsed = policy.tool_format.parse('[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}}]')
    assert _as_pairs(parsed.tool_calls) == [("add", {"a": 1})]


def test_unknown_format_name_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"known formats: deepseek, mistral, glm, qwen3_coder, hermes, llama3"
    ):
        get_format("nope")


# --------------------------------------------------------------------------- check-template


@pytest.mark.parametrize(
    "file",
    [
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        "Qwen-Qwen3-Coder-30B-A3B-Instruct.jinja",
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "deepseek-ai-DeepSeek-V3.1.jinja",
    ],
)
def test_check_template_passes_on_templates_that_keep_the_prefix(file: str) -> None:
    report = check_template(family_tokenizer(BY_FILE[file]))
    assert report.ok, (report.errors, [t.prefix_detail for t in report.turns])
    assert [t.prefix_ok for t in report.turns] == [True, True, True, None]
    kinds = [s.kind for s in report.spans]
    assert kinds == ["prompt", "model", "env", "model", "env", "model", "env", "model"]
    model_tokens = sum(s.tokens for s in report.spans if s.in_loss)
    assert model_tokens == sum(t.sampled_tokens for t in report.turns)


def test_check_template_catches_qwen3_dropping_past_reasoning() -> None:
    """Qwen3's template drops the <think> blocks of turns before the last user message."""
    tok = family_tokenizer(BY_FILE["Qwen-Qwen3-0.6B.jinja"])
    report = check_template(tok)
    assert report.reasoning and not report.ok
    assert [t.prefix_ok for t in report.turns] == [True, False, True, None]
    assert "<think>" in report.turns[1].prefix_detail
    assert report.roundtrip_ok
    assert check_template(tok, reasoning=False).ok  # without reasoning the prefix holds


def test_check_template_reports_r1_losing_its_tool_calls() -> None:
    report = check_template(
        family_tokenizer(BY_FILE["deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"])
    )
    assert not report.ok
    assert report.turns[0].prefix_ok is False


def _save(tmp_path: Path, file: str) -> Path:
    path = tmp_path / file.removesuffix(".jinja")
    family_tokenizer(BY_FILE[file]).save_pretrained(path)
    return path


def test_cli_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(
        app, ["check-template", str(_save(tmp_path, "Qwen-Qwen2.5-7B-Instruct.jinja"))]
    )
    assert good.exit_code == 0, good.output
    assert "all checks passed" in good.output and "Loss mask" in good.output
    bad = runner.invoke(app, ["check-template", str(_save(tmp_path, "Qwen-Qwen3-0.6B.jinja"))])
    assert bad.exit_code == 1, bad.output
    assert "FAILED" in bad.output and "prefix property" in bad.output
    missing = runner.invoke(app, ["check-template", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "not a bundled model" in " ".join(missing.output.split())


def test_cli_bundled_model_and_template_override(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["check-template", "tiny-random"])
    assert result.exit_code == 0, result.output
    assert "hermes" in result.output
    override = tmp_path / "glm.jinja"
    override.write_text(BY_FILE["zai-org-GLM-4.5.jinja"].template)
    result = runner.invoke(
        app, ["check-template", "tiny-random", "--chat-template", str(override), "--no-reasoning"]
    )
    assert "glm" in result.output


def test_hf_policy_types_xml_arguments_with_the_offered_tools(tiny: Any) -> None:
    """Qwen3-Coder/GLM write values untyped: the offered schema says "42" is a string."""
    from envkit.policies import HFPolicy
    from envkit.policies.hf import IdsRequest, Sample

    class Canned(HFPolicy):
        """Its sampling backend (the public ``sample_batch`` hook) "samples" ``row``."""

        def sample_batch(self, requests: Any) -> list[Sample]:
            return [Sample(row, [0.0] * len(row)) for _ in requests]

    model, _ = tiny
    tok = family_tokenizer(BY_FILE["Qwen-Qwen3-Coder-30B-A3B-Instruct.jinja"])
    policy = Canned(model, tok, max_new_tokens=1)
    assert policy.tool_format.name == "qwen3_coder"
    text = (
        "<tool_call>\n<function=lookup>\n<parameter=word>\n42\n</parameter>\n</function>\n"
        "</tool_call>"
    )
    row = [*tok.encode(text, add_special_tokens=False), policy.stop_token_ids[0]]
    typed, plain = policy.generate_ids([IdsRequest([1], tools=TOOLS), IdsRequest([1])])
    assert _as_pairs(typed.message.tool_calls or []) == [("lookup", {"word": "42"})]
    assert plain.message.tool_calls is None  # no tools offered: the text stays text
