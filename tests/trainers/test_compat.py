"""``envkit.trainers._compat``: TRL/transformers internals, checked once with a clear error."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trl

from envkit.trainers import _compat


@pytest.fixture
def fresh_check() -> Iterator[None]:
    """``check`` is cached per process: run it afresh, and leave no patched result behind."""
    _compat.check.cache_clear()
    yield
    _compat.check.cache_clear()


def _missing_named(name: str) -> str:
    with pytest.raises(_compat.IncompatibleVersionError) as info:
        _compat.check()
    message = str(info.value)
    assert name in message, message
    return message


def test_the_installed_stack_passes_the_check_once(fresh_check: None) -> None:
    assert _compat.check() is None
    assert _compat.check.cache_info().currsize == 1
    _compat.check()
    assert _compat.check.cache_info().hits == 1  # checked once per process


@pytest.mark.parametrize("method", ["_prepare_inputs", "compute_loss"])
def test_a_method_only_transformers_trainer_defines_does_not_count(
    monkeypatch, fresh_check: None, method: str
) -> None:
    from transformers import Trainer

    assert method in vars(Trainer)  # TRL overrides it; envkit relies on TRL's version
    for cls in trl.GRPOTrainer.__mro__:
        if cls is Trainer:
            break
        if method in vars(cls):
            monkeypatch.delattr(cls, method)
    assert hasattr(trl.GRPOTrainer, method)  # inherited from transformers.Trainer
    message = _missing_named(f"trl.GRPOTrainer.{method}")
    assert "missing" in message


@pytest.mark.parametrize("method", _compat._TRAINER_METHODS)
def test_each_trainer_method_is_checked(monkeypatch, fresh_check: None, method: str) -> None:
    # from transformers.Trainer too where it has one: the check must not pass on a base method
    for cls in trl.GRPOTrainer.__mro__:
        if method in vars(cls):
            monkeypatch.delattr(cls, method)
    message = _missing_named(f"trl.GRPOTrainer.{method}")
    assert "missing" in message and "pip install" in message


@pytest.mark.parametrize(("module", "name"), _compat._HELPERS)
def test_each_helper_is_checked(monkeypatch, fresh_check: None, module: str, name: str) -> None:
    mod = importlib.import_module(module)
    home = sys.modules[getattr(mod, name).__module__]  # trl.models is lazy: also its source
    monkeypatch.delattr(home, name)
    if name in vars(mod):
        monkeypatch.delattr(mod, name)
    _missing_named(f"{module}.{name}")


@pytest.mark.parametrize("field", _compat._CONFIG_FIELDS)
def test_each_config_field_is_checked(monkeypatch, fresh_check: None, field: str) -> None:
    fields = dict(trl.GRPOConfig.__dataclass_fields__)
    del fields[field]
    monkeypatch.setattr(trl.GRPOConfig, "__dataclass_fields__", fields)
    _missing_named(f"trl.GRPOConfig.{field}")


def test_checkpointing_falls_back_to_the_old_name_and_neither_is_an_error(
    monkeypatch, fresh_check: None
) -> None:
    fields = dict(trl.GRPOConfig.__dataclass_fields__)
    assert "gradient_checkpointing" in fields
    fields.pop("activation_checkpointing", None)
    monkeypatch.setattr(trl.GRPOConfig, "__dataclass_fields__", fields)
    assert _compat.checkpointing_args(True) == {"gradient_checkpointing": True}
    assert _compat.checkpointing_args(False) == {"gradient_checkpointing": False}
    _compat.check()  # the old name alone is enough
    del fields["gradient_checkpointing"]
    _compat.check.cache_clear()
    _missing_named("trl.GRPOConfig.activation_checkpointing (or gradient_checkpointing)")


@pytest.mark.parametrize("arg", _compat._TRAINER_ARGS)
def test_each_trainer_argument_is_checked(monkeypatch, fresh_check: None, arg: str) -> None:
    real = inspect.signature(trl.GRPOTrainer.__init__)
    without = real.replace(parameters=[p for p in real.parameters.values() if p.name != arg])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("not called")

    __init__.__signature__ = without  # type: ignore[attr-defined]
    monkeypatch.setattr(trl.GRPOTrainer, "__init__", __init__)
    _missing_named(f"trl.GRPOTrainer({arg}=...)")


def test_the_importance_sampling_gate_in_the_loss_is_checked(
    monkeypatch, fresh_check: None
) -> None:
    def _compute_loss(self, model: Any, inputs: Any) -> Any:  # no gate, no ratio
        return None

    monkeypatch.setattr(trl.GRPOTrainer, "_compute_loss", _compute_loss)
    message = _missing_named("trl.GRPOTrainer._compute_loss using")
    for text in _compat._LOSS_SOURCE:
        assert repr(text) in message


def test_check_backend_names_each_missing_attribute() -> None:
    complete = types.SimpleNamespace(**dict.fromkeys(_compat._TRAINER_ATTRS, 0))
    assert _compat.check_backend(complete) is None
    for attr in _compat._TRAINER_ATTRS:
        partial = types.SimpleNamespace(**vars(complete))
        delattr(partial, attr)
        with pytest.raises(_compat.IncompatibleVersionError) as info:
            _compat.check_backend(partial)
        assert f"trl.GRPOTrainer.{attr}" in str(info.value)
        others = [a for a in _compat._TRAINER_ATTRS if a != attr]
        assert not [a for a in others if f"trl.GRPOTrainer.{a}," in str(info.value)]


def test_vllm_engine_is_found_or_the_error_says_where_it_looked() -> None:
    llm = object()
    trainer = types.SimpleNamespace(vllm_generation=types.SimpleNamespace(llm=llm))
    assert _compat.vllm_engine(trainer) is llm
    with pytest.raises(_compat.IncompatibleVersionError, match=r"vllm_generation\.llm"):
        _compat.vllm_engine(types.SimpleNamespace())


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
