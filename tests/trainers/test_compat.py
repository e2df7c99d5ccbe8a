"""``envkit.trainers._compat``: TRL/transformers internals, checked once with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import trl

from envkit.trainers import _compat


def test_the_installed_stack_passes_the_check() -> None:
    _compat.check.cache_clear()
    _compat.check()


def test_checkpointing_uses_the_name_the_installed_transformers_knows(tmp_path: Path) -> None:
    kwargs = _compat.checkpointing_args(True)
    (name,) = kwargs
    args = trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **kwargs)
    assert getattr(args, name) is True
    assert _compat.checkpointing_kwargs(args) is None or isinstance(
        _compat.checkpointing_kwargs(args), dict
    )


def test_a_missing_internal_is_named_with_the_tested_versions(monkeypatch) -> None:
    monkeypatch.delattr(trl.GRPOTrainer, "_generate_and_score_completions")
    _compat.check.cache_clear()
    try:
        with pytest.raises(_compat.IncompatibleVersionError) as info:
            _compat.check()
    finally:
        _compat.check.cache_clear()
    message = str(info.value)
    assert "trl.GRPOTrainer._generate_and_score_completions" in message
    assert "Tested:" in message and "trl 1.16.0" in message
    assert f"trl {trl.__version__}" in message  # the installed version


def test_a_trainer_without_the_attributes_trl_sets_is_rejected() -> None:
    class Bare:
        beta = 0.0

    with pytest.raises(_compat.IncompatibleVersionError, match=r"trl\.GRPOTrainer\._metrics"):
        _compat.check_backend(Bare())


def test_remove_quantization_leaves_a_plain_model_alone() -> None:
    from envkit.models import load_model

    model, _ = load_model("tiny-random")
    before = model.config.to_dict()
    _compat.remove_quantization(model)
    assert model.config.to_dict() == before


def test_installed_versions_lists_the_training_stack() -> None:
    versions = _compat.installed_versions()
    assert set(versions) == set(_compat.TESTED)
    assert versions["trl"] == trl.__version__
