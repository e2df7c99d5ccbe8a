"""``parse_model_spec``: the one reader of model strings, and every loader going through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envkit.model_spec import BUNDLED_MODEL_NAMES, parse_model_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "api", "kind", "name"),
    [
        ("tiny-random", True, "bundled", "tiny-random"),
        ("hf:smollm2-135m", True, "bundled", "smollm2-135m"),
        ("hf:Qwen/Qwen2.5-0.5B-Instruct", True, "hub", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("Qwen/Qwen2.5-0.5B-Instruct", False, "hub", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("Qwen/Qwen2.5-0.5B-Instruct", True, "litellm", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("openai/served", True, "litellm", "openai/served"),
        ("gpt-4o-mini", True, "litellm", "gpt-4o-mini"),
        ("hf:/no/such/dir", True, "dir", "/no/such/dir"),
        ("smollm3", False, "dir", "smollm3"),  # a typo: the loader says what is accepted
    ],
)
def test_kinds(text: str, api: bool, kind: str, name: str) -> None:
    spec = parse_model_spec(text, api=api)
    assert (spec.kind, spec.name, spec.text) == (kind, name, text)
    assert spec.local is (kind != "litellm")


def test_an_existing_directory_wins_and_tilde_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for text in ("org/name", "hf:org/name", "~/org/name", "hf:~/org/name"):
        for api in (True, False):
            spec = parse_model_spec(text, api=api)
            assert spec.kind == "dir" and spec.exists, (text, api)
    assert parse_model_spec("~/org/name").name == str(tmp_path / "org" / "name")
    missing = parse_model_spec("hf:org/missing")
    assert missing.kind == "hub" and missing.exists  # a hub id, not a missing directory


@pytest.mark.parametrize("text", ["", "  ", "hf:", "hf: "])
def test_empty_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="model"):
        parse_model_spec(text)


def test_bundled_names_match_the_models_module() -> None:
    from envkit.models import BUNDLED_MODELS

    assert tuple(BUNDLED_MODELS) == BUNDLED_MODEL_NAMES


def test_every_loader_reads_hf_prefixed_names_alike(tmp_path: Path) -> None:
    """Bundled names and directories, with and without ``hf:``, load the same everywhere."""
    from envkit.cli.check_template import load_tokenizer
    from envkit.models import load_model
    from envkit.policies import load_policy
    from envkit.policies.server import _load_tokenizer

    model, tok = load_model("tiny-random")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    for text in ("tiny-random", "hf:tiny-random", str(tmp_path), f"hf:{tmp_path}"):
        assert load_model(text)[1].encode("héllo") == tok.encode("héllo"), text
        assert load_tokenizer(text)[0].encode("héllo") == tok.encode("héllo"), text
        assert _load_tokenizer(text).encode("héllo") == tok.encode("héllo"), text
        assert type(load_policy(text, max_tokens=2, device="cpu")).__name__ == "HFPolicy"
    with pytest.raises(ValueError, match="unknown model 'hf:/no/such/dir'"):
        load_model("hf:/no/such/dir")
    with pytest.raises(ValueError, match="not a bundled model"):
        load_tokenizer("hf:/no/such/dir")


def test_no_other_module_parses_the_hf_prefix() -> None:
    pattern = re.compile(r"""(startswith|removeprefix)\(\s*["']hf:""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("envkit", "trainers", "rewards", "environments", "sandbox")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "model_spec.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
