"""``load_policy``: one string names a local or an API policy."""

from __future__ import annotations

import pytest

from envkit.policies import HFPolicy, LiteLLMPolicy, load_policy
from envkit.policies.loading import is_local_spec


@pytest.mark.parametrize(
    ("spec", "local"),
    [
        ("smollm2-135m", True),
        ("tiny-random", True),
        ("hf:/models/qwen", True),
        ("hf:Qwen/Qwen2.5-0.5B-Instruct", True),
        ("gpt-4o-mini", False),
        ("openai/my-model", False),
        ("anthropic/claude-3-5-haiku-latest", False),
    ],
)
def test_is_local_spec(spec, local):
    assert is_local_spec(spec) is local


@pytest.mark.parametrize("spec", ["gpt-4o-mini", "openai/served", "ollama/llama3"])
def test_other_strings_are_litellm_models(spec):
    policy = load_policy(spec, api_base="http://127.0.0.1:9/v1", temperature=0.2, max_tokens=5)
    assert isinstance(policy, LiteLLMPolicy)
    assert policy.model == spec
    assert (policy.api_base, policy.temperature, policy.max_tokens) == (
        "http://127.0.0.1:9/v1",
        0.2,
        5,
    )


def test_tiny_random_is_an_hf_policy_with_translated_kwargs():
    policy = load_policy("tiny-random", temperature=0.5, max_tokens=7, seed=1, max_batch_size=4)
    assert isinstance(policy, HFPolicy)
    assert (policy.temperature, policy.max_new_tokens, policy.seed, policy.max_batch_size) == (
        0.5,
        7,
        1,
        4,
    )
    assert len(policy([{"role": "user", "content": "hi"}]).token_ids) <= 7


def test_none_values_mean_defaults_for_local_models():
    policy = load_policy("tiny-random", temperature=None, max_tokens=None)
    assert (policy.temperature, policy.max_new_tokens) == (1.0, 256)


def test_api_only_arguments_are_rejected_for_local_models():
    with pytest.raises(ValueError, match="api_base is for API models"):
        load_policy("tiny-random", api_base="http://127.0.0.1:8000/v1")


def test_unknown_arguments_for_local_models_list_the_accepted_ones():
    with pytest.raises(TypeError, match=r"does not take concurrency.*max_new_tokens"):
        load_policy("tiny-random", concurrency=4)


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_spec_is_rejected(spec):
    with pytest.raises(ValueError, match="a policy spec is needed"):
        load_policy(spec)


def test_hf_prefix_with_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        load_policy(f"hf:{tmp_path / 'missing'}")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from envkit.models import load_model

    model, tok = load_model("tiny-random")
    path = tmp_path_factory.mktemp("saved") / "tiny"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_plain_directory_is_a_local_model_like_in_train(saved_model):
    assert is_local_spec(str(saved_model))
    policy = load_policy(str(saved_model), max_tokens=3, device="cpu")
    assert isinstance(policy, HFPolicy)
    assert policy.runtime["device"] == "cpu" and policy.runtime["dtype"] == "float32"
    assert len(policy([{"role": "user", "content": "hi"}]).token_ids) <= 3


def test_device_and_engine_reach_the_policy():
    policy = load_policy("tiny-random", device="cpu", dtype="bfloat16", max_tokens=2)
    assert policy.runtime == {"device": "cpu", "dtype": "bfloat16", "engine": "padded"}
