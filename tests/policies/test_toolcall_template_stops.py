"""``envkit check-template`` checks with the trainer's own stop tokens and renderer.

Before, check-template added each format's end-of-turn tokens to the stop set, while the trainer
and ``HFPolicy`` stop at ``envkit._tokens.stop_token_ids`` only: a GLM-4.5 template (turns end
with ``<|observation|>`` / ``<|user|>``) passed the check for a model whose generation config
names only ``<|endoftext|>``, although ``HFPolicy`` would not stop at those tokens in training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from envkit._tokens import stop_token_ids
from envkit.cli.main import app
from envkit.toolcalls.template_check import TOOLS, check_template

sys.path.insert(0, str(Path(__file__).parent / "templates"))
import families

GLM = next(f for f in families.FAMILIES if f.file == "zai-org-GLM-4.5.jinja")


class _Model:
    """What ``stop_token_ids`` reads of a model: its ``generation_config``."""

    def __init__(self, generation_config: Any) -> None:
        self.generation_config = generation_config


def _glm_dir(tmp_path: Path, eos: list[str] | None) -> tuple[Path, Any]:
    tok = families.family_tokenizer(GLM)
    path = tmp_path / "glm"
    tok.save_pretrained(path)
    if eos is not None:
        ids = [tok.convert_tokens_to_ids(t) for t in eos]
        (path / "generation_config.json").write_text(json.dumps({"eos_token_id": ids}))
    return path, tok


def test_check_template_uses_the_trainers_stop_tokens() -> None:
    """The GLM family: the format ends turns with tokens the trainer does not stop at."""
    tok = families.family_tokenizer(GLM)
    report = check_template(tok, reasoning=False)
    trainer_stops = stop_token_ids(None, tok)  # a model whose generation config names no EOS
    assert report.stop_token_ids == trainer_stops == [tok.eos_token_id]
    assert not report.ok  # the old check passed here, with a stop set of its own
    assert "'<|observation|>'" in report.errors[0] and "not a stop token" in report.errors[0]
    assert report.roundtrip_ok and report.prefix_ok  # the rest of the episode is fine


def test_cli_stops_come_from_generation_config_as_in_training(tmp_path: Path) -> None:
    from transformers import GenerationConfig

    runner = CliRunner()
    path, tok = _glm_dir(tmp_path, None)
    bad = runner.invoke(app, ["check-template", str(path), "--no-reasoning"])
    assert bad.exit_code == 1, bad.output
    assert "not a stop token" in " ".join(bad.output.split())

    path, tok = _glm_dir(tmp_path, ["<|endoftext|>", "<|user|>", "<|observation|>"])
    good = runner.invoke(app, ["check-template", str(path), "--no-reasoning"])
    assert good.exit_code == 0, good.output
    trainer_stops = stop_token_ids(_Model(GenerationConfig.from_pretrained(path)), tok)
    assert len(trainer_stops) == 3
    assert f"(the trainer's): {trainer_stops}" in " ".join(good.output.split())


def test_check_template_renders_prompts_as_hf_policy(tiny: Any) -> None:
    """The prompt of each scripted turn is the token ids ``HFPolicy.render`` gives."""
    from envkit.policies import HFPolicy
    from envkit.trainers.sequences import render_trajectory
    from envkit.types import GenerationRequest, Message

    model, tok = tiny
    policy = HFPolicy(model, tok, max_new_tokens=1)
    report = check_template(tok)
    assert report.ok
    assert report.stop_token_ids == policy.stop_token_ids
    start = [
        Message(role="system", content="You are a careful assistant. Use the tools."),
        Message(role="user", content="What is 2 + 3? And what is a café au lait?"),
    ]
    first = policy.render(GenerationRequest(messages=start, tools=TOOLS))
    assert report.turns[0].prompt_tokens == len(first)
    assert report.spans[0].kind == "prompt"
    assert report.spans[0].tokens == len(first)
    assert report.spans[0].text == tok.decode(first, skip_special_tokens=False)
    import envkit.toolcalls.template_check as template_check

    assert template_check.render_trajectory is render_trajectory  # the trainer's sequence
