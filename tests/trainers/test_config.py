"""GRPOConfig: defaults, invariants at construction, YAML loading and flag overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from envkit.trainers import GRPOConfig


def test_defaults_follow_lora_for_rl_practice() -> None:
    cfg = GRPOConfig()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules) == (16, 32, "all-linear")
    assert cfg.learning_rate == pytest.approx(1e-4)
    assert (cfg.group_size, cfg.beta, cfg.scale_rewards) == (8, 0.0, "group")
    assert cfg.drop_zero_signal is True


def test_every_field_is_documented() -> None:
    for name, _default, description in GRPOConfig.describe():
        assert len(description) >= 10, f"{name} has no real description"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("group_size", 1, "group_size"),
        ("learning_rate", 0, "learning_rate"),
        ("temperature", -1.0, "temperature"),
        ("top_p", 1.5, "top_p"),
        ("lora_dropout", 1.0, "lora_dropout"),
        ("loss_type", "ppo", "loss_type"),
        ("micro_batches", 3, "micro_batches=3 must divide"),
        ("eval_seed_start", 10, "overlap the training seeds"),
        ("epsilon_high", 0.1, "epsilon_high"),
        ("device", "tpu", "device"),
        ("judge_api_base", "http://127.0.0.1:9", "set judge_model too"),
    ],
)
def test_invalid_values_fail_at_construction(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        GRPOConfig(**{field: value})


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="learning_rat"):
        GRPOConfig(learning_rat=1e-3)  # type: ignore[call-arg]


def test_yaml_round_trip_and_overrides(tmp_path) -> None:
    cfg = GRPOConfig(max_steps=7, env_kwargs={"operators": "+*"}, report_to=["tensorboard"])
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert GRPOConfig.from_yaml(path) == cfg
    again = GRPOConfig.from_yaml(
        path, ["learning-rate=2e-4", "group_size=4", "env_kwargs={max_turns: 2}"]
    )
    assert again.learning_rate == pytest.approx(2e-4)
    assert again.group_size == 4
    assert again.env_kwargs == {"max_turns": 2}
    assert again.max_steps == 7


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        (["learning_rat=1"], "did you mean learning_rate"),
        (["no-equals-sign"], "is not KEY=VALUE"),
        (["group_size=1"], "group_size"),
    ],
)
def test_bad_overrides_say_what_is_wrong(items: list[str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        GRPOConfig().override(items)


def test_yaml_file_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GRPOConfig.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        GRPOConfig.from_yaml(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("max_step: 3\n")
    with pytest.raises(ValueError, match="did you mean max_steps"):
        GRPOConfig.from_yaml(typo)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"rollout_backend": "ray"}, "needs policy_server"),
        ({"ray_address": "ray://h:10001"}, 'only used with rollout_backend="ray"'),
        ({"policy_server_model": "m"}, "set both"),
        ({"max_staleness": 1, "use_vllm": True}, "does not combine with use_vllm"),
        ({"policy_server": "http://127.0.0.1:8000", "use_vllm": True}, "choose one"),
        ({"importance_sampling": "truncate"}, "token_truncate"),
        ({"importance_sampling_cap": 1.0}, "greater than 1"),
        ({"max_staleness": -1}, "greater than or equal to 0"),
    ],
)
def test_off_policy_fields_are_validated(fields: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        GRPOConfig(**fields)


def test_importance_sampling_applies_only_off_policy() -> None:
    assert not GRPOConfig().importance_sampling_active  # synchronous: nothing to correct
    assert GRPOConfig(max_staleness=1).importance_sampling_active
    assert GRPOConfig(policy_server="http://127.0.0.1:8000").importance_sampling_active
    assert not GRPOConfig(max_staleness=1, importance_sampling="off").importance_sampling_active
    ray = GRPOConfig(
        rollout_backend="ray", ray_address="auto", policy_server="http://127.0.0.1:8000"
    )
    assert ray.rollout_backend == "ray"
