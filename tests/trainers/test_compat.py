"""``envkit.trainers._compat``: TRL/transformers internals, checked once with a clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trl

from envkit.trainers import _compat


def test_the_installed_stack_passes_the_check() -> None:
    _compat.check.cache_clear()
    _compat.check()


def test_checkpointing_uses_the_name_the_installed_transformers_knows(tmp_path: Path) -> None:
    # In a subprocess: building TrainingArguments sets process-wide state (accelerate's
    # environment) that would leak into the other tests of this session.
    code = (
        "import trl\n"
        "from envkit.trainers import _compat\n"
        "kwargs = _compat.checkpointing_args(True)\n"
        f"args = trl.GRPOConfig(output_dir={str(tmp_path)!r}, use_cpu=True, report_to='none', "
        "**kwargs)\n"
        "(name,) = kwargs\n"
        "assert getattr(args, name) is True, name\n"
        "print('ok', name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "ok"


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
